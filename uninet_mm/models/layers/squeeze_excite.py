"""Squeeze-and-excitation with a hard-sigmoid gate, as in the reference DWConv block."""
import torch
import torch.nn.functional as F
from torch import nn


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` (at least ``divisor``); add one
    ``divisor`` if rounding lost more than 10%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class SqueezeExcite(nn.Module):
    """(B, C, H, W) -> (B, C, H, W): x * hard_sigmoid(fc2(relu(fc1(mean_hw(x))))), with
    1x1 convs fc1 (C -> make_divisible(C // 4)) and fc2 (back to C)."""

    def __init__(self, channels: int):
        super().__init__()
        reduced = make_divisible(channels // 4, 8)
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = x.mean((2, 3), keepdim=True)
        gate = F.hardsigmoid(self.fc2(F.relu(self.fc1(gate))))
        return x * gate
