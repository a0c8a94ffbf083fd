"""Speed and memory options for a UniNet model, applied by an explicit call; the modules in
:mod:`uninet_mm.models.layers` stay the plain architecture.

=================================  ========================================================
:func:`fuse_for_inference`         copy with every eval-mode BatchNorm folded into its
                                   convolution, once (timm's ``reparameterize_model`` idea)
:func:`to_channels_last`           channels_last weights and activations (oneDNN's fast
                                   layout on CPU), gradients kept in that layout
:func:`selective_checkpoint_context`  torch's selective activation checkpointing policy used
                                   by ``UniNet(with_cp='selective')``: keep the outputs of
                                   convolutions, matmuls and attention and of the
                                   BatchNorms that update running statistics, recompute the
                                   other elementwise ops (LayerNorms, eval-mode BatchNorms,
                                   GELU, SE gating, residual sums); defined in
                                   :mod:`uninet_mm.models.activation_checkpointing`
:func:`accelerate`                 the three above plus ``torch.compile`` from one call
:func:`use_separable_roi_align`    mmcv's ``RoIAlign`` layers (a detector's RoI heads) ->
                                   :class:`uninet_mm.ops.SeparableRoIAlign`: the same
                                   results, 2-3x faster forward+backward on the CPU
=================================  ========================================================

The config switch for the train/test tools is
:class:`uninet_mm.engine.hooks.UniNetAccelerationHook`.

What each option buys on a 2-core CPU is printed side by side by
``tools/analysis_tools/benchmark_backbone.py --variants ...`` (see docs/speed.md).
"""
import copy
from typing import Any, Dict

import torch
from torch import nn

from ..ops.roi_align import SeparableRoIAlign
from .activation_checkpointing import selective_checkpoint_context
from .backbones.uninet import UniNetStage
from .layers.fusion import FusibleModule, fold_batch_norm

__all__ = ['FusibleModule', 'fold_batch_norm', 'fuse_for_inference', 'uninet_backbones',
           'fuse_backbones', 'restore_backbones', 'to_channels_last',
           'selective_checkpoint_context', 'accelerate', 'use_separable_roi_align']


# ---------------------------------------------------------------------------- BN folding
def fuse_for_inference(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` in which every :class:`FusibleModule` has folded its
    BatchNorms into its convolutions (:meth:`FusibleModule.fuse`); ``model`` is untouched.
    Other norms (GN, LN) stay as they are. Works on a backbone or on a whole
    detector/segmentor that contains one.

    The copy is for inference only: its state dict has no BatchNorm entries.

    Measured: eager B3 forward at 800x1333, batch 2, 2-core AMD EPYC, 7.3 s against 9.0 s for
    channels_last alone (-19%; -11% in an earlier run). See docs/speed.md.
    """
    fused = copy.deepcopy(model).eval()
    for module in list(fused.modules()):
        if isinstance(module, FusibleModule):
            module.fuse()
    return fused


def uninet_backbones(model: nn.Module) -> Dict[str, nn.Module]:
    """Every ``backbone`` of ``model`` and of its submodules that has :class:`FusibleModule`
    layers (a UniNet), by the dotted name of the module that holds it (``''``: ``model``)."""
    found = {}
    for name, module in model.named_modules():
        backbone = getattr(module, 'backbone', None)
        if (isinstance(backbone, nn.Module)
                and any(isinstance(m, FusibleModule) for m in backbone.modules())):
            found[name] = backbone
    return found


def fuse_backbones(model: nn.Module, channels_last: bool = False) -> Dict[str, nn.Module]:
    """Replace, in place, every ``backbone`` of ``model`` (and of its submodules) that has
    :class:`FusibleModule` layers (a UniNet) by its :func:`fuse_for_inference` copy, made
    :func:`to_channels_last` too with ``channels_last`` (the backbone still returns NCHW maps,
    so the neck and heads are unaffected); other backbones stay as they are. Returns the
    replaced originals by dotted name (``''`` for ``model.backbone``), for
    :func:`restore_backbones`; empty if nothing was folded.

    For inference with loaded weights only: the copies are in eval mode and have no
    BatchNorm parameters or statistics.
    """
    originals = uninet_backbones(model)
    for name, backbone in originals.items():
        fused = fuse_for_inference(backbone)
        model.get_submodule(name).backbone = to_channels_last(fused) if channels_last else fused
    return originals


def restore_backbones(model: nn.Module, originals: Dict[str, nn.Module]) -> None:
    """Put back the backbones that :func:`fuse_backbones` replaced."""
    for name, backbone in originals.items():
        model.get_submodule(name).backbone = backbone


# ---------------------------------------------------------------------------- layout
def _grad_to_channels_last(grad: torch.Tensor) -> torch.Tensor:
    return grad.contiguous(memory_format=torch.channels_last)


def _keep_grad_channels_last(module: nn.Module, args: Any, output: torch.Tensor) -> None:
    if output.requires_grad:
        output.register_hook(_grad_to_channels_last)


def to_channels_last(model: nn.Module) -> nn.Module:
    """Convert ``model`` in place to channels_last (4D weights; activations follow them) and
    return it.

    The backbone returns NCHW-contiguous maps; the NCHW gradients that come back to them are
    turned channels_last where they enter each stage (a hook on the stage outputs), so
    backward runs in one layout. Measured: B3 forward+backward at 800x1333, batch 2, 2-core
    AMD EPYC, 24.6 s against 26.9 s without the hook (8 paired rounds, faster in 7).
    """
    model.to(memory_format=torch.channels_last)
    for module in model.modules():
        if isinstance(module, UniNetStage) and not getattr(module, '_grad_layout_hook', False):
            module.register_forward_hook(_keep_grad_channels_last)
            module._grad_layout_hook = True  # converting again adds no second hook
    return model


# ---------------------------------------------------------------------------- RoI heads
def use_separable_roi_align(model: nn.Module) -> int:
    """Replace, in place, every average-mode mmcv ``RoIAlign`` in ``model`` (the RoI
    extractors of Mask R-CNN and its kin) by :class:`SeparableRoIAlign` with the same
    settings, and return how many were replaced. Nothing changes on a GPU (it calls mmcv's
    kernel there); on the CPU the results are mmcv's up to float rounding and, measured on
    the quickstart's RoIs (2-core AMD EPYC, 1 thread), forward+backward takes 0.45x the time
    (docs/speed.md). Layers that are already separable or in max mode are left alone."""
    from mmcv.ops import RoIAlign
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, RoIAlign) and child.pool_mode == 'avg':
                setattr(parent, name, SeparableRoIAlign.from_mmcv(child))
                replaced += 1
    return replaced


# ---------------------------------------------------------------------------- one call
def accelerate(model: nn.Module, *, inference: bool, channels_last: bool = True,
               fuse_bn: bool = True, compile: bool = False,
               **compile_kwargs: Any) -> nn.Module:
    """The speed options in one call.

    Args:
        model: a UniNet backbone, or any model that contains one.
        inference: ``True`` returns an inference model (a fused copy when ``fuse_bn``);
            ``False`` keeps ``model`` trainable (no folding).
        channels_last: :func:`to_channels_last`.
        fuse_bn: :func:`fuse_for_inference` (inference only).
        compile: wrap in ``torch.compile(**compile_kwargs)``; for inference, set
            ``torch._inductor.config.freezing = True`` first to let inductor fold weights.
    """
    if inference and fuse_bn:
        model = fuse_for_inference(model)
    if channels_last:
        model = to_channels_last(model)
    if compile:
        model = torch.compile(model, **compile_kwargs)
    return model
