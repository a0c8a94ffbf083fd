"""Training memory saver: BatchNorm and GELU outputs re-derived in backward, not stored.

In a DWConv block, autograd normally keeps six hidden-width maps per block for backward:
for both "conv -> BN -> GELU -> next op" chains the BN input, the BN output (saved by GELU)
and the GELU output (saved by the next op). The BN output is a per-channel affine of the BN
input, ``y = x * scale + shift`` with the batch statistics of the forward pass, so only
``x`` needs to be kept: when backward asks for ``y`` or ``gelu(y)``, they are recomputed from
``x`` (two elementwise passes). The weights, the running statistics and the gradients are
those of the plain modules; only what autograd stores changes (via saved-tensor hooks).
A BN + GELU pair in training runs as one autograd node (:class:`_BatchNormGELU`) whose
forward and backward overwrite their own fresh intermediates instead of allocating more.
"""
from typing import Dict, Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.modules.batchnorm import _BatchNorm

from .common import autocast_enabled, gelu, norm_act

_Affine = Tuple[torch.Tensor, torch.Tensor]


def _runs_locally(norm: nn.Module) -> bool:
    """True for a BatchNorm whose forward is a local batch norm (not synchronised)."""
    if not isinstance(norm, _BatchNorm):
        return False
    if isinstance(norm, nn.SyncBatchNorm) and norm.training:
        return not (dist.is_available() and dist.is_initialized()
                    and dist.get_world_size(norm.process_group) > 1)
    return True


def batch_norm_with_affine(norm: _BatchNorm, x: torch.Tensor
                           ) -> Tuple[torch.Tensor, _Affine, Tuple[torch.Tensor, torch.Tensor]]:
    """``norm(x)`` (same statistics and running-stat updates as ``norm.forward``), the
    detached (C, 1, 1) scale and shift for which ``norm(x) == x * scale + shift``, and the
    (C,) mean and inverse standard deviation it normalised with."""
    momentum = 0.0 if norm.momentum is None else norm.momentum
    if norm.training and norm.track_running_stats and norm.num_batches_tracked is not None:
        norm.num_batches_tracked.add_(1)
        if norm.momentum is None:
            momentum = 1.0 / float(norm.num_batches_tracked)
    use_batch_stats = norm.training or norm.running_mean is None
    keep_running = not norm.training or norm.track_running_stats
    running_mean = norm.running_mean if keep_running else None
    running_var = norm.running_var if keep_running else None
    if use_batch_stats:  # the aten op also returns the batch statistics
        y, mean, invstd = torch.ops.aten.native_batch_norm(
            x, norm.weight, norm.bias, running_mean, running_var, True, momentum, norm.eps)
    else:
        y = F.batch_norm(x, running_mean, running_var, norm.weight, norm.bias, False, 0.0,
                         norm.eps)
        mean, invstd = norm.running_mean, torch.rsqrt(norm.running_var + norm.eps)
    with torch.no_grad():
        scale = invstd if norm.weight is None else invstd * norm.weight
        shift = -mean * scale if norm.bias is None else norm.bias - mean * scale
    return y, (scale[:, None, None], shift[:, None, None]), (mean, invstd)


class _Rederive:
    """Recomputes ``y = x * scale + shift`` (``y = x`` without an affine) and ``gelu(y)``,
    with the size and strides of the original ``y``."""

    def __init__(self, x: torch.Tensor, affine: Optional[_Affine], y: torch.Tensor):
        self.x, self.affine = x, affine
        self.size, self.stride = y.size(), y.stride()
        self._norm_out: Optional[torch.Tensor] = None

    def norm_out(self, keep: bool) -> torch.Tensor:
        if self.affine is None:
            return self.x
        y, self._norm_out = self._norm_out, None
        if y is None:
            y = torch.empty_strided(self.size, self.stride, dtype=self.x.dtype,
                                    device=self.x.device)
            scale, shift = self.affine
            torch.addcmul(shift, self.x, scale, out=y)
        if keep:  # the GELU's own backward asks for y right after its consumer's
            self._norm_out = y
        return y

    def get(self, kind: str) -> torch.Tensor:
        return self.norm_out(keep=False) if kind == 'norm' else F.gelu(self.norm_out(keep=True))


