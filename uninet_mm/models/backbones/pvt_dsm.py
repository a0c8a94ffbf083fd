"""PVT (v1) with UniNet DSMs in place of its patch embeddings (paper Table 11).

Built on mmdet's ``PyramidVisionTransformer``, the installed implementation (mmpretrain has none),
so its checkpoints load: the official PVT format through mmdet's ``pvt_convert`` when
``convert_weights=True`` (mmdet's default), otherwise mmdet's own keys. PVT downsamples only in
its four patch embeddings (``layers[i][0]``, strides 4, 2, 2, 2), which the DSMs replace; each
embedding's LayerNorm goes with it. See :mod:`.dsm_transfer`.
"""
from typing import Dict, Optional, Sequence, Tuple

import torch
from mmdet.models.backbones.pvt import PyramidVisionTransformer, pvt_convert

from .dsm_transfer import DSMTransferMixin, strip_prefix
from .swin_dsm import L_LG_DSMS, _stride


class PyramidVisionTransformerDSM(DSMTransferMixin, PyramidVisionTransformer):
    """mmdet's PyramidVisionTransformer with UniNet DSMs.

    Args:
        dsms: ``'L'``, ``'LG'``, ``'G'`` or None (keep PVT's patch embedding) for each of the
            four patch embeddings. Default: L, L, LG, LG.
        dsm_kv_strides: per point, attention DSMs take keys and values from their input
            average-pooled by this factor (1: every input token).
        dsm_norm_cfg: norm of the DSMs' local branch (default BatchNorm, as in UniNet).
        **kwargs: mmdet's PyramidVisionTransformer arguments (PVT-Tiny is the default).
    """

    _point_takes_maps = True

    def __init__(self, *, dsms: Sequence[Optional[str]] = L_LG_DSMS,
                 dsm_kv_strides: Sequence[int] = (1, 1, 1, 1),
                 dsm_norm_cfg: Optional[Dict] = None, **kwargs):
        super().__init__(**kwargs)
        self._replace_downsampling(dsms, dsm_kv_strides, dsm_norm_cfg)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(B, 3, H, W) -> one (B, C_i, H_i, W_i) map per ``out_indices``, as a tuple (mmdet's
        PVT returns a list, which mmpretrain's necks refuse)."""
        return tuple(super().forward(x))

    def _downsampling_point(self, point: int) -> Tuple[str, int, int, int]:
        conv = self.layers[point][0].projection
        return f'layers.{point}.0', conv.in_channels, conv.out_channels, _stride(conv.stride)

    def _convert_checkpoint(self, state_dict: Dict[str, torch.Tensor],
                            prefix: Optional[str]) -> Dict[str, torch.Tensor]:
        state_dict = strip_prefix(state_dict, prefix)
        return pvt_convert(state_dict) if self.convert_weights else state_dict
