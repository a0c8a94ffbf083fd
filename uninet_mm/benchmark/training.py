"""Training iterations of a whole config (data loading, forward, backward, optimizer step), one
speed variant per fresh interpreter, for side-by-side runs of the same config, seed and data.

``python -m uninet_mm.benchmark.training SPEC_JSON`` trains ``spec['iters']`` iterations of
``spec['config']`` with mmengine's Runner and prints ``RESULT <json>``: per iteration the
process's CPU time, the wall time and the logged losses. :func:`spawn_training` runs it from
``tools/analysis_tools/benchmark_training.py``, which interleaves the variants round by round.

Variants (:data:`TRAINING_VARIANTS`): ``plain`` (the config without any
``UniNetAccelerationHook``), ``shipped`` (the config as it is, its own hook included),
``channels_last`` and ``separable_roi_align`` (the hook with only that option on), and
``compile`` (plain with mmengine's ``compile=True``; its first iterations include the
compilation).
"""
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Mapping

import torch
from mmengine.hooks import Hook

from ..utils.tools_support import without_acceleration_hooks

TRAINING_VARIANTS = ('plain', 'shipped', 'channels_last', 'separable_roi_align', 'compile')
RESULT_PREFIX = 'RESULT '


class IterationTimer(Hook):
    """Records CPU time, wall time and losses of every training iteration."""

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self.records: List[Dict[str, float]] = []
        self._start = (0.0, 0.0)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._start = (time.process_time(), time.perf_counter())

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        cpu, wall = time.process_time(), time.perf_counter()
        losses = {k: float(v) for k, v in (outputs or {}).items()
                  if 'loss' in k and torch.is_tensor(v)}
        self.records.append(dict(cpu=cpu - self._start[0], wall=wall - self._start[1],
                                 **losses))


def apply_variant(cfg, variant: str) -> None:
    """Turn the config ``cfg`` into ``variant`` (see :data:`TRAINING_VARIANTS`) in place."""
    if variant not in TRAINING_VARIANTS:
        raise ValueError(f'unknown variant {variant!r}; choose from {TRAINING_VARIANTS}')
    if variant == 'shipped':
        return
    hooks = without_acceleration_hooks(cfg)
    if variant in ('channels_last', 'separable_roi_align'):
        hooks.append(dict(type='UniNetAccelerationHook', fuse_for_test=False,
                          channels_last=variant == 'channels_last',
                          separable_roi_align=variant == 'separable_roi_align'))
    cfg.custom_hooks = hooks
    cfg.compile = variant == 'compile'


def run_training(spec: Mapping[str, Any]) -> Dict:
    """Train ``spec['iters']`` iterations of ``spec['config']`` (with ``spec['cfg_options']``
    merged in) as ``spec['variant']`` on ``spec['threads']`` threads; no validation, no
    checkpoint. Returns the per-iteration records of :class:`IterationTimer` and what the
    variant converted: ``converted['channels_last']`` (the UniNet backbones' 4D weights are
    all channels_last) and ``converted['separable_roi_align']`` (how many RoIAlign layers are
    :class:`uninet_mm.ops.SeparableRoIAlign`)."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    from ..models.acceleration import uninet_backbones
    from ..ops import SeparableRoIAlign

    torch.set_num_threads(spec['threads'])
    cfg = Config.fromfile(spec['config'])
    cfg.merge_from_dict(dict(spec.get('cfg_options') or {}))
    apply_variant(cfg, spec['variant'])
    iters = spec['iters']
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters + 1
    cfg.default_hooks.checkpoint.interval = iters + 1
    cfg.default_hooks.logger.interval = max(1, iters)
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
    cfg.test_dataloader = cfg.test_evaluator = cfg.test_cfg = None
    cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]
    # mmengine keeps visualizers by name: a second run in this process gets its own
    cfg.visualizer.name = f'training_benchmark_{time.time_ns()}'
    with tempfile.TemporaryDirectory() as work_dir:
        cfg.work_dir = work_dir
        runner = Runner.from_cfg(cfg)
        timer = IterationTimer()
        runner.register_hook(timer)
        runner.train()
    model = runner.model
    weights = [p for backbone in uninet_backbones(model).values()
               for p in backbone.parameters() if p.ndim == 4]
    converted = dict(
        channels_last=bool(weights) and all(
            p.is_contiguous(memory_format=torch.channels_last) for p in weights),
        separable_roi_align=sum(isinstance(m, SeparableRoIAlign) for m in model.modules()))
    return dict(variant=spec['variant'], records=timer.records, converted=converted)


def spawn_training(spec: Mapping[str, Any]) -> Dict:
    """:func:`run_training` in a fresh interpreter; if it fails, ``records`` is empty and
    ``error`` holds the end of its stderr."""
    env = dict(os.environ, OMP_NUM_THREADS=str(spec['threads']))
    proc = subprocess.run([sys.executable, '-m', __name__, json.dumps(dict(spec))],
                          capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    return dict(variant=spec['variant'], error=proc.stderr[-3000:], records=[])


if __name__ == '__main__':
    sys.stdout.write(RESULT_PREFIX + json.dumps(run_training(json.loads(sys.argv[1]))) + '\n')
