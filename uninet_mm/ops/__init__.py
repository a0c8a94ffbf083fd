"""Operators of other libraries written for speed on a device; the models keep calling the
originals unless :mod:`uninet_mm.models.acceleration` swaps them in."""
from .roi_align import SeparableRoIAlign, roi_align

__all__ = ['SeparableRoIAlign', 'roi_align']
