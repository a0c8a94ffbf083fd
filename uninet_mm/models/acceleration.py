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
                                   GELU, SE gating, residual sums)
:func:`accelerate`                 the three above plus ``torch.compile`` from one call
:class:`UniNetAccelerationHook`    the config switch for tools/train.py and tools/test.py
=================================  ========================================================

What each option buys on a 2-core CPU is printed side by side by
``tools/analysis_tools/benchmark_backbone.py --variants ...`` (see the README).
"""
import copy
from typing import Any, Optional

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

from .layers.conv_block import ConvBlock, ConvNormAct
from .layers.downsample import LocalBranch

__all__ = ['fold_batch_norm', 'fuse_for_inference', 'to_channels_last',
           'selective_checkpoint_context', 'accelerate']


# ---------------------------------------------------------------------------- BN folding
def _affine(norm: _BatchNorm):
    """(C,) scale and shift with ``norm(x) == x * scale + shift`` (running statistics)."""
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    return scale, shift


def _foldable(norm: nn.Module) -> bool:
    return isinstance(norm, _BatchNorm) and norm.running_var is not None


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


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` in which every BatchNorm that follows (or, in a conv
    block's expansion, precedes) a convolution is folded into it once; the folded norms
    become ``nn.Identity``. ``model`` is untouched. Other norms (GN, LN) stay as they are.
    Works on a backbone or on a whole detector/segmentor that contains one.

    The copy is for inference only: its state dict has no BatchNorm entries.

    Measured: eager B3 forward at 800x1333, batch 2, 2-core AMD EPYC, 7.3 s against 9.0 s for
    channels_last alone (-19%; -11% in an earlier run). See the README's Speed section.
    """
    fused = copy.deepcopy(model).eval()
    for module in fused.modules():
        if isinstance(module, ConvNormAct) and _foldable(module.norm):
            module.conv, module.norm = fold_batch_norm(module.conv, module.norm), nn.Identity()
        elif isinstance(module, ConvBlock):
            _fuse_conv_block(module)
        elif isinstance(module, LocalBranch) and _foldable(module[1]):
            module[0], module[1] = fold_batch_norm(module[0], module[1]), nn.Identity()
    return fused


def _fuse_conv_block(block: ConvBlock) -> None:
    if isinstance(block.expand, nn.Sequential):
        in_norm, conv, norm, _ = block.expand
        if _foldable(in_norm) and _foldable(norm):
            block.expand[1] = fold_batch_norm(conv, norm, before=in_norm)
            block.expand[0], block.expand[2] = nn.Identity(), nn.Identity()
    if _foldable(block.conv_norm):
        block.conv, block.conv_norm = fold_batch_norm(block.conv, block.conv_norm), nn.Identity()
    if _foldable(block.project_norm):
        block.project = fold_batch_norm(block.project, block.project_norm)
        block.project_norm = nn.Identity()


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
    from .backbones.uninet import UniNetStage
    model.to(memory_format=torch.channels_last)
    for module in model.modules():
        if isinstance(module, UniNetStage):
            module.register_forward_hook(_keep_grad_channels_last)
    return model


# ---------------------------------------------------------------------------- memory
#: Ops whose outputs selective checkpointing keeps: the expensive ones.
_SAVED_OPS = {
    torch.ops.aten.convolution.default,
    torch.ops.aten.mm.default,
    torch.ops.aten.addmm.default,
    torch.ops.aten.bmm.default,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default,
    torch.ops.aten._scaled_dot_product_flash_attention.default,
    torch.ops.aten._scaled_dot_product_efficient_attention.default,
    torch.ops.aten._scaled_dot_product_cudnn_attention.default,
    torch.ops.aten.max_pool2d_with_indices.default,
}
#: BatchNorm ops that update running statistics when given them in training (their schemas
#: do not say so): recomputing them would update the statistics twice.
_BATCH_NORM_OPS = {
    torch.ops.aten.native_batch_norm.default,
    torch.ops.aten._native_batch_norm_legit.default,
    torch.ops.aten._batch_norm_with_update.default,
    torch.ops.aten.cudnn_batch_norm.default,
}


def _updates_running_stats(op, args) -> bool:
    # (input, weight, bias, running_mean, running_var, training, ...) or, for
    # _batch_norm_with_update, (input, weight, bias, running_mean, running_var, momentum, eps)
    if op not in _BATCH_NORM_OPS or len(args) < 6 or args[3] is None:
        return False
    return op is torch.ops.aten._batch_norm_with_update.default or bool(args[5])


def _policy(ctx, op, *args, **kwargs) -> CheckpointPolicy:
    # Mutating ops (num_batches_tracked += 1, running statistics) must run once, not again
    # when backward recomputes the block, so their outputs are kept.
    if op in _SAVED_OPS or op._schema.is_mutable or _updates_running_stats(op, args):
        return CheckpointPolicy.MUST_SAVE
    return CheckpointPolicy.PREFER_RECOMPUTE


def selective_checkpoint_context():
    """``context_fn`` for ``torch.utils.checkpoint.checkpoint(..., use_reentrant=False)``:
    torch's selective activation checkpointing with the policy above."""
    return create_selective_checkpoint_contexts(_policy, allow_cache_entry_mutation=True)


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



# ---------------------------------------------------------------------------- config switch
@HOOKS.register_module()
class UniNetAccelerationHook(Hook):
    """The speed options as a config switch read by ``tools/train.py`` / ``tools/test.py``::

        custom_hooks = [dict(type='UniNetAccelerationHook', channels_last=True,
                             fuse_for_test=True)]

    ``channels_last``: :func:`to_channels_last` on the whole model before training or testing
    (the detector's neck and heads too). ``fuse_for_test``: in ``runner.test()``, after the
    checkpoint is loaded, every ``backbone`` is replaced by its :func:`fuse_for_inference`
    copy (validation during training keeps the trainable model). For training memory use
    ``backbone=dict(..., with_cp=True)`` (on a CPU it took no more time than
    ``'selective'`` and about a third of its memory; see the README); for ``torch.compile``
    mmengine's own ``compile=True`` config key.
    """

    priority = 'VERY_HIGH'

    def __init__(self, channels_last: bool = True, fuse_for_test: bool = True):
        self.channels_last = channels_last
        self.fuse_for_test = fuse_for_test

    @staticmethod
    def _model(runner) -> nn.Module:
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def before_run(self, runner) -> None:
        if self.channels_last:
            to_channels_last(self._model(runner))

    def before_test(self, runner) -> None:
        if not self.fuse_for_test:
            return
        model = self._model(runner)
        for module in list(model.modules()):
            backbone = getattr(module, 'backbone', None)
            if isinstance(backbone, nn.Module):
                module.backbone = fuse_for_inference(backbone)
                if self.channels_last:
                    to_channels_last(module.backbone)
