"""Small building pieces shared by the UniNet blocks: norm layers, stochastic depth and the
layout helpers between 2D maps and token sequences."""
from typing import Dict, Optional, Tuple

import torch
from torch import nn

_NATIVE_NORMS = {'BN': nn.BatchNorm2d, 'BN2d': nn.BatchNorm2d, 'SyncBN': nn.SyncBatchNorm}


def build_norm2d(norm_cfg: Optional[Dict], num_features: int) -> nn.Module:
    """Build a 2D norm layer from an mmcv-style ``norm_cfg`` (``BN``, ``SyncBN``, ``GN``, ...).

    BN and SyncBN are built directly so the backbone works without mmcv; other types are
    delegated to ``mmcv.cnn.build_norm_layer``. ``requires_grad=False`` freezes the affine
    parameters, as in mmcv.
    """
    cfg = dict(norm_cfg or dict(type='BN'))
    layer_type = cfg.pop('type')
    requires_grad = cfg.pop('requires_grad', True)
    if layer_type in _NATIVE_NORMS:
        layer = _NATIVE_NORMS[layer_type](num_features, **cfg)
    else:
        try:
            from mmcv.cnn import build_norm_layer
        except ImportError as err:
            raise ValueError(f'norm_cfg type {layer_type!r} needs mmcv; without it only '
                             f'{sorted(_NATIVE_NORMS)} are available') from err
        layer = build_norm_layer(dict(norm_cfg, type=layer_type), num_features)[1]
    for param in layer.parameters():
        param.requires_grad = requires_grad
    return layer


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per sample with probability ``p``."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = torch.bernoulli(x.new_full((x.shape[0],) + (1,) * (x.ndim - 1), keep))
        return x * (mask / keep)

    def extra_repr(self) -> str:
        return f'p={self.p}'


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C); a view when ``x`` is channels_last."""
    batch, channels, height, width = x.shape
    return x.permute(0, 2, 3, 1).reshape(batch, height * width, channels)


def to_map(tokens: torch.Tensor, hw_shape: Tuple[int, int]) -> torch.Tensor:
    """(B, H*W, C) -> (B, C, H, W); a view of contiguous tokens (channels_last strides)."""
    batch, _, channels = tokens.shape
    return tokens.reshape(batch, hw_shape[0], hw_shape[1], channels).permute(0, 3, 1, 2)
