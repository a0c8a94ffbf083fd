"""The SA, LSA and MLP GOPs: a pre-norm transformer block with conditional position encoding."""
from typing import Optional, Tuple

import torch
from torch import nn

from .attention import SelfAttention, TokenMixingMLP, WindowSelfAttention
from .common import DropPath, add_residual, autograd_off, on_cpu, to_map, to_tokens
from .recompute import ActivationRecompute

#: LayerNorm epsilon of the reference SA blocks and LG-DSM.
LN_EPS = 1e-5


class FeedForward(nn.Module):
    """(B, N, C) -> (B, N, C): Linear(C, hidden), GELU, Linear(hidden, C)."""

    def __init__(self, channels: int, hidden: int, recompute: Optional[bool] = None):
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, channels)
        self.recompute = recompute

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with ActivationRecompute(on_cpu(self.recompute, x)) as recompute:  # GELU not kept
            return self.fc2(recompute.gelu(self.fc1(x)))


class TransformerBlock(nn.Module):
    """(B, C, H, W) -> (B, C, H, W):

    x = x + dwconv3x3(x)                                  (conditional position encoding)
    x = x + drop_path(layer_scale1 * mixer(LN(x)))        (SA, LSA or token-mixing MLP)
    x = x + drop_path(layer_scale2 * FFN(LN(x)))          (hidden width int(C * expansion))
    """

    def __init__(self, channels: int, expansion: float, mixer: str = 'SA',
                 drop_path: float = 0.0, layer_scale_init_value: float = 1e-6,
                 window_size: int = 7, hw_shape: Optional[Tuple[int, int]] = None,
                 recompute: Optional[bool] = None):
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
        self.mlp = FeedForward(channels, int(channels * expansion), recompute)
        self.layer_scale1 = nn.Parameter(torch.full((channels,), float(layer_scale_init_value)))
        self.layer_scale2 = nn.Parameter(torch.full((channels,), float(layer_scale_init_value)))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hw_shape = x.shape[2:]
        tokens = to_tokens(add_residual(self.pos_embed(x), x))
        tokens = self._add_scaled(tokens, self.layer_scale1,
                                  self.token_mixer(self.norm1(tokens), hw_shape))
        tokens = self._add_scaled(tokens, self.layer_scale2, self.mlp(self.norm2(tokens)))
        return to_map(tokens, hw_shape)

    def _add_scaled(self, tokens: torch.Tensor, scale: torch.Tensor, branch: torch.Tensor
                    ) -> torch.Tensor:
        """tokens + drop_path(scale * branch); one in-place pass into the fresh ``tokens``
        when autograd is off and drop path is the identity."""
        if autograd_off() and self.drop_path.is_identity:
            return tokens.addcmul_(branch, scale)
        return tokens + self.drop_path(scale * branch)
