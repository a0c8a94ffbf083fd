"""Helpers shared by the tools: config set-up around mmengine's Runner (tools/train.py,
tools/test.py) and command-line parsing."""
import argparse
import hashlib
import logging
import os
import os.path as osp
import re
import time
import weakref
from datetime import timedelta
from typing import Dict, Mapping, Optional, Tuple

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import MMLogger, print_log

from .pretrained import apply_pretrained

__all__ = ['add_launcher_args', 'export_local_rank', 'load_config', 'build_runner',
           'setup_cpu_distributed', 'slurm_to_torch_env', 'first_slurm_host',
           'warn_if_training_from_scratch', 'log_parameter_hash',
           'enable_visualization', 'refuse_sync_bn_on_cpu', 'sync_bn_paths', 'parse_size',
           'set_fuse_for_test']


def parse_size(text: str) -> Tuple[int, int]:
    """'800x1333' -> (800, 1333) as (H, W); an argparse ``type``."""
    try:
        height, width = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'size must look like HxW (e.g. 800x1333), got {text!r}')
    return height, width


def add_launcher_args(parser: argparse.ArgumentParser, cfg_options_help: str) -> None:
    """``--cfg-options``, ``--launcher`` and the ``--local-rank`` that launchers pass."""
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help=cfg_options_help)
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank (older).
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def export_local_rank(args: argparse.Namespace) -> argparse.Namespace:
    """Set ``LOCAL_RANK`` from ``--local-rank`` unless the launcher already did."""
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def load_config(config: str, launcher: str, cfg_options: Optional[dict],
                work_dir: Optional[str]) -> Config:
    """The config with the command-line options applied; work dir: command line > config >
    ``./work_dirs/<config name>``."""
    cfg = Config.fromfile(config)
    cfg.launcher = launcher
    if cfg_options is not None:
        _open_none_parents(cfg, cfg_options)
        cfg.merge_from_dict(cfg_options)
    apply_pretrained(cfg, cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])
    return cfg


def _open_none_parents(cfg: Config, cfg_options: dict) -> None:
    """Turn a ``None`` on the path of a dotted option into ``{}`` so the option can fill it,
    e.g. ``model.backbone.init_cfg.checkpoint=PATH`` where the config says ``init_cfg=None``
    (mmengine refuses to merge a dict into ``None``)."""
    for key in cfg_options:
        node = cfg._cfg_dict
        parts = key.split('.')
        for part in parts[:-1]:
            if not isinstance(node, dict) or part not in node:
                break
            if node[part] is None:
                node[part] = {}
            node = node[part]


def is_acceleration_hook(hook: Mapping) -> bool:
    """Whether the ``custom_hooks`` entry ``hook`` is a ``UniNetAccelerationHook`` (by name,
    scoped name or class)."""
    from ..engine.hooks import UniNetAccelerationHook
    return hook.get('type') in ('UniNetAccelerationHook', 'uninet_mm.UniNetAccelerationHook',
                                UniNetAccelerationHook)


def without_acceleration_hooks(cfg: Config) -> list:
    """``cfg``'s ``custom_hooks`` without its ``UniNetAccelerationHook`` (the plain model)."""
    return [h for h in cfg.get('custom_hooks', None) or [] if not is_acceleration_hook(h)]


