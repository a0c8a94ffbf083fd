"""Folding eval-mode BatchNorms into the convolutions beside them.

This is the one boundary through which a layer offers a faster inference form: a layer that
can fold its norms subclasses :class:`FusibleModule` and implements :meth:`~FusibleModule.fuse`
on its own submodules. :func:`uninet_mm.models.acceleration.fuse_for_inference` calls ``fuse()``
on every such layer of an eval-mode copy, without knowing what is inside (the idea of timm's
``reparameterize_model``).

``mmcv.cnn.fuse_conv_bn`` folds a BatchNorm into the conv registered just before it; it is not
used here because the layers must work without mmcv and because the conv blocks also fold the
BatchNorm that *precedes* their expand conv, which that pass does not do.
"""
from typing import Optional, Tuple

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class FusibleModule(nn.Module):
    """A layer with an inference form in which its BatchNorms are folded away."""

    def fuse(self) -> None:
        """Fold this layer's eval-mode BatchNorms into its convolutions, in place; folded
        norms become ``nn.Identity``. Norms without running statistics stay as they are."""
        raise NotImplementedError(f'{type(self).__name__} does not implement fuse()')


def is_foldable(norm: nn.Module) -> bool:
    """A BatchNorm with running statistics (what eval mode uses)."""
    return isinstance(norm, _BatchNorm) and norm.running_var is not None


def _affine(norm: _BatchNorm) -> Tuple[torch.Tensor, torch.Tensor]:
    """(C,) scale and shift with ``norm(x) == x * scale + shift`` (running statistics)."""
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    return scale, shift


@torch.no_grad()
def fold_batch_norm(conv: nn.Conv2d, after: nn.Module,
                    before: Optional[nn.Module] = None) -> nn.Conv2d:
    """A new conv (with bias) computing ``after(conv(before(x)))`` with running statistics.

    ``after`` acts on the conv's output channels; ``before`` (optional) on its input channels,
    which is only exact for a 1x1 conv without groups or padding (the expand conv).
    """
    weight = conv.weight
    bias = conv.bias if conv.bias is not None else weight.new_zeros(conv.out_channels)
    if before is not None:
        if conv.kernel_size != (1, 1) or conv.groups != 1:
            raise ValueError('a norm before a conv folds only into a 1x1 conv without groups')
        scale, shift = _affine(before)
        bias = bias + weight.flatten(1) @ shift
        weight = weight * scale[None, :, None, None]
    scale, shift = _affine(after)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                      conv.padding, conv.dilation, conv.groups, bias=True,
                      device=weight.device, dtype=weight.dtype)
    fused.weight.copy_(weight * scale[:, None, None, None])
    fused.bias.copy_(bias * scale + shift)
    return fused
