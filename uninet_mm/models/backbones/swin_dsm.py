"""Swin Transformer with UniNet DSMs at its downsampling points (paper Table 11).

Two bases, each the installed package's own class, so each loads its own package's checkpoints:
:class:`SwinTransformerDSM` subclasses mmpretrain's ``SwinTransformer`` (classification configs),
:class:`MMDetSwinTransformerDSM` subclasses mmdet's (detection configs, which load the official
Swin checkpoints through mmdet's ``swin_converter``). Only the patch embedding and the three
patch-merging layers can change; see :mod:`.dsm_transfer`.
"""
from typing import Dict, Optional, Sequence, Tuple

import torch
from mmdet.models.backbones.swin import SwinTransformer as _MMDetSwin
from mmdet.models.backbones.swin import swin_converter
from mmpretrain.models.backbones import SwinTransformer as _MMPretrainSwin

from .dsm_transfer import DSMTransferMixin, strip_prefix

#: Paper Table 11, second setting: L-DSM at the first two points, LG-DSM at the last two.
L_LG_DSMS = ('L', 'L', 'LG', 'LG')


def _stride(value) -> int:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if pair[0] != pair[1]:
        raise ValueError(f'DSMs need square strides, got {pair}')
    return pair[0]


class _SwinPoints:
    """What both Swin implementations share: the DSM arguments (documented on
    :class:`SwinTransformerDSM`) and the downsampling points, ``patch_embed`` and
    ``stages[i].downsample`` (mmcv-style PatchEmbed / PatchMerging)."""

    def __init__(self, *args, dsms: Sequence[Optional[str]] = L_LG_DSMS,
                 dsm_kv_strides: Sequence[int] = (1, 1, 1, 1),
                 dsm_norm_cfg: Optional[Dict] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._replace_downsampling(dsms, dsm_kv_strides, dsm_norm_cfg)
        self._freeze_stages()  # again: the new layers follow frozen_stages too

    def _downsampling_point(self, point: int) -> Tuple[str, int, int, int]:
        if point == 0:
            conv = self.patch_embed.projection
            return 'patch_embed', conv.in_channels, conv.out_channels, _stride(conv.stride)
        merge = self.stages[point - 1].downsample
        return (f'stages.{point - 1}.downsample', merge.in_channels, merge.out_channels,
                _stride(merge.sampler.stride))


class SwinTransformerDSM(_SwinPoints, DSMTransferMixin, _MMPretrainSwin):
    """mmpretrain's SwinTransformer with UniNet DSMs.

    Args:
        dsms: one of ``'L'``, ``'LG'``, ``'G'`` or None (keep Swin's layer) for each of the
            patch embedding and the three patch mergings. Default: L, L, LG, LG.
        dsm_kv_strides: per point, attention DSMs take keys and values from their input
            average-pooled by this factor (1: every input token).
        dsm_norm_cfg: norm of the DSMs' local branch (default BatchNorm, as in UniNet).
        *args, **kwargs: mmpretrain's SwinTransformer arguments (``arch='tiny'``, ...).
    """


class MMDetSwinTransformerDSM(_SwinPoints, DSMTransferMixin, _MMDetSwin):
    """mmdet's SwinTransformer with UniNet DSMs; arguments as :class:`SwinTransformerDSM`
    plus mmdet's own (``embed_dims``, ``depths``, ``convert_weights``, ...).

    ``init_cfg=dict(type='Pretrained', checkpoint=...)`` reads checkpoints as mmdet's Swin does:
    the official Swin format through ``swin_converter`` when ``convert_weights=True``, otherwise
    the ``backbone.`` keys of an mmdet checkpoint.
    """

    def _convert_checkpoint(self, state_dict: Dict[str, torch.Tensor],
                            prefix: Optional[str]) -> Dict[str, torch.Tensor]:
        if self.convert_weights:
            state_dict = swin_converter(state_dict)
        state_dict = strip_prefix(state_dict, prefix or 'backbone.')
        if next(iter(state_dict)).startswith('module.'):
            state_dict = strip_prefix(state_dict, 'module.')
        return state_dict

    def _tolerated_keys(self) -> Tuple[Sequence[str], Sequence[str]]:
        if not self.convert_weights:
            return (), ()
        # The official classifier checkpoint has one final ``norm`` and stored shift masks;
        # mmdet's Swin starts its per-output norms from scratch and computes the masks.
        return (r'^norm\d\.', ), (r'^norm\.', r'\.attn_mask$')
