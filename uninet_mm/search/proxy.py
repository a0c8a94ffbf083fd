"""The proxy task: train one sampled UniNet as an mmpretrain classifier and score it.

One trial (:func:`run_proxy_trial`):

1. seeds python, numpy and torch with ``proxy.seed`` and builds the ``ImageClassifier`` of
   ``proxy.runner.model`` with the sampled backbone
   (``SearchSpace.backbone_kwargs``: the arch dict and the proxy input size) and the head's
   ``in_channels`` set to the arch's head width;
2. counts its FLOPs and parameters with the project's counter
   (:func:`uninet_mm.utils.flops.model_complexity`: multiply-adds, batch 1, at the proxy input
   size, classifier head included, as the paper counts);
3. trains it with an mmengine ``Runner`` (``proxy.runner``: dataloaders, optimizer, schedule,
   ``train_cfg.max_epochs`` epochs) on the training split, then scores top-1 accuracy on the
   held-out split once, after training (or after every epoch, ``every_epoch``, for a Ray Tune
   scheduler: each validation goes to ``on_epoch``);
4. returns ``dict(status, accuracy (fraction), flops, params, seconds, cpu_seconds, error,
   epochs, max_epochs)``. :class:`ProxyTrial` wraps it for both backends (tokens in, result
   with its ``reward`` out).
   An exception, a non-finite loss (:class:`~uninet_mm.engine.hooks.NonFiniteLossHook`) or
   running out of memory gives
   ``status='failed'`` with the error, never an exception.

Data (``proxy.data``), prepared once by :func:`prepare_proxy` before the first trial:

* ``dict(type='synthetic_shapes', root=..., num_train, num_val, image_size, seed)``: the
  built-in shape classification set (:func:`uninet_mm.datasets.make_shapes_classification`),
  generated on first use; its ``val`` split is the held-out set.
* ``dict(type='imagenet_holdout', data_root=..., holdout=50000, seed=0)``: ImageNet-1K's
  training set (``data_root/train/<wnid>/*.JPEG``, listed by ``data_root/meta/train.txt`` when
  it exists) split once, with a fixed seed, into ``holdout`` images to score on and the rest to
  train on (the split lists are written to ``WORK_DIR/splits/``). Missing data stop the search
  before any trial with an error saying where they were looked for.
"""
from __future__ import annotations

import copy
import math
import random
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner, set_random_seed
from torch import nn

from ..utils.mmengine_private import QuietRunner, forget_instances
from .reward import MnasReward

if TYPE_CHECKING:
    from .space import SearchSpace

PROXY_DATA_TYPES = ('synthetic_shapes', 'imagenet_holdout')


class ProxyConfigError(ValueError):
    """A proxy-task setting that cannot work; the message says what to change."""


class MetricsCaptureHook(Hook):
    """Keeps the metrics of the last validation and hands every validation's metrics, with
    the epochs trained so far, to ``on_val(epoch, metrics)`` when given."""
    priority = 'VERY_LOW'

    def __init__(self, on_val: Optional[Callable[[int, Dict[str, float]], None]] = None):
        self.metrics: Dict[str, float] = {}
        self.on_val = on_val

    def after_val_epoch(self, runner, metrics: Optional[Dict[str, float]] = None) -> None:
        self.metrics = dict(metrics or {})
        if self.on_val is not None:
            self.on_val(runner.epoch, self.metrics)


# ---------------------------------------------------------------------------------------------
# Data preparation (once per search, before any trial)
# ---------------------------------------------------------------------------------------------
def prepare_proxy(proxy: Dict[str, Any], work_dir: str) -> Dict[str, Any]:
    """Check the proxy settings, make the data ready and return the proxy config with the
    dataloaders pointing at them (absolute paths, so trials may run in any directory).

    Raises:
        ProxyConfigError: missing keys, a missing data set, an unusable split.
    """
    proxy = copy.deepcopy(dict(proxy))
    for key in ('data', 'runner'):
        if key not in proxy:
            raise ProxyConfigError(f'search config: proxy needs a {key!r} entry (see '
                                   f'configs/search/uninet_search_synthetic.py)')
    runner = proxy['runner']
    for key in ('model', 'train_dataloader', 'val_dataloader', 'val_evaluator',
                'optim_wrapper', 'train_cfg'):
        if key not in runner:
            raise ProxyConfigError(f'search config: proxy.runner needs {key!r}')
    epochs = runner['train_cfg'].get('max_epochs')
    if not isinstance(epochs, int) or epochs < 1:
        raise ProxyConfigError(f'search config: proxy.runner.train_cfg.max_epochs = {epochs!r} '
                               f'must be an int >= 1 (epochs per architecture)')
    data = dict(proxy['data'])
    kind = data.pop('type', None)
    if kind == 'synthetic_shapes':
        roots = _prepare_synthetic(data)
    elif kind == 'imagenet_holdout':
        roots = _prepare_imagenet(data, Path(work_dir))
    else:
        raise ProxyConfigError(f'search config: proxy.data.type = {kind!r}; choose one of '
                               f'{list(PROXY_DATA_TYPES)}')
    for split, (data_root, prefix, ann_file) in roots.items():
        dataset = runner[f'{split}_dataloader']['dataset']
        dataset.update(data_root=data_root, data_prefix=prefix, ann_file=ann_file)
    return proxy


