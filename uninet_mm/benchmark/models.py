"""The backbones the benchmark measures and the speed variants of the UniNet ones.

Variants of the UniNet models (the peers always run as mmdet builds them):

* ``plain``: the model as built, NCHW, eager.
* ``channels_last``: :func:`uninet_mm.models.acceleration.to_channels_last`.
* ``channels_last_no_hook``: only ``model.to(memory_format=torch.channels_last)``, to show
  what the gradient-layout hook of ``to_channels_last`` buys.
* ``fused`` (inference only): ``accelerate(inference=True)``, BN folded once + channels_last.
* ``fused_nchw`` (inference only): ``fuse_for_inference``, BN folded once, NCHW.
* ``sac`` (training only): channels_last + ``with_cp='selective'``.
* ``cp`` (training only): channels_last + ``with_cp=True`` (whole blocks recomputed).
* ``compile``: channels_last + ``torch.compile`` (inductor); inference with inductor's
  freezing (see :func:`uninet_mm.benchmark.measure.configure_compile`).
* ``compile_fused`` (inference only): ``torch.compile`` of the ``fused`` copy.

Models: ``uninet_b1`` and ``uninet_b3`` (``out_indices=(1, 2, 4, 5)``, drop path 0.1 / 0.2 as
in the Mask R-CNN configs), ``swin_t`` (mmdet SwinTransformer with the Mask R-CNN Swin-T
settings), ``resnet50`` (mmdet ResNet-50, all stages trained) and ``swin_t_tv``
(torchvision's Swin-T, for machines without mmdet).
"""
import logging
from typing import List, Tuple

import torch
from torch import nn

logger = logging.getLogger(__name__)

UNINET_MODELS = ('uninet_b1', 'uninet_b3')
MMDET_MODELS = ('swin_t', 'resnet50')
TORCHVISION_MODELS = ('swin_t_tv',)
ALL_MODELS = UNINET_MODELS + MMDET_MODELS + TORCHVISION_MODELS
LABELS = dict(uninet_b1='UniNet-B1', uninet_b3='UniNet-B3', swin_t='Swin-T',
              resnet50='ResNet-50', swin_t_tv='Swin-T (tv)')
#: variant -> the modes it is measured in.
VARIANTS = dict(plain=('fwd', 'train'), channels_last=('fwd', 'train'),
                channels_last_no_hook=('fwd', 'train'), fused=('fwd',),
                fused_nchw=('fwd',),
                sac=('train',), cp=('train',), compile=('fwd', 'train'), compile_fused=('fwd',))
#: (numerator, denominator) pairs whose ratios are printed.
RATIOS = (('uninet_b3', 'swin_t'), ('uninet_b3', 'swin_t_tv'), ('uninet_b1', 'resnet50'))


def mmdet_available() -> bool:
    try:
        import mmdet.models  # noqa: F401
    except Exception as err:  # ImportError, or a broken mmcv build underneath
        logger.warning('mmdet is not importable (%s): benchmarking only the UniNet models', err)
        return False
    return True


def row_key(name: str, variant: str) -> str:
    """``'uninet_b3:fused'`` (``'uninet_b3'`` for the plain variant)."""
    return name if variant == 'plain' else f'{name}:{variant}'


def split_key(key: str) -> Tuple[str, str]:
    """The inverse of :func:`row_key`: ``(name, variant)``."""
    name, _, variant = key.partition(':')
    return name, variant or 'plain'


def model_keys(models: List[str], variants: List[str], mode: str) -> List[str]:
    """Rows measured in ``mode``: every variant of the UniNet models, the peers plain."""
    keys = []
    for name in models:
        for variant in (variants if name in UNINET_MODELS else ['plain']):
            if mode in VARIANTS[variant]:
                keys.append(row_key(name, variant))
    return keys


def build_model(name: str, variant: str = 'plain') -> nn.Module:
    """The backbone called ``name``, randomly initialised (weights do not change speed), with
    the speed options of ``variant``."""
    if name in UNINET_MODELS:
        from ..models import UniNet
        from ..models.acceleration import accelerate, to_channels_last
        with_cp = dict(sac='selective', cp=True).get(variant, False)
        model = UniNet(name.split('_')[1], out_indices=(1, 2, 4, 5), with_cp=with_cp,
                       drop_path_rate=0.1 if name == 'uninet_b1' else 0.2)
        if variant == 'fused':
            return accelerate(model, inference=True)
        if variant == 'fused_nchw':
            return accelerate(model, inference=True, channels_last=False)
        if variant == 'compile_fused':
            return accelerate(model, inference=True, compile=True)
        if variant == 'compile':
            return torch.compile(to_channels_last(model))
        if variant == 'channels_last_no_hook':  # without the gradient-layout hook
            return model.to(memory_format=torch.channels_last)
        return model if variant == 'plain' else to_channels_last(model)
    if variant != 'plain':
        raise ValueError(f'{name} runs only as the plain mmdet model')
    if name == 'swin_t_tv':
        return TorchvisionSwinFeatures()
    from mmdet.models.backbones import ResNet, SwinTransformer
    if name == 'swin_t':
        return SwinTransformer(embed_dims=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
                               window_size=7, mlp_ratio=4, qkv_bias=True, qk_scale=None,
                               drop_rate=0., attn_drop_rate=0., drop_path_rate=0.2,
                               patch_norm=True, out_indices=(0, 1, 2, 3), with_cp=False)
    if name == 'resnet50':
        return ResNet(depth=50, out_indices=(0, 1, 2, 3))
    raise ValueError(f'unknown model {name!r}; choose from {ALL_MODELS}')


class TorchvisionSwinFeatures(nn.Module):
    """torchvision's Swin-T as a backbone (stride 4-32 maps, NCHW), drop path 0.2: a peer for
    machines where mmdet/mmcv cannot be installed."""

    def __init__(self):
        super().__init__()
        from torchvision.models import swin_t
        self.features = swin_t().features  # stochastic depth 0.2, as in mmdet's config

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        outs = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index % 2 == 1:  # after each stage's blocks: (B, H, W, C)
                outs.append(x.permute(0, 3, 1, 2).contiguous())
        return tuple(outs)
