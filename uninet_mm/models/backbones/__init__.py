"""Backbones. ``UniNet`` and ``UniNetDSMAblation`` are registered on import; the DSM-equipped
Swin and PVT backbones subclass mmdet's / mmpretrain's own classes, so they are registered as
builders that import those packages on first use (``import uninet_mm`` stays light)."""
from importlib import import_module

from mmengine.registry import MODELS

from .uninet import UniNet, UniNetStage
from .uninet_dsm_ablation import UniNetDSMAblation

#: Registered name -> module (relative to this package) that defines the class.
TRANSFER_BACKBONES = {
    'SwinTransformerDSM': '.swin_dsm',
    'MMDetSwinTransformerDSM': '.swin_dsm',
    'PyramidVisionTransformerDSM': '.pvt_dsm',
}


def transfer_backbone_class(name: str) -> type:
    """The class registered as ``name`` in :data:`TRANSFER_BACKBONES` (imports its base
    package)."""
    return getattr(import_module(TRANSFER_BACKBONES[name], __name__), name)


def _register_transfer_backbones() -> None:
    for name in TRANSFER_BACKBONES:
        def build(*args, _name=name, **kwargs):
            return transfer_backbone_class(_name)(*args, **kwargs)
        build.__name__ = build.__qualname__ = name
        build.__doc__ = f'Builds :class:`{TRANSFER_BACKBONES[name][1:]}.{name}`.'
        MODELS.register_module(name=name, module=build)


_register_transfer_backbones()

__all__ = ['UniNet', 'UniNetStage', 'UniNetDSMAblation', 'TRANSFER_BACKBONES',
           'transfer_backbone_class']