def _prepare_synthetic(data: Dict[str, Any]) -> Dict[str, Tuple[str, str, str]]:
    from ..datasets.synthetic_cls import make_shapes_classification

    root = Path(data.pop('root', 'data/search_shapes_cls')).resolve()
    try:
        info = make_shapes_classification(root, **data)
    except TypeError as exc:
        raise ProxyConfigError(f'search config: proxy.data for synthetic_shapes: {exc}; '
                               f'allowed keys: root, num_train, num_val, image_size, seed, '
                               f'size_range, task') from None
    return dict(train=(str(root), info['train_prefix'], ''),
                val=(str(root), info['val_prefix'], ''))


def _prepare_imagenet(data: Dict[str, Any], work_dir: Path) -> Dict[str, Tuple[str, str, str]]:
    root = Path(data.get('data_root', 'data/imagenet')).resolve()
    holdout, seed = data.get('holdout', 50000), data.get('seed', 0)
    train_dir = root / 'train'
    if not train_dir.is_dir():
        raise ProxyConfigError(
            f'ImageNet-1K not found: {train_dir} does not exist. Put the ImageNet-1K training '
            f'set there (train/<wnid>/*.JPEG, optionally meta/train.txt as mmpretrain expects) '
            f'or set proxy.data.data_root in the search config')
    splits = work_dir / 'splits'
    train_list, holdout_list = splits / 'search_train.txt', splits / 'search_holdout.txt'
    if not (train_list.is_file() and holdout_list.is_file()):
        lines = _imagenet_train_lines(root)
        if not isinstance(holdout, int) or not 0 < holdout < len(lines):
            raise ProxyConfigError(f'proxy.data.holdout = {holdout!r} must be an int between 1 '
                                   f'and the {len(lines)} training images found in {train_dir}')
        order = list(range(len(lines)))
        random.Random(seed).shuffle(order)
        held = set(order[:holdout])
        splits.mkdir(parents=True, exist_ok=True)
        holdout_list.write_text(''.join(lines[i] + '\n' for i in sorted(held)))
        train_list.write_text(''.join(lines[i] + '\n' for i in range(len(lines))
                                      if i not in held))
    return dict(train=(str(root), 'train', str(train_list)),
                val=(str(root), 'train', str(holdout_list)))


def _imagenet_train_lines(root: Path) -> List[str]:
    """``'<wnid>/<file> <label>'`` lines of the training set (meta/train.txt or the folders)."""
    meta = root / 'meta' / 'train.txt'
    if meta.is_file():
        return [ln.strip() for ln in meta.read_text().splitlines() if ln.strip()]
    classes = sorted(p.name for p in (root / 'train').iterdir() if p.is_dir())
    lines = []
    for label, wnid in enumerate(classes):
        lines += [f'{wnid}/{f.name} {label}' for f in sorted((root / 'train' / wnid).iterdir())
                  if f.is_file()]
    if not lines:
        raise ProxyConfigError(f'no training images found under {root / "train"}')
    return lines


