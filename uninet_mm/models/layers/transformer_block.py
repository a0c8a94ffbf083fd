"""The SA, LSA and MLP GOPs: a pre-norm transformer block with conditional position encoding."""
from typing import Optional, Tuple

import torch
from torch import nn

from .attention import SelfAttention, TokenMixingMLP, WindowSelfAttention
from .common import DropPath, to_map, to_tokens

#: LayerNorm epsilon of the reference SA blocks and LG-DSM.
LN_EPS = 1e-5


class FeedForward(nn.Module):
    """(B, N, C) -> (B, N, C): Linear(C, hidden), GELU, Linear(hidden, C)."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class TransformerBlock(nn.Module):
    """(B, C, H, W) -> (B, C, H, W):

    x = x + dwconv3x3(x)                                  (conditional position encoding)
    x = x + drop_path(layer_scale1 * mixer(LN(x)))        (SA, LSA or token-mixing MLP)
    x = x + drop_path(layer_scale2 * FFN(LN(x)))          (hidden width int(C * expansion))
    """

    def __init__(self, channels: int, expansion: float, mixer: str = 'SA',
                 drop_path: float = 0.0, layer_scale_init_value: float = 1e-6,
                 window_size: int = 7, hw_shape: Optional[Tuple[int, int]] = None):
        super().__init__()
        self.pos_embed = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.norm1 = nn.LayerNorm(channels, eps=LN_EPS)
        if mixer == 'SA':
            self.token_mixer = SelfAttention(channels)
        elif mixer == 'LSA':
            self.token_mixer = WindowSelfAttention(channels, window_size=window_size)
        elif mixer == 'MLP':
            if hw_shape is None:
                raise ValueError('the MLP GOP needs the feature map size it mixes (hw_shape)')
            self.token_mixer = TokenMixingMLP(hw_shape[0] * hw_shape[1], hw_shape)
        else:
            raise ValueError(f'unknown token mixer {mixer!r}; allowed: SA, LSA, MLP')
        self.norm2 = nn.LayerNorm(channels, eps=LN_EPS)
        self.mlp = FeedForward(channels, int(channels * expansion))
        self.layer_scale1 = nn.Parameter(torch.full((channels,), float(layer_scale_init_value)))
        self.layer_scale2 = nn.Parameter(torch.full((channels,), float(layer_scale_init_value)))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hw_shape = x.shape[2:]
        tokens = to_tokens(x + self.pos_embed(x))
        mixed = self.token_mixer(self.norm1(tokens), hw_shape)
        tokens = tokens + self.drop_path(self.layer_scale1 * mixed)
        tokens = tokens + self.drop_path(self.layer_scale2 * self.mlp(self.norm2(tokens)))
        return to_map(tokens, hw_shape)