def set_fuse_for_test(cfg: Config, fuse: bool = True) -> str:
    """Make ``runner.test()`` of ``cfg`` run the BN-folded UniNet backbone (``fuse``) or the
    plain one, and return a line saying which (``tools/test.py``; ``--no-fuse`` is
    ``fuse=False``).

    Without a ``UniNetAccelerationHook`` in ``custom_hooks``, ``fuse`` adds
    ``UniNetAccelerationHook(channels_last=True, fuse_for_test=True)`` (the forms measured
    faster; channels_last of the backbone only, whose outputs stay NCHW, and on the CPU the
    RoI heads' separable RoIAlign); a config's own hook is kept, with ``fuse_for_test`` set
    to ``fuse``, and with every option off when ``fuse`` is false (the plain model). The hook
    folds only in ``before_test``, after the checkpoint is loaded, only backbones with
    foldable layers, and puts the trainable backbone back after the test.
    """
    hooks = list(cfg.get('custom_hooks', None) or [])
    own = [h for h in hooks if is_acceleration_hook(h)]
    for hook in own:
        hook['fuse_for_test'] = fuse
        if not fuse:
            hook.update(channels_last=False, separable_roi_align=False)
    if not own and fuse:
        hooks.append(dict(type='UniNetAccelerationHook', channels_last=True,
                          fuse_for_test=True))
    cfg.custom_hooks = hooks
    if not fuse:
        return ('testing the plain model (--no-fuse): BatchNorms are not folded, no '
                'channels_last, mmcv\'s RoIAlign')
    where = "the config's UniNetAccelerationHook" if own else 'UniNetAccelerationHook'
    return (f'{where} folds the UniNet backbone\'s BatchNorms into its convolutions for the '
            'test, channels_last (--no-fuse: the plain model)')