# ---------------------------------------------------------------------------------------------
# One trial
# ---------------------------------------------------------------------------------------------
class _TensorForward(nn.Module):
    """``ImageClassifier`` in tensor mode (backbone, neck, head logits) for the FLOP counter."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(inputs, mode='tensor')


def build_proxy_model(proxy: Dict[str, Any], backbone_kwargs: Dict[str, Any]) -> nn.Module:
    """The ``ImageClassifier`` of ``proxy.runner.model`` with the sampled backbone."""
    import uninet_mm  # noqa: F401  (registers UniNet)
    from mmengine.registry import MODELS, init_default_scope

    init_default_scope('mmpretrain')
    cfg = copy.deepcopy(proxy['runner']['model'])
    cfg['backbone'] = dict(cfg.get('backbone', {}), type='UniNet', **backbone_kwargs)
    cfg['head'] = dict(cfg['head'], in_channels=backbone_kwargs['arch']['head_channels'])
    return MODELS.build(cfg)


def count_model(model: nn.Module, input_size: Tuple[int, int]) -> Dict[str, int]:
    """FLOPs (multiply-adds) and parameters of the classifier at HxW, batch 1."""
    from ..utils.flops import model_complexity

    was_training = model.training
    model.eval()
    try:
        result = model_complexity(_TensorForward(model), torch.randn(1, 3, *input_size))
    finally:
        model.train(was_training)
    return dict(flops=int(result['flops']), params=int(result['params']))


#: ``on_epoch(result)``: called after every validation with the trial's result so far.
EpochCallback = Callable[[Dict[str, Any]], None]


def run_proxy_trial(proxy: Dict[str, Any], backbone_kwargs: Dict[str, Any], work_dir: str,
                    trial_name: str = 'trial', on_epoch: Optional[EpochCallback] = None,
                    every_epoch: bool = False) -> Dict[str, Any]:
    """Train and score one architecture (see the module docstring); never raises for a
    failing architecture, returns ``status='failed'`` and the error instead. The trial's
    logger, message hub and visualizer are released afterwards.

    Args:
        every_epoch: validate after every epoch (default: once, after the last one).
        on_epoch: called after every validation with the result so far (``status='ok'``,
            ``accuracy``, ``flops``, ``params``, ``seconds``, ``cpu_seconds``, ``epochs``
            trained so far, ``max_epochs``); an exception it raises fails the trial.
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    threads = proxy.get('threads')
    if threads:
        torch.set_num_threads(int(threads))
    input_size = tuple(backbone_kwargs['input_size'])
    max_epochs = proxy['runner']['train_cfg']['max_epochs']
    result: Dict[str, Any] = dict(status='ok', error=None, accuracy=None, flops=None,
                                  params=None, epochs=0, max_epochs=max_epochs)
    key = proxy.get('accuracy_key', 'accuracy/top1')

    def validated(epoch: int, metrics: Dict[str, float]) -> None:
        if key not in metrics:
            raise KeyError(f'validation gave {sorted(metrics)}, not {key!r}; set '
                           f'proxy.accuracy_key')
        accuracy = float(metrics[key]) / proxy.get('accuracy_scale', 100.0)
        if not math.isfinite(accuracy):
            raise FloatingPointError(f'non-finite accuracy {accuracy}')
        result.update(accuracy=accuracy, epochs=int(epoch),
                      seconds=time.perf_counter() - start,
                      cpu_seconds=time.process_time() - cpu_start)
        if on_epoch is not None:
            on_epoch(dict(result))

    runner = None
    try:
        # The proxy seed, not what ran before in this process, sets the initial weights (the
        # backbone's layers draw them when built); the Runner reseeds with it for data order.
        set_random_seed(int(proxy.get('seed', 0)))
        model = build_proxy_model(proxy, backbone_kwargs)
        result.update(count_model(model, input_size))
        capture = MetricsCaptureHook(validated)
        runner = _build_runner(proxy, model, Path(work_dir) / trial_name, capture,
                               every_epoch=every_epoch)
        runner.train()
        if result['accuracy'] is None:
            raise RuntimeError('the proxy run ended without a validation')
    except torch.OutOfMemoryError as exc:
        result.update(status='failed', error=f'out of memory: {exc}'.splitlines()[0])
    except Exception as exc:  # noqa: BLE001 -- the search records the error and goes on
        result.update(status='failed', error=f'{type(exc).__name__}: {exc}')
    finally:
        if runner is not None:
            forget_instances(runner.experiment_name)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    result['seconds'] = time.perf_counter() - start
    # CPU time of this process: the wall time of the trial on cores nobody else uses.
    result['cpu_seconds'] = time.process_time() - cpu_start
    return result