class _BatchNormGELU(torch.autograd.Function):
    """``gelu(norm(x))`` for a BatchNorm in training mode (batch statistics), as one autograd
    node: the GELU is written over the fresh BN output, and in backward the GELU gradient is
    written over the re-derived BN output, two full-size allocations fewer than BN then GELU
    (on CPU a fresh large tensor costs about as much as the pass that fills it). Keeps ``x``
    and the (C,) batch statistics; the same kernels run, so values are unchanged."""

    @staticmethod
    def forward(ctx, x, weight, bias, norm, holder):
        y, affine, (mean, invstd) = batch_norm_with_affine(norm, x)
        ctx.rederive = _Rederive(x, affine, y)
        holder.append(ctx.rederive)
        ctx.eps = norm.eps
        ctx.save_for_backward(x, weight, mean, invstd)
        return torch.ops.aten.gelu_(y)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, weight, mean, invstd = ctx.saved_tensors
        y = ctx.rederive.norm_out(keep=False)  # the consumer's backward may have made it
        ctx.rederive = None  # it holds x: the node itself lives until the graph is freed
        grad_y = torch.ops.aten.gelu_backward.grad_input(grad_out, y, grad_input=y)
        grad_x, grad_w, grad_b = torch.ops.aten.native_batch_norm_backward(
            grad_y, x, weight, None, None, mean, invstd, True, ctx.eps,
            [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]])
        return grad_x, grad_w, grad_b, None, None


class ActivationRecompute:
    """Context for one block: :meth:`norm_act` works like :func:`~.common.norm_act`, but in
    training its BN and GELU outputs are not stored for backward (see the module doc).

    Only the ops run inside the context are affected; norms other than a local BatchNorm,
    and everything while autograd is off or with ``enabled=False``, take the plain path.
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._hooks = None
        self._registry: Dict[int, Tuple[torch.Tensor, _Rederive, str]] = {}

    def __enter__(self) -> 'ActivationRecompute':
        if self.enabled and torch.is_grad_enabled():
            self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
            self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._hooks is not None:
            self._hooks.__exit__(*exc)
            self._hooks = None
        self._registry.clear()  # drops the forward references to the re-derivable maps

    def norm_act(self, x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        """``gelu(norm(x))`` of a fresh (B, C, H, W) ``x`` (overwritten when autograd is off)."""
        if self._hooks is None or not _runs_locally(norm):
            return norm_act(x, norm)
        if norm.training and not autocast_enabled(x.device.type):
            holder: list = []
            out = _BatchNormGELU.apply(x, norm.weight, norm.bias, norm, holder)
            return self._register(out, holder[0], 'act')
        y = self.norm(x, norm)  # registered before the GELU saves it
        return self._register(F.gelu(y), self._registry[id(y)][1], 'act')

    def norm(self, x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        """``norm(x)``; ``x`` is never overwritten."""
        if self._hooks is None or not _runs_locally(norm):
            return norm(x)
        y, affine, _ = batch_norm_with_affine(norm, x)
        return self._register(y, _Rederive(x, affine, y), 'norm')

    def gelu(self, x: torch.Tensor) -> torch.Tensor:
        """``gelu(x)``, recomputed from ``x`` (which the GELU keeps anyway) in backward."""
        if self._hooks is None:
            return gelu(x)
        return self._register(F.gelu(x), _Rederive(x, None, x), 'act')

    def _register(self, tensor: torch.Tensor, rederive: _Rederive, kind: str) -> torch.Tensor:
        self._registry[id(tensor)] = (tensor, rederive, kind)
        return tensor

    def _pack(self, tensor: torch.Tensor):
        for candidate in (tensor, tensor._base):
            entry = self._registry.get(id(candidate))
            if entry is not None and entry[0] is candidate:
                _, rederive, kind = entry
                return rederive, kind, tensor.size(), tensor.stride(), tensor.storage_offset()
        return tensor

    @staticmethod
    def _unpack(packed):
        if isinstance(packed, torch.Tensor):
            return packed
        rederive, kind, size, stride, offset = packed
        return rederive.get(kind).as_strided(size, stride, offset)