def build_runner(cfg: Config):
    """mmengine's Runner, or the config's own ``runner_type``."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    return Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)


def first_slurm_host(nodelist: str) -> str:
    """The first host of a Slurm host list: ``'gpu[03-05,9],cpu1'`` -> ``'gpu03'``,
    ``'rack[1-2]-n[07-08]'`` -> ``'rack1-n07'`` (what ``scontrol show hostnames`` lists
    first)."""
    depth, end = 0, len(nodelist)
    for pos, char in enumerate(nodelist):
        depth += char == '['
        depth -= char == ']'
        if char == ',' and depth == 0:
            end = pos
            break
    first = re.sub(r'\[([^\]]*)\]',
                   lambda m: re.split(r'[-,]', m.group(1))[0], nodelist[:end].strip())
    if not first:
        raise ValueError(f'empty Slurm host list {nodelist!r}')
    return first


def slurm_to_torch_env(environ: Mapping[str, str]) -> Dict[str, str]:
    """torch's ``env://`` rendezvous variables for one task of an ``srun`` job.

    ``RANK`` <- ``SLURM_PROCID``, ``WORLD_SIZE`` <- ``SLURM_NTASKS``, ``LOCAL_RANK`` <-
    ``SLURM_LOCALID``, ``MASTER_ADDR`` <- the first host of ``SLURM_NODELIST`` (unless
    ``MASTER_ADDR`` is set), ``MASTER_PORT`` as set (tools/slurm_train.sh exports ``PORT``)
    or 29500 -- the choices mmengine's Slurm launcher makes, without its GPU device set-up.
    """
    missing = [k for k in ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST') if not environ.get(k)]
    if missing:
        raise ValueError(f'--launcher slurm needs Slurm\'s task variables (run it with srun, '
                         f'e.g. tools/slurm_train.sh); missing: {", ".join(missing)}')
    return dict(RANK=environ['SLURM_PROCID'], WORLD_SIZE=environ['SLURM_NTASKS'],
                LOCAL_RANK=environ.get('SLURM_LOCALID', '0'),
                MASTER_ADDR=environ.get('MASTER_ADDR') or first_slurm_host(
                    environ['SLURM_NODELIST']),
                MASTER_PORT=environ.get('MASTER_PORT', '29500'))


def setup_cpu_distributed(cfg: Config) -> None:
    """Let mmengine's distributed training/testing run on CPUs (gloo), e.g. for tests.

    mmengine assumes one GPU per process: it calls ``torch.cuda.set_device`` while initialising
    the process group (its Slurm launcher also divides by the GPU count) and hands
    ``device_ids=[LOCAL_RANK]`` to DistributedDataParallel, all of which fail without a GPU.
    Here (launchers ``pytorch`` and ``slurm``) the process group is initialised directly, so
    mmengine skips its own initialisation, and DDP gets ``device_ids=None``, which is how DDP
    wraps a CPU module. For ``slurm`` the rank, world size and master address come from
    Slurm's variables (:func:`slurm_to_torch_env`). ``nccl`` needs GPUs, so it is replaced by
    ``gloo``. Call only when no GPU is available.
    """
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    backend = dist_cfg.get('backend', 'nccl')
    if backend == 'nccl':
        print_log('No GPU found: using the gloo backend instead of nccl', logger='current',
                  level=logging.WARNING)
        dist_cfg['backend'] = backend = 'gloo'
    launcher = cfg.get('launcher')
    if launcher in ('pytorch', 'slurm') and not torch.distributed.is_initialized():
        if launcher == 'slurm':
            os.environ.update(slurm_to_torch_env(os.environ))
        kwargs = {k: v for k, v in dist_cfg.items() if k != 'backend'}
        if kwargs.get('timeout') is not None and not isinstance(kwargs['timeout'], timedelta):
            kwargs['timeout'] = timedelta(seconds=kwargs['timeout'])
        torch.distributed.init_process_group(backend=backend, **kwargs)
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper.setdefault('device_ids', None)
    cfg.model_wrapper_cfg = wrapper


def sync_bn_paths(node, path: str = 'model') -> list:
    """Dotted config paths of every ``norm_cfg`` asking for ``SyncBN`` under ``node``."""
    found = []
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            found.append(path)
        for key, value in node.items():
            found += sync_bn_paths(value, f'{path}.{key}')
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            found += sync_bn_paths(value, f'{path}.{index}')
    return found


def refuse_sync_bn_on_cpu(cfg: Config) -> None:
    """Distributed training without a GPU cannot run SyncBN: torch's ``nn.SyncBatchNorm``
    has CUDA kernels only, and DDP refuses to wrap CPU modules holding it. Say so, and how to
    switch to BN, before anything is built (the shipped det/seg configs use SyncBN)."""
    paths = sync_bn_paths(cfg.get('model', {}))
    if paths:
        options = ' '.join(f'{p}.type=BN' for p in paths)
        raise ValueError(
            f'SyncBN needs GPUs: torch\'s nn.SyncBatchNorm does not run on CPUs, and no GPU '
            f'was found for this distributed run. The config uses it at {", ".join(paths)}. '
            f'Train on GPUs, or use per-process BatchNorm with --cfg-options {options}')


def warn_if_training_from_scratch(cfg: Config, logger: MMLogger) -> bool:
    """Log a warning when a config that expects pretrained weights gets none; True if it did.

    Detection/segmentation configs declare ``pretrained`` (the ImageNet backbone checkpoint),
    fine-tuning configs ``finetune_from``; ImageNet training from scratch declares neither.
    """
    if cfg.get('resume') or cfg.get('load_from'):
        return False
    if 'pretrained' in cfg:
        backbone = cfg.get('model', {}).get('backbone', {}) or {}
        init = backbone.get('init_cfg')
        inits = init if isinstance(init, list) else [init]
        if any(isinstance(i, dict) and i.get('type') == 'Pretrained' and i.get('checkpoint')
               for i in inits):
            return False
        logger.warning(
            'No pretrained backbone: neither `pretrained` nor model.backbone.init_cfg names a '
            'checkpoint, so the UniNet backbone is trained from scratch (random '
            'initialisation). The published detection/segmentation results start from '
            'ImageNet-1k weights: set `pretrained = "PATH"` in the config or pass '
            '--cfg-options pretrained=PATH, with a checkpoint made by '
            'tools/model_converters/uninet_official_to_mm.py.')
        return True
    if 'finetune_from' in cfg:
        logger.warning(
            'No checkpoint to fine-tune: `finetune_from` is not set, so the model is trained '
            'from scratch at the fine-tuning resolution. Set `finetune_from = "PATH"` (or '
            '--cfg-options finetune_from=PATH) to the checkpoint of the 224-px run.')
        return True
    return False


def log_parameter_hash(runner) -> None:
    """After distributed training, log a hash of every rank's parameters; warn if they differ.

    Data-parallel training keeps the parameters of all ranks equal; a mismatch means the ranks
    drifted apart (and only rank 0's weights were saved). Buffers such as BatchNorm running
    statistics are left out: with ``broadcast_buffers=False`` and plain BN they legitimately
    differ per rank.
    """
    if runner.world_size <= 1:
        return
    model = runner.model.module if hasattr(runner.model, 'module') else runner.model
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters(), key=lambda item: item[0]):
        digest.update(name.encode())
        digest.update(param.detach().float().cpu().contiguous().numpy().tobytes())
    gathered = [None] * runner.world_size
    torch.distributed.all_gather_object(gathered, digest.hexdigest())
    if runner.rank == 0:
        runner.logger.info('parameter sha256 per rank: ' +
                           ' '.join(f'rank{r}={h}' for r, h in enumerate(gathered)))
        if len(set(gathered)) != 1:
            runner.logger.warning('the ranks finished training with different parameters')


def close_distributed(timeout_s: float = 60.0) -> None:
    """Destroy the default process group of a distributed run that finished its work.

    mmengine's Runner leaves it open; a gloo group still alive when the interpreter exits can
    abort the process ("terminate called without an active exception", pytorch#190489) after
    the work is done, so the launcher (srun, torchrun) reports the job as failed. Destroying it
    is not enough on its own: see :func:`drain_gloo_workers`. Called only after success:
    destroying while another rank is still in a collective would hang.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    if torch.distributed.get_backend() == 'gloo':
        drain_gloo_workers(timeout_s)
    torch.distributed.destroy_process_group()


def drain_gloo_workers(timeout_s: float = 60.0) -> bool:
    """Return once gloo's worker threads have let go of every finished collective.

    A gloo worker thread destroys a collective's work item after the collective completed;
    when the work holds tensors made in Python, that needs the GIL. If the main thread has
    reached interpreter shutdown by then, the worker thread is ended inside C++ and the whole
    process aborts (seen in about one of three 2-process CPU trainings, right after the last
    all_gather_object). This runs one more all_reduce on a tensor of its own and waits, with
    the GIL released, until the backend has dropped that tensor: the worker threads have then
    had the GIL free to finish the work items queued before it. Returns False (and logs a
    warning) if that did not happen within ``timeout_s``.
    """
    token = torch.zeros(1)
    torch.distributed.all_reduce(token)
    # While a work item holds the tensor, torch keeps its Python object alive: the weak
    # reference dies exactly when the last C++ holder lets go.
    token_alive = weakref.ref(token)
    del token
    deadline = time.monotonic() + timeout_s
    while token_alive() is not None:
        if time.monotonic() > deadline:
            MMLogger.get_current_instance().warning(
                f'gloo still held a finished collective after {timeout_s:.0f} s; the process '
                'may abort at exit')
            return False
        time.sleep(0.001)
    return True


def enable_visualization(cfg: Config, show_dir: str) -> None:
    """Make the visualization hook of mmdet/mmseg/mmpretrain save drawn predictions to show_dir.

    The three hooks take different arguments, so this follows each package's own test tool.
    """
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        raise ValueError('--show-dir: the config has no default_hooks.visualization hook')
    scope = cfg.get('default_scope')
    if scope == 'mmdet':
        hook['draw'] = True
        hook['test_out_dir'] = show_dir
    elif scope == 'mmseg':
        hook['draw'] = True
        hook['interval'] = 1
        cfg.visualizer['save_dir'] = show_dir
    elif scope == 'mmpretrain':
        hook['enable'] = True
        hook['out_dir'] = show_dir
        hook['interval'] = 1  # every image (mmpretrain's default draws every 5000th)
    else:
        raise ValueError(f'--show-dir is not supported for default_scope {scope!r}')
