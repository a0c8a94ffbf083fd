"""UniNet backbones for OpenMMLab 2.0 (mmdet, mmseg, mmpretrain).

Importing the package registers ``UniNet`` in mmengine's root ``MODELS`` registry, which the
mmdet, mmseg and mmpretrain registries fall back to, so configs only need
``custom_imports=dict(imports=['uninet_mm'])``. It also allows torch's ``weights_only`` loader
to read mmengine's resume checkpoints (a fixed list of data-only classes, see
:mod:`uninet_mm.utils.resume_safe_load`), so ``--resume`` works on torch >= 2.6.
"""
from . import engine  # noqa: F401  (registers the hooks)
from .models import ARCH_SETTINGS, ArchError, ArchSpec, StageSpec, UniNet, parse_arch
from .utils.resume_safe_load import register_resume_safe_globals
from .version import __version__

register_resume_safe_globals()

__all__ = ['ARCH_SETTINGS', 'ArchError', 'ArchSpec', 'StageSpec', 'UniNet', 'parse_arch',
           '__version__']
