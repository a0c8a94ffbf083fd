"""Selective activation checkpointing for UniNet blocks (``UniNet(with_cp='selective')``):
which op outputs torch keeps and which it recomputes in backward.

A low-level module (torch only) so that the backbone and :mod:`uninet_mm.models.acceleration`
both import it without importing each other.
"""
import torch
from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

__all__ = ['selective_checkpoint_context']

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
