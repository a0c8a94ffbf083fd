"""Context-aware downsampling modules (DSMs) placed before UniNet stages 1..5.

All map (B, a, H, W) -> (B, b, ceil(H / s), ceil(W / s)) and add the same shortcut:
a 3x3 max-pool of stride s (padding 1; skipped when s == 1) followed by a 1x1 conv a -> b.
"""
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..arch_settings import HEAD_DIM
from .attention import multi_head_attention
from .common import build_norm2d, to_map, to_tokens
from .fusion import FusibleModule, fold_batch_norm, is_foldable
from .transformer_block import LN_EPS


class DownsampleShortcut(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.pool = nn.MaxPool2d(3, stride, padding=1) if stride > 1 else nn.Identity()
        self.proj = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(x))


class LocalBranch(nn.Sequential, FusibleModule):
    """(B, a, H, W) -> (B, b, ceil(H/s), ceil(W/s)): 3x3 depthwise conv of stride s (bias),
    norm(a), 1x1 conv a -> b (bias)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 norm_cfg: Optional[Dict]):
        super().__init__(
            nn.Conv2d(in_channels, in_channels, 3, stride, padding=1, groups=in_channels),
            build_norm2d(norm_cfg, in_channels),
            nn.Conv2d(in_channels, out_channels, 1))

    def fuse(self) -> None:
        if is_foldable(self[1]):
            self[0], self[1] = fold_batch_norm(self[0], self[1]), nn.Identity()


class LocalDownsample(nn.Module):
    """L-DSM: out = local_branch(x) + shortcut(x)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 norm_cfg: Optional[Dict] = None):
        super().__init__()
        self.local = LocalBranch(in_channels, out_channels, stride, norm_cfg)
        self.shortcut = DownsampleShortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.local(x) + self.shortcut(x)


class LocalGlobalDownsample(nn.Module):
    """LG-DSM: downsampled queries attend over all input tokens.

    queries = LN(local_branch(x)) on the (ceil(H/s), ceil(W/s)) grid;
    keys, values = Linear(a, 2b)(LN(x)) over all H*W input tokens; heads of width 32;
    out = proj(attention) + shortcut(x). No MLP and no layer scale.

    Options outside the published networks (defaults give the module above): ``head_dim``,
    the width of each attention head (``out_channels`` must be divisible by it), and
    ``kv_stride``: keys and values come from ``x`` average-pooled by ``kv_stride``
    (windows of kv_stride x kv_stride, ceil mode), ceil(H/k) * ceil(W/k) tokens instead of H*W.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 norm_cfg: Optional[Dict] = None, head_dim: int = HEAD_DIM,
                 kv_stride: int = 1):
        super().__init__()
        if out_channels % head_dim:
            raise ValueError(f'{type(self).__name__}: out_channels {out_channels} must be '
                             f'divisible by head_dim {head_dim}; pass a head_dim that divides it')
        if not isinstance(kv_stride, int) or kv_stride < 1:
            raise ValueError(f'kv_stride must be a positive int, got {kv_stride!r}')
        self.num_heads = out_channels // head_dim
        self.kv_pool = (nn.AvgPool2d(kv_stride, kv_stride, ceil_mode=True) if kv_stride > 1
                        else nn.Identity())
        self.query = self._build_query(in_channels, out_channels, stride, norm_cfg)
        self.query_norm = nn.LayerNorm(out_channels, eps=LN_EPS)
        self.kv_norm = nn.LayerNorm(in_channels, eps=LN_EPS)
        self.kv = nn.Linear(in_channels, out_channels * 2)
        self.proj = nn.Linear(out_channels, out_channels)
        self.shortcut = DownsampleShortcut(in_channels, out_channels, stride)

    @staticmethod
    def _build_query(in_channels: int, out_channels: int, stride: int,
                     norm_cfg: Optional[Dict]) -> nn.Module:
        return LocalBranch(in_channels, out_channels, stride, norm_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        query = self.query(x)
        out_shape = query.shape[2:]
        query = self.query_norm(to_tokens(query))
        key, value = self.kv(self.kv_norm(to_tokens(self.kv_pool(x)))).chunk(2, dim=-1)
        out = self.proj(multi_head_attention(query, key, value, self.num_heads))
        return to_map(out, out_shape) + self.shortcut(x)


class SequenceDownsample(nn.Module):
    """G-DSM queries: (B, a, H, W) -> (B, b, ceil(H/s), ceil(W/s)) by a strided 1D conv over the
    flattened (row-major) token sequence, so no local 2D neighbourhood survives.

    Design (the paper only says "1D convolution"): the map is zero-padded at the bottom/right to
    multiples of s, flattened, and convolved with kernel = stride = s*s, which yields exactly
    ceil(H/s) * ceil(W/s) tokens, the token count and grid of L-DSM and LG-DSM. Each output token
    mixes s*s consecutive tokens of one image row, not an s x s patch.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv1d(in_channels, out_channels, stride * stride, stride * stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        x = F.pad(x, (0, -x.shape[3] % s, 0, -x.shape[2] % s))
        batch, _, height, width = x.shape
        tokens = self.conv(x.flatten(2))
        return tokens.reshape(batch, -1, height // s, width // s)


class GlobalDownsample(LocalGlobalDownsample):
    """G-DSM: LG-DSM with queries from :class:`SequenceDownsample` instead of a 2D conv."""

    @staticmethod
    def _build_query(in_channels: int, out_channels: int, stride: int,
                     norm_cfg: Optional[Dict]) -> nn.Module:
        return SequenceDownsample(in_channels, out_channels, stride)


DOWNSAMPLE_MODULES = {'L': LocalDownsample, 'LG': LocalGlobalDownsample, 'G': GlobalDownsample}
