"""Attention token mixers. All attention goes through ``F.scaled_dot_product_attention``, so a
fused kernel (flash / memory-efficient on GPU, flash on CPU) is used where it applies: memory
stays linear in the token count and the softmax is computed in fp32 under fp16/bf16 autocast.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..arch_settings import HEAD_DIM


def multi_head_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                         num_heads: int, key_mask: Optional[torch.Tensor] = None
                         ) -> torch.Tensor:
    """Scaled dot-product attention over heads.

    Args:
        query: (B, Nq, C); key, value: (B, Nk, C), with C divisible by ``num_heads``.
        key_mask: optional (B, Nk) bool, True where a key may be attended to.

    Returns:
        (B, Nq, C).
    """
    batch, num_queries, channels = query.shape
    head_dim = channels // num_heads

    def split_heads(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(batch, -1, num_heads, head_dim).transpose(1, 2)

    attn_mask = None if key_mask is None else key_mask[:, None, None, :]
    out = F.scaled_dot_product_attention(split_heads(query), split_heads(key),
                                         split_heads(value), attn_mask=attn_mask)
    return out.transpose(1, 2).reshape(batch, num_queries, channels)


class SelfAttention(nn.Module):
    """Global multi-head self-attention, (B, N, C) -> (B, N, C); heads of width 32."""

    def __init__(self, channels: int, head_dim: int = HEAD_DIM):
        super().__init__()
        self.num_heads = channels // head_dim
        self.qkv = nn.Linear(channels, channels * 3)
        self.proj = nn.Linear(channels, channels)

    def forward(self, tokens: torch.Tensor, hw_shape: Tuple[int, int],
                key_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        query, key, value = self.qkv(tokens).chunk(3, dim=-1)
        out = multi_head_attention(query, key, value, self.num_heads, key_mask)
        return self.proj(out)


class WindowSelfAttention(SelfAttention):
    """The LSA GOP: self-attention inside non-overlapping ``window_size`` x ``window_size``
    windows, (B, N, C) -> (B, N, C) for a map of ``hw_shape`` = (H, W).

    Design (the paper gives no details): windows of 7 as in Swin, no shifting, because the
    block's depthwise position-encoding conv already carries information across window borders.
    Maps are padded at the bottom/right to multiples of the window (by zero rows when they
    already fit, so the graph has no shape-dependent branch); the padded tokens are masked out
    as keys, so the result does not depend on the padding, and cropped.
    Parameters are those of :class:`SelfAttention`, so SA weights load into LSA.
    """

    def __init__(self, channels: int, head_dim: int = HEAD_DIM, window_size: int = 7):
        super().__init__(channels, head_dim)
        self.window_size = window_size

    def forward(self, tokens: torch.Tensor, hw_shape: Tuple[int, int],
                key_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        batch, _, channels = tokens.shape
        height, width = hw_shape
        ws = self.window_size
        pad_h, pad_w = -height % ws, -width % ws
        grid = F.pad(tokens.reshape(batch, height, width, channels), (0, 0, 0, pad_w, 0, pad_h))
        rows, cols = (height + pad_h) // ws, (width + pad_w) // ws
        windows = (grid.reshape(batch, rows, ws, cols, ws, channels).transpose(2, 3)
                   .reshape(batch * rows * cols, ws * ws, channels))
        device = tokens.device
        valid = ((torch.arange(rows * ws, device=device) < height)[:, None]
                 & (torch.arange(cols * ws, device=device) < width)[None, :])
        window_mask = (valid.reshape(rows, ws, cols, ws).transpose(1, 2)
                       .reshape(rows * cols, ws * ws).repeat(batch, 1))
        out = super().forward(windows, (ws, ws), window_mask)
        out = (out.reshape(batch, rows, cols, ws, ws, channels).transpose(2, 3)
               .reshape(batch, rows * ws, cols * ws, channels))
        return out[:, :height, :width].reshape(batch, height * width, channels)

    def extra_repr(self) -> str:
        return f'window_size={self.window_size}'


class TokenMixingMLP(nn.Module):
    """The MLP GOP's token mixer (MLP-Mixer style), (B, N, C) -> (B, N, C): transpose, an MLP
    across the N tokens (hidden width N, GELU), transpose back.

    It has weights per token position, so it only accepts the token count it was built for;
    any other input size raises instead of broadcasting silently.
    """

    def __init__(self, num_tokens: int, hw_shape: Tuple[int, int]):
        super().__init__()
        self.num_tokens = num_tokens
        self.hw_shape = tuple(hw_shape)
        self.fc1 = nn.Linear(num_tokens, num_tokens)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(num_tokens, num_tokens)

    def forward(self, tokens: torch.Tensor, hw_shape: Tuple[int, int],
                key_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if tuple(hw_shape) != self.hw_shape:
            raise ValueError(
                f'MLP token mixing was built for a {self.hw_shape[0]}x{self.hw_shape[1]} feature '
                f'map ({self.num_tokens} tokens) but got {hw_shape[0]}x{hw_shape[1]}; MLP stages '
                f'need the fixed input size given as UniNet(input_size=...)')
        mixed = self.fc2(self.act(self.fc1(tokens.transpose(1, 2))))
        return mixed.transpose(1, 2)

    def extra_repr(self) -> str:
        return f'hw_shape={self.hw_shape}'
