"""The DWConv and Conv GOPs: an inverted-residual block with squeeze-excitation."""
import logging
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .common import (DropPath, add_residual, autograd_off, build_norm2d, exporting, fold_norms,
                     folds_norms, norm_act, on_cpu)
from .recompute import ActivationRecompute
from .squeeze_excite import SqueezeExcite, squeeze_excite_project, squeeze_excite_project_strips

logger = logging.getLogger(__name__)


class ConvNormAct(nn.Module):
    """(B, C_in, H, W) -> (B, C_out, H', W'): conv (no bias), norm, GELU (the stem and the
    classification head conv)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 norm_cfg: Optional[Dict], recompute: Optional[bool] = None):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                              padding=kernel_size // 2, bias=False)
        self.norm = build_norm2d(norm_cfg, out_channels)
        self.act = nn.GELU()
        self.recompute = recompute

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if folds_norms(x, self.norm):
            return folded_conv(x, self.conv, self.norm, gelu=True)
        with ActivationRecompute(on_cpu(self.recompute, x)) as recompute:  # BN out not kept
            return recompute.norm_act(self.conv(x), self.norm)


def folded_conv(x: torch.Tensor, conv: nn.Conv2d, after: nn.Module,
                before: Optional[nn.Module] = None, gelu: bool = False) -> torch.Tensor:
    """``after(conv(before(x)))``, then GELU if ``gelu``, as one convolution, for eval-mode
    BatchNorms at inference (see :func:`~.common.fold_norms`; ``before`` needs a 1x1 conv
    without groups). Where oneDNN can, the GELU runs inside the convolution (see
    :func:`fused_conv_gelu_available`) instead of as another pass over the map."""
    weight, bias = fold_norms(conv.weight, conv.bias, after, before)
    return conv_with(x, conv, weight, bias, gelu)


def conv_with(x: torch.Tensor, conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor,
              gelu: bool = False) -> torch.Tensor:
    """``conv`` applied with another ``weight`` and ``bias``, then GELU if ``gelu``."""
    if gelu and fused_conv_gelu_available(x):
        return torch.ops.mkldnn._convolution_pointwise(
            x, weight, bias, list(conv.padding), list(conv.stride), list(conv.dilation),
            conv.groups, 'gelu', [], 'none')
    out = F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    return torch.ops.aten.gelu_(out) if gelu else out


_FUSED_CONV_GELU: Optional[bool] = None


def fused_conv_gelu_available(x: torch.Tensor) -> bool:
    """Whether ``x`` (CPU, float32, channels_last) can take oneDNN's convolution with an
    exact (erf) GELU post-op, ``torch.ops.mkldnn._convolution_pointwise`` (the op torch's
    inductor fuses CPU conv + GELU into). It is an internal op, so on first use it is
    probed against ``F.conv2d`` + GELU and, if it is missing or disagrees, never used."""
    global _FUSED_CONV_GELU
    if not (x.device.type == 'cpu' and x.dtype == torch.float32
            and x.is_contiguous(memory_format=torch.channels_last)
            and not exporting()):  # exporters know conv and GELU, not this op
        return False
    if _FUSED_CONV_GELU is None:
        _FUSED_CONV_GELU = _probe_fused_conv_gelu()
    return _FUSED_CONV_GELU


def _probe_fused_conv_gelu() -> bool:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 8, 5, 7, generator=generator).contiguous(
        memory_format=torch.channels_last)
    weight, bias = torch.randn(8, 1, 3, 3, generator=generator), torch.randn(8, generator=generator)
    try:
        fused = torch.ops.mkldnn._convolution_pointwise(
            x, weight, bias, [1, 1], [1, 1], [1, 1], 8, 'gelu', [], 'none')
    except (AttributeError, RuntimeError) as err:
        logger.debug('oneDNN conv + GELU unavailable (%s): using conv, then GELU', err)
        return False
    expected = F.gelu(F.conv2d(x, weight, bias, 1, 1, 1, 8))
    return bool(torch.allclose(fused, expected, rtol=1e-5, atol=1e-6))


class ConvShortcut(nn.Module):
    """Shortcut of a block that changes width: stride-1 3x3 max-pool, then a 1x1 conv (bias).

    The stride-1 max-pool changes values; the reference has it, so its checkpoints need it.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.proj = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fast = autograd_off() and x.device.type == 'cpu'
        return self.proj(max_pool3x3(x) if fast else self.pool(x))


def max_pool3x3(x: torch.Tensor) -> torch.Tensor:
    """3x3 max-pool, stride 1, padding 1 (padding never wins), as four elementwise maxima of
    shifted views: rows, then columns. Exactly ``F.max_pool2d(x, 3, 1, 1)``, without the
    index bookkeeping (faster on CPU at inference; training uses the pool op, whose
    backward needs no extra stored input)."""
    rows = x.clone()
    torch.maximum(rows[:, :, 1:], x[:, :, :-1], out=rows[:, :, 1:])
    torch.maximum(rows[:, :, :-1], x[:, :, 1:], out=rows[:, :, :-1])
    out = rows.clone()
    torch.maximum(out[..., 1:], rows[..., :-1], out=out[..., 1:])
    torch.maximum(out[..., :-1], rows[..., 1:], out=out[..., :-1])
    return out


