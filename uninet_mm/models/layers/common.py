"""Small building pieces shared by the UniNet blocks: norm layers, stochastic depth, the layout
helpers between 2D maps and token sequences, and the in-place inference helpers.

Speed notes (CPU): the backbone runs channels_last, so a (B, C, H, W) map and its (B, H*W, C)
token sequence are views of one buffer. Without autograd (``torch.no_grad()`` /
``torch.inference_mode()``), norms, GELUs and residual sums of freshly computed tensors are
written in place: allocating and first-touching a new full-size tensor costs about as much
as the arithmetic itself on CPU. With autograd on, every op is the plain out-of-place one.
On GPUs a BatchNorm stays one cuDNN kernel (its affine form would be several small ones).
"""
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

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

    @property
    def is_identity(self) -> bool:
        return self.p == 0.0 or not self.training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_identity:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f'p={self.p}'


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C); a free view when ``x`` is channels_last."""
    batch, channels, height, width = x.shape
    return x.permute(0, 2, 3, 1).reshape(batch, height * width, channels)


def to_map(tokens: torch.Tensor, hw_shape: Tuple[int, int]) -> torch.Tensor:
    """(B, H*W, C) -> (B, C, H, W); a free view of contiguous tokens, in channels_last layout
    (the strides mkldnn convolutions accept without a copy)."""
    batch, _, channels = tokens.shape
    return tokens.reshape(batch, hw_shape[0], hw_shape[1], channels).permute(0, 3, 1, 2)


class _ContiguousOutput(torch.autograd.Function):
    """``x.contiguous()`` whose backward returns the gradient in ``x``'s layout."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.channels_last = (x.is_contiguous(memory_format=torch.channels_last)
                             and not x.is_contiguous())
        return x.contiguous()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        if ctx.channels_last:
            return grad.contiguous(memory_format=torch.channels_last)
        return grad


def contiguous_output(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) map -> NCHW-contiguous map for consumers outside the backbone.

    The gradient that comes back (NCHW from a neck's convolutions, or a broadcast scalar) is
    turned back into ``x``'s channels_last layout once here: a mixed-layout gradient would
    otherwise flow down the residual stream and put every BatchNorm backward of the stage on
    its slow path (about 5x slower on CPU).
    """
    if torch.is_grad_enabled() and not exporting():
        return _ContiguousOutput.apply(x)
    return x.contiguous()


def exporting() -> bool:
    """True while ``torch.jit.trace`` or ``torch.export`` records the model: the speed paths
    whose ops or shape-dependent loops an exported graph should not contain step aside."""
    is_exporting = getattr(torch.compiler, 'is_exporting', lambda: False)
    return torch.jit.is_tracing() or is_exporting()


def autocast_enabled(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (on any torch 2.x)."""
    try:
        return torch.is_autocast_enabled(device_type)  # torch >= 2.4
    except TypeError:
        if device_type == 'cpu':
            return torch.is_autocast_cpu_enabled()
        return torch.is_autocast_enabled()


def autograd_off() -> bool:
    """True under ``torch.no_grad()`` / inference mode, where ops may overwrite fresh tensors."""
    return not torch.is_grad_enabled()


def _inference_affine(norm: _BatchNorm) -> Tuple[torch.Tensor, torch.Tensor]:
    """(C, 1, 1) scale and shift with ``norm(x) == x * scale + shift`` (running statistics)."""
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    return scale[:, None, None], shift[:, None, None]


def foldable(norm: nn.Module) -> bool:
    """True for a BatchNorm that is a fixed per-channel affine (eval mode, running stats)."""
    return (isinstance(norm, _BatchNorm) and not norm.training
            and norm.running_var is not None)


def folds_norms(x: torch.Tensor, *norms: nn.Module) -> bool:
    """Whether inference on ``x`` may fold ``norms`` into the adjacent convolutions: autograd
    off, a CPU tensor and every norm :func:`foldable`. The folded weights are recomputed each
    call (cheap: weights are small), so parameters and checkpoints never change."""
    return autograd_off() and x.device.type == 'cpu' and all(map(foldable, norms))


def fold_norms(weight: torch.Tensor, bias: Optional[torch.Tensor], after: nn.Module,
               before: Optional[nn.Module] = None
               ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of the conv/linear computing ``after(layer(before(x)))``.

    ``weight`` is (O, I, ...) with optional (O,) ``bias``; ``after`` (O channels) and
    ``before`` (I channels, only valid for a layer without padding and groups) are
    :func:`foldable` BatchNorms.
    """
    expand = (slice(None),) + (None,) * (weight.ndim - 1)
    if bias is None:
        bias = weight.new_zeros(weight.shape[0])
    if before is not None:
        scale, shift = (t.flatten() for t in _inference_affine(before))
        bias = bias + weight.reshape(*weight.shape[:2], -1).sum(2) @ shift
        weight = weight * scale[(None,) + expand[:-1]]
    scale, shift = (t.flatten() for t in _inference_affine(after))
    return weight * scale[expand], torch.addcmul(shift, bias, scale)


def norm_act(x: torch.Tensor, norm: nn.Module, act: bool = True) -> torch.Tensor:
    """``gelu(norm(x))`` (``norm(x)`` if not ``act``) of a fresh (B, C, H, W) ``x``.

    With autograd off, a BatchNorm using running statistics on a CPU tensor is applied as its
    per-channel affine and, like the GELU, written into ``x`` (``x`` must not be used
    elsewhere). The BN parameters are untouched; nothing is folded into the convolution.
    """
    if not autograd_off():
        x = norm(x)
        return F.gelu(x) if act else x
    if (x.device.type == 'cpu' and isinstance(norm, _BatchNorm) and not norm.training
            and norm.running_var is not None):
        scale, shift = _inference_affine(norm)
        x = torch.addcmul(shift, x, scale, out=x)
    else:
        x = norm(x)
    return torch.ops.aten.gelu_(x) if act else x


def gelu(x: torch.Tensor) -> torch.Tensor:
    """GELU of a fresh ``x``; in place when autograd is off."""
    return torch.ops.aten.gelu_(x) if autograd_off() else F.gelu(x)


def add_residual(branch: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
    """``shortcut + branch`` for a fresh ``branch``; summed into it when autograd is off."""
    return branch.add_(shortcut) if autograd_off() else shortcut + branch


def on_cpu(flag: Optional[bool], x: torch.Tensor) -> bool:
    """Resolve an optional speed switch: ``None`` means "on for CPU tensors only"."""
    return x.device.type == 'cpu' if flag is None else flag