class ProxyTrial:
    """The trial function of both backends: the proxy task on an architecture's tokens.

    ``trial(tokens, index)`` returns the result of :func:`run_proxy_trial`; with ``reward``
    given, every result (the final one and those handed to ``on_epoch``) also carries the
    ``reward`` of its accuracy, so a Ray Tune worker can report it every epoch. The driver
    computes the logged reward itself, with the same :class:`~.reward.MnasReward`.

    Args:
        space: the search space (tokens to backbone kwargs).
        proxy: the prepared proxy config (:func:`prepare_proxy`).
        trial_dir: folder of the trials' runner folders (``trial_dir/{index:05d}``).
        reward: the reward settings (None: no ``reward`` in the results).
        failure_reward: ``reward`` of a failed trial (None: NaN).
        every_epoch: validate after every epoch (for a scheduler), not only after the last.
    """

    def __init__(self, space: 'SearchSpace', proxy: Dict[str, Any], trial_dir: str,
                 reward: Optional[MnasReward] = None, failure_reward: Optional[float] = 0.0,
                 every_epoch: bool = False):
        self.space = space
        self.proxy = proxy
        self.trial_dir = str(trial_dir)
        self.reward = reward
        self.failure_reward = failure_reward
        self.every_epoch = bool(every_epoch)

    def __call__(self, tokens: List[int], index: int, on_epoch: Optional[EpochCallback] = None,
                 latency_ms: Optional[float] = None) -> Dict[str, Any]:
        """Run the trial; ``latency_ms`` is the architecture's predicted latency (needed for
        the reward when its cost is latency)."""
        def scored(result: Dict[str, Any]) -> Dict[str, Any]:
            return dict(result, reward=self.score(result, latency_ms))

        callback = None if on_epoch is None else (lambda result: on_epoch(scored(result)))
        result = run_proxy_trial(self.proxy, self.space.backbone_kwargs(tokens), self.trial_dir,
                                 trial_name=f'{index:05d}', on_epoch=callback,
                                 every_epoch=self.every_epoch)
        return scored(result) if self.reward is not None else result

    def score(self, result: Dict[str, Any], latency_ms: Optional[float] = None
              ) -> Optional[float]:
        """The reward of a result (``failure_reward``, NaN for None, when it failed or cannot
        be scored); None without reward settings."""
        if self.reward is None:
            return None
        failed = float('nan') if self.failure_reward is None else float(self.failure_reward)
        if result.get('status', 'ok') != 'ok':
            return failed
        cost = latency_ms if self.reward.cost == 'latency' else result.get('flops')
        try:
            return self.reward(result['accuracy'], cost)
        except (TypeError, ValueError):
            return failed


def _build_runner(proxy: Dict[str, Any], model: nn.Module, work_dir: Path,
                  capture: 'MetricsCaptureHook', every_epoch: bool = False) -> Runner:
    """An mmengine Runner that trains ``model`` for the proxy epochs and validates once, after
    the last epoch, or after every epoch with ``every_epoch`` (``capture`` sees the metrics).

    Quiet (warnings only), no checkpoints written, a NaN guard hook, its own experiment name
    (so its logger and message hub are not shared with other trials).
    """
    cfg = copy.deepcopy(proxy['runner'])
    cfg.pop('model')
    epochs = cfg['train_cfg']['max_epochs']
    cfg['train_cfg'] = dict(cfg['train_cfg'], by_epoch=True,
                           val_interval=1 if every_epoch else epochs)
    hooks = dict(checkpoint=dict(type='CheckpointHook', interval=-1, save_last=False),
                 logger=dict(type='LoggerHook', interval=10**6), timer=dict(type='IterTimerHook'),
                 param_scheduler=dict(type='ParamSchedulerHook'))
    cfg['default_hooks'] = dict(hooks, **cfg.get('default_hooks', {}))
    cfg['custom_hooks'] = list(cfg.get('custom_hooks', [])) + [dict(type='NonFiniteLossHook'),
                                                                capture]
    cfg.setdefault('val_cfg', dict())
    cfg.setdefault('randomness', dict(seed=proxy.get('seed', 0)))
    cfg.setdefault('env_cfg', dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork'),
                                   dist_cfg=dict(backend='nccl')))
    cfg.setdefault('log_level', 'WARNING')
    cfg['default_scope'] = 'mmpretrain'
    return QuietRunner(model=model, work_dir=str(work_dir),
                        experiment_name=f'{work_dir.name}_{uuid.uuid4().hex[:8]}', **cfg)
