"""The DWConv and Conv GOPs: an inverted-residual block with squeeze-excitation."""
from typing import Dict, Optional

import torch
from torch import nn

from .common import DropPath, build_norm2d
from .fusion import FusibleModule, fold_batch_norm, is_foldable
from .squeeze_excite import SqueezeExcite


class ConvNormAct(FusibleModule):
    """(B, C_in, H, W) -> (B, C_out, H', W'): conv (no bias), norm, GELU (the stem and the
    classification head conv)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 norm_cfg: Optional[Dict]):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                              padding=kernel_size // 2, bias=False)
        self.norm = build_norm2d(norm_cfg, out_channels)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))

    def fuse(self) -> None:
        if is_foldable(self.norm):
            self.conv, self.norm = fold_batch_norm(self.conv, self.norm), nn.Identity()


class ConvShortcut(nn.Module):
    """Shortcut of a block that changes width: stride-1 3x3 max-pool, then a 1x1 conv (bias).

    The stride-1 max-pool changes values; the reference has it, so its checkpoints need it.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.proj = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(x))


class ConvBlock(FusibleModule):
    """(B, a, H, W) -> (B, b, H, W) inverted residual, hidden width ``h = int(a * expansion)``.

    expand (only if h != a): BN(a), 1x1 conv a->h, BN(h), GELU;
    then 3x3 conv (depthwise for the DWConv GOP, dense for the Conv GOP), BN, GELU,
    squeeze-excitation, 1x1 conv h->b (bias), BN(b) initialised to zero;
    output = shortcut(x) + drop_path(branch), the shortcut being the identity when a == b.
    """

    def __init__(self, in_channels: int, out_channels: int, expansion: float,
                 depthwise: bool = True, drop_path: float = 0.0,
                 norm_cfg: Optional[Dict] = None):
        super().__init__()
        hidden = int(in_channels * expansion)
        self.shortcut = (nn.Identity() if in_channels == out_channels
                         else ConvShortcut(in_channels, out_channels))
        if hidden != in_channels:
            self.expand = nn.Sequential(
                build_norm2d(norm_cfg, in_channels),
                nn.Conv2d(in_channels, hidden, 1, bias=False),
                build_norm2d(norm_cfg, hidden),
                nn.GELU())
        else:
            self.expand = nn.Identity()
        self.conv = nn.Conv2d(hidden, hidden, 3, padding=1,
                              groups=hidden if depthwise else 1, bias=False)
        self.conv_norm = build_norm2d(norm_cfg, hidden)
        self.act = nn.GELU()
        self.se = SqueezeExcite(hidden)
        self.project = nn.Conv2d(hidden, out_channels, 1)
        self.project_norm = build_norm2d(norm_cfg, out_channels)
        self.drop_path = DropPath(drop_path)
        nn.init.zeros_(self.project_norm.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.expand(x)
        branch = self.act(self.conv_norm(self.conv(branch)))
        branch = self.project_norm(self.project(self.se(branch)))
        return self.shortcut(x) + self.drop_path(branch)

    def fuse(self) -> None:
        """Fold all three BatchNorm sites: both norms of the expansion (the one before the
        1x1 conv and the one after it) into that conv, the 3x3 conv's and the projection's."""
        if isinstance(self.expand, nn.Sequential):
            in_norm, conv, norm, _ = self.expand
            if is_foldable(in_norm) and is_foldable(norm):
                self.expand[1] = fold_batch_norm(conv, norm, before=in_norm)
                self.expand[0], self.expand[2] = nn.Identity(), nn.Identity()
        if is_foldable(self.conv_norm):
            self.conv = fold_batch_norm(self.conv, self.conv_norm)
            self.conv_norm = nn.Identity()
        if is_foldable(self.project_norm):
            self.project = fold_batch_norm(self.project, self.project_norm)
            self.project_norm = nn.Identity()
