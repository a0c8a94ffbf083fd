"""UniNet backbones for OpenMMLab 2.0 (mmdet, mmseg, mmpretrain).

Importing the package registers ``UniNet`` in mmengine's root ``MODELS`` registry, which the
mmdet, mmseg and mmpretrain registries fall back to, so configs only need
``custom_imports=dict(imports=['uninet_mm'])``.
"""
from .models import ARCH_SETTINGS, ArchError, ArchSpec, StageSpec, UniNet, parse_arch
from .version import __version__

__all__ = ['ARCH_SETTINGS', 'ArchError', 'ArchSpec', 'StageSpec', 'UniNet', 'parse_arch',
           '__version__']
