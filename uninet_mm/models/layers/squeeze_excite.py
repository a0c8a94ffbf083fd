"""Squeeze-and-excitation with a hard-sigmoid gate, as in the reference DWConv block."""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from .common import autocast_enabled, exporting, to_map, to_tokens


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` (at least ``divisor``); add one
    ``divisor`` if rounding lost more than 10%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _gate_from_mean(mean: torch.Tensor, fc1_w: torch.Tensor, fc1_b: torch.Tensor,
                    fc2_w: torch.Tensor, fc2_b: torch.Tensor) -> torch.Tensor:
    """(B, C) channel means -> (B, C) gate: hard_sigmoid(fc2(relu(fc1(mean))))."""
    return F.hardsigmoid(F.linear(F.relu(F.linear(mean, fc1_w, fc1_b)), fc2_w, fc2_b))


def _gated_matmul(tokens: torch.Tensor, gate_params: Tuple[torch.Tensor, ...],
                  proj_w: torch.Tensor, proj_b: torch.Tensor):
    """(B, N, C) tokens -> (B, N, O) = (tokens * gate) @ proj_w^T + proj_b, computed as
    tokens @ (gate * proj_w^T): the gate scales the (C, O) weight, not the (N, C) tokens.
    Also returns the channel means, the gate and the gated weight."""
    mean = tokens.mean(1)
    gate, weight = _gated_weight(mean, gate_params, proj_w)
    return torch.baddbmm(proj_b[None, None], tokens, weight), mean, gate, weight


def _gated_weight(mean: torch.Tensor, gate_params: Tuple[torch.Tensor, ...],
                  proj_w: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(B, C) channel means -> the (B, C) gate and the (B, C, O) gated projection weight
    ``gate * proj_w^T``."""
    gate = _gate_from_mean(mean, *gate_params)
    return gate, gate[:, :, None] * proj_w.t()


class _SqueezeExciteProject(torch.autograd.Function):
    """Autograd of :func:`_gated_matmul`. Plain autograd would see two consumers of the
    tokens (the mean and the matmul), materialise the mean's broadcast gradient and add it
    to the matmul's, two extra full-size passes; here the mean's (B, C) gradient enters as
    the bias of the backward matmul."""

    @staticmethod
    def forward(ctx, x, fc1_w, fc1_b, fc2_w, fc2_b, proj_w, proj_b):
        gate_params = (fc1_w, fc1_b, fc2_w, fc2_b)
        out, mean, gate, weight = _gated_matmul(to_tokens(x), gate_params, proj_w, proj_b)
        ctx.save_for_backward(x, mean, gate, weight, proj_w, *gate_params)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, mean, gate, weight, proj_w, *gate_params = ctx.saved_tensors
        tokens, grad_out = to_tokens(x), grad_out.contiguous()
        grad_weight = torch.bmm(tokens.transpose(1, 2), grad_out)  # (B, C, O)
        grad_gate = (grad_weight * proj_w.t()).sum(-1)
        grad_proj_w = (grad_weight * gate[:, :, None]).sum(0).t()
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_() for t in (mean, *gate_params)]
            grad_mean, *grad_gate_params = torch.autograd.grad(
                _gate_from_mean(*leaves), leaves, grad_gate)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_tokens = torch.baddbmm((grad_mean / tokens.shape[1])[:, None],
                                        grad_out, weight.transpose(1, 2))
            grad_x = to_map(grad_tokens, x.shape[2:])
        return (grad_x, *grad_gate_params, grad_proj_w, grad_out.sum((0, 1)))


class SqueezeExcite(nn.Module):
    """(B, C, H, W) -> (B, C, H, W): x * hard_sigmoid(fc2(relu(fc1(mean_hw(x))))).

    The 1x1 convs act on (B, C) vectors, so they run as Linear layers (same parameters).
    :meth:`gate` returns the (B, C) gate alone, for callers that fold it into the next layer.
    """

    def __init__(self, channels: int):
        super().__init__()
        reduced = make_divisible(channels // 4, 8)
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C) gate in [0, 1]."""
        return _gate_from_mean(x.mean((2, 3)), *self.gate_params())

    def gate_params(self) -> Tuple[torch.Tensor, ...]:
        """fc1 and fc2 as Linear weights and biases."""
        return (self.fc1.weight.flatten(1), self.fc1.bias, self.fc2.weight.flatten(1),
                self.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)[:, :, None, None]


def squeeze_excite_project(x: torch.Tensor, se: SqueezeExcite, proj: nn.Conv2d,
                           weight_bias: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
                           ) -> torch.Tensor:
    """``proj(se(x))`` for a 1x1 ``proj`` with bias: (B, C, H, W) -> (B, O, H, W).

    On a channels_last ``x`` the per-sample SE gate is folded into the projection weight, so
    the gating is one batched matmul over the token view instead of an extra elementwise
    pass (and, in training, an extra stored activation). ``weight_bias`` replaces the
    projection's (O, C) weight and (O,) bias (e.g. with a following norm folded in).
    """
    proj_w, proj_b = weight_bias or (proj.weight.flatten(1), proj.bias)
    if not x.is_contiguous(memory_format=torch.channels_last):
        return F.conv2d(se(x), proj_w[:, :, None, None], proj_b)
    gate_params = se.gate_params()
    # tracers and autocast (whose casts the hand-written backward does not replay) get the
    # plain ops, which autograd differentiates itself
    if (torch.is_grad_enabled() and not exporting()
            and not autocast_enabled(x.device.type)):
        out = _SqueezeExciteProject.apply(x, *gate_params, proj_w, proj_b)
    else:
        out = _gated_matmul(to_tokens(x), gate_params, proj_w, proj_b)[0]
    return to_map(out, x.shape[2:])


def squeeze_excite_project_strips(strips: List[torch.Tensor], se: SqueezeExcite,
                                  proj_w: torch.Tensor, proj_b: torch.Tensor) -> torch.Tensor:
    """Inference form of :func:`squeeze_excite_project` for a map given as horizontal strips
    (B, C, h_i, W), in order: the SE gate comes from the mean over all strips, then each strip
    is projected with the gated (O, C) ``proj_w``. Returns the (B, O, sum h_i, W) map."""
    num_tokens = sum(strip.shape[2] * strip.shape[3] for strip in strips)
    total = sum(to_tokens(strip).sum(1) for strip in strips)
    _, weight = _gated_weight(total / num_tokens, se.gate_params(), proj_w)
    outs = [to_map(torch.baddbmm(proj_b[None, None], to_tokens(strip), weight),
                   strip.shape[2:]) for strip in strips]
    return torch.cat(outs, dim=2)