class ConvBlock(nn.Module):
    """(B, a, H, W) -> (B, b, H, W) inverted residual, hidden width ``h = int(a * expansion)``.

    expand (only if h != a): BN(a), 1x1 conv a->h, BN(h), GELU;
    then 3x3 conv (depthwise for the DWConv GOP, dense for the Conv GOP), BN, GELU,
    squeeze-excitation, 1x1 conv h->b (bias), BN(b) initialised to zero;
    output = shortcut(x) + drop_path(branch).

    The SE gate is folded into the 1x1 conv's weight on channels_last maps. With
    ``recompute`` (None: on CPU only), the BN and GELU outputs of width h are re-derived in
    backward instead of stored (see :mod:`.recompute`).
    """

    def __init__(self, in_channels: int, out_channels: int, expansion: float,
                 depthwise: bool = True, drop_path: float = 0.0,
                 norm_cfg: Optional[Dict] = None, recompute: Optional[bool] = None):
        super().__init__()
        self.recompute = recompute
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
        if folds_norms(x, *self._norms()):
            return self._forward_folded(x)
        with ActivationRecompute(on_cpu(self.recompute, x)) as recompute:
            branch = recompute.norm_act(self.conv(self._expand(x, recompute)), self.conv_norm)
            branch = squeeze_excite_project(branch, self.se, self.project)
        branch = norm_act(branch, self.project_norm, act=False)
        return add_residual(self.drop_path(branch), self.shortcut(x))

    def _expand(self, x: torch.Tensor, recompute: ActivationRecompute) -> torch.Tensor:
        if isinstance(self.expand, nn.Identity):
            return x
        in_norm, conv, norm, _ = self.expand
        return recompute.norm_act(conv(recompute.norm(x, in_norm)), norm)

    def _norms(self) -> List[nn.Module]:
        expand_norms = [] if isinstance(self.expand, nn.Identity) else list(self.expand[::2])
        return expand_norms + [self.conv_norm, self.project_norm]

    def _forward_folded(self, x: torch.Tensor) -> torch.Tensor:
        """Inference with every BatchNorm folded into its neighbouring convolution: two
        convolutions with GELU, then the SE-gated projection as one batched matmul.

        Hidden maps over :data:`STRIP_BYTES` are computed in strips of rows (each with the
        one-row halo the 3x3 conv needs, cropped after it): glibc hands out every allocation
        over 32 MiB as fresh pages that are faulted in and zeroed on first touch, which costs
        about as much as the convolution filling them; strips come from its reused heap.
        """
        expand = None
        if not isinstance(self.expand, nn.Identity):
            in_norm, expand_conv, norm, _ = self.expand
            expand = (expand_conv,
                      *fold_norms(expand_conv.weight, expand_conv.bias, norm, in_norm))
        conv_weight, conv_bias = fold_norms(self.conv.weight, self.conv.bias, self.conv_norm)
        height = x.shape[2]
        rows = strip_rows(x.shape[0] * self.conv.in_channels * x.shape[3] * x.element_size(),
                          height)
        strips = []
        for top in range(0, height, rows) if rows < height else ():
            bottom = min(height, top + rows)
            low, high = max(top - 1, 0), min(bottom + 1, height)
            strips.append(self._hidden(x[:, :, low:high], expand, conv_weight, conv_bias)
                          [:, :, top - low:bottom - low])
        projection = fold_norms(self.project.weight.flatten(1), self.project.bias,
                                self.project_norm)
        if strips:
            branch = squeeze_excite_project_strips(strips, self.se, *projection)
        else:
            branch = self._hidden(x, expand, conv_weight, conv_bias)
            branch = squeeze_excite_project(branch, self.se, self.project, projection)
        return add_residual(self.drop_path(branch), self.shortcut(x))

    def _hidden(self, x: torch.Tensor, expand: Optional[Tuple], conv_weight: torch.Tensor,
                conv_bias: torch.Tensor) -> torch.Tensor:
        """Folded inference up to the SE: gelu(conv(gelu(expand(x))))."""
        if expand is not None:
            x = conv_with(x, *expand, gelu=True)
        return conv_with(x, self.conv, conv_weight, conv_bias, gelu=True)


#: Hidden maps larger than this are computed in strips at inference (see
#: :meth:`ConvBlock._forward_folded`); below glibc's largest heap-served allocation (32 MiB).
STRIP_BYTES = 24 * 2**20


def strip_rows(row_bytes: int, height: int) -> int:
    """Rows per strip for a map of ``height`` rows of ``row_bytes`` each: all of them if the
    map fits in :data:`STRIP_BYTES`, else equal strips that do (at least 8 rows)."""
    if exporting() or row_bytes * height <= STRIP_BYTES:
        return height
    num_strips = -(-row_bytes * height // STRIP_BYTES)
    return max(8, -(-height // num_strips))
