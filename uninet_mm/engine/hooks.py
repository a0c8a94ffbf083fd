"""Hooks of this package, registered in mmengine's ``HOOKS`` registry when
:mod:`uninet_mm` is imported (``custom_imports=dict(imports=['uninet_mm'])``)."""
from typing import Dict

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..models.acceleration import (fuse_backbones, restore_backbones, to_channels_last,
                                   uninet_backbones, use_separable_roi_align)

__all__ = ['NonFiniteLossHook', 'UniNetAccelerationHook']


@HOOKS.register_module()
class UniNetAccelerationHook(Hook):
    """The speed options as a config switch::

        custom_hooks = [dict(type='UniNetAccelerationHook', channels_last=True,
                             fuse_for_test=True, separable_roi_align=True)]

    ``channels_last``: :func:`to_channels_last` on every UniNet ``backbone`` before training,
    validation or testing, after the weights are initialised or loaded (a random
    initialisation fills a tensor in memory order, so converting first would draw other
    weights from the same seed). The backbone returns NCHW-contiguous maps, so the neck and
    heads run as they do without the hook: mmcv's CPU ``RoIAlign`` reads its input as NCHW
    whatever its strides, and returns wrong features for a channels_last one (so converting
    a Mask R-CNN's neck would break it). ``fuse_for_test``: for ``runner.test()``, after
    the checkpoint is loaded, every UniNet ``backbone`` is replaced by its
    :func:`fuse_for_inference` copy (channels_last too with ``channels_last``) and put back
    after the test, so a runner that trains
    after testing, and its checkpoints, keep the trainable model; validation during training
    runs the trainable model. Backbones without foldable layers are left alone.
    ``separable_roi_align``: before training, validation or testing,
    :func:`use_separable_roi_align` puts :class:`uninet_mm.ops.SeparableRoIAlign` in place of
    mmcv's average-mode ``RoIAlign`` layers (the same results; on the CPU 2-3x faster, on a
    GPU mmcv's kernel as before); models without RoI heads are left alone.

    ``tools/test.py`` adds ``UniNetAccelerationHook(channels_last=True, fuse_for_test=True)``
    unless the config has this hook or ``--no-fuse`` is given. For training memory use
    ``backbone=dict(..., with_cp=True)``; for ``torch.compile`` mmengine's ``compile=True``
    config key (see docs/speed.md).
    """

    priority = 'VERY_HIGH'

    def __init__(self, channels_last: bool = True, fuse_for_test: bool = True,
                 separable_roi_align: bool = True):
        self.channels_last = channels_last
        self.fuse_for_test = fuse_for_test
        self.separable_roi_align = separable_roi_align
        self._originals: Dict[str, nn.Module] = {}

    @staticmethod
    def _model(runner) -> nn.Module:
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def _convert(self, runner) -> int:
        """Apply the switched-on conversions; return how many backbones went channels_last."""
        model = self._model(runner)
        backbones = uninet_backbones(model).values() if self.channels_last else []
        for backbone in backbones:
            to_channels_last(backbone)
        if self.separable_roi_align and use_separable_roi_align(model):
            runner.logger.info('UniNetAccelerationHook: RoIAlign layers -> SeparableRoIAlign '
                               '(the CPU path; mmcv\'s kernel on a GPU)')
        return len(backbones)

    def before_train(self, runner) -> None:
        if self._convert(runner) and isinstance(runner.model, DistributedDataParallel):
            # DDP laid out its gradient buckets when the Runner wrapped the model, before any
            # hook ran; it lays them out again from the parameters' strides after the first
            # iteration, so only that iteration copies the 4D gradients.
            runner.logger.info(
                'UniNetAccelerationHook: backbone converted to channels_last after DDP '
                'wrapped it; DDP\'s "Grad strides do not match bucket view strides" warning '
                'in the first iteration is expected (it rebuilds its buckets after that '
                'iteration)')

    def before_val(self, runner) -> None:
        self._convert(runner)

    def before_test(self, runner) -> None:
        self._convert(runner)
        if not self.fuse_for_test:
            return
        model = self._model(runner)
        self._originals = fuse_backbones(model, channels_last=self.channels_last)
        if not self._originals:
            runner.logger.info('UniNetAccelerationHook: no UniNet backbone, nothing folded')
            return
        names = ', '.join(f'{name}.backbone' if name else 'backbone' for name in self._originals)
        runner.logger.info(f'UniNetAccelerationHook: testing with the BatchNorms of {names} '
                           'folded into the convolutions (fuse_for_inference)'
                           + (', channels_last' if self.channels_last else ''))

    def after_test(self, runner) -> None:
        if self._originals:
            restore_backbones(self._model(runner), self._originals)
            self._originals = {}


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Stop training as soon as the loss is NaN or infinite (the search uses it to end a
    proxy trial early and record it as failed)."""

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        loss = (outputs or {}).get('loss')
        if loss is not None and not bool(torch.isfinite(loss).all()):
            raise FloatingPointError(f'non-finite training loss {loss.detach().sum().item()} at '
                                     f'iteration {runner.iter} (epoch {runner.epoch})')
