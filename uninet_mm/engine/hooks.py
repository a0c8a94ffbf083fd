"""Hooks of this package, registered in mmengine's ``HOOKS`` registry when
:mod:`uninet_mm` is imported (``custom_imports=dict(imports=['uninet_mm'])``)."""
import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from torch import nn

from ..models.acceleration import fuse_for_inference, to_channels_last

__all__ = ['NonFiniteLossHook', 'UniNetAccelerationHook']


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
    ``'selective'`` and about a third of its memory; see docs/speed.md); for ``torch.compile``
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


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Stop training as soon as the loss is NaN or infinite (the search uses it to end a
    proxy trial early and record it as failed)."""

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        loss = (outputs or {}).get('loss')
        if loss is not None and not bool(torch.isfinite(loss).all()):
            raise FloatingPointError(f'non-finite training loss {loss.detach().sum().item()} at '
                                     f'iteration {runner.iter} (epoch {runner.epoch})')
