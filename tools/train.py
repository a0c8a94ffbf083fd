"""Train a UniNet detector, segmentor or classifier with mmengine's Runner.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
                                 [--cfg-options KEY=VALUE ...] [--launcher none|pytorch|slurm|mpi]

Works for every config under configs/ (mmdet, mmseg and mmpretrain scopes alike): the config's
``default_scope`` selects the registries, ``custom_imports`` registers the UniNet backbone.
Distributed: tools/dist_train.sh (torchrun) or tools/slurm_train.sh (srun).
"""
import argparse
import logging

import torch
from mmengine.config import Config
from mmengine.logging import print_log

from uninet_mm.models.classifiers import TeacherCheckpointError, check_distillation_config
from uninet_mm.utils.checkpoint_integrity import (DamagedCheckpointError, check_checkpoint_file,
                                                  find_resume_checkpoint,
                                                  use_atomic_local_writes)
from uninet_mm.utils.resume_safe_load import register_resume_safe_globals
from uninet_mm.utils.data_check import DatasetNotFoundError, check_datasets
from uninet_mm.utils.tools_support import (add_launcher_args, build_runner, close_distributed,
                                           export_local_rank, load_config, log_parameter_hash,
                                           refuse_sync_bn_on_cpu, setup_cpu_distributed,
                                           warn_if_training_from_scratch)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model with a UniNet backbone')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--work-dir', help='folder for logs and checkpoints '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume training: from CKPT if given, otherwise from the latest checkpoint in the '
        'work dir')
    parser.add_argument('--amp', action='store_true',
                        help='automatic mixed precision (needs a GPU)')
    add_launcher_args(parser, 'override config settings, KEY=VALUE pairs (e.g. '
                      'train_dataloader.batch_size=4 env_cfg.dist_cfg.backend=gloo)')
    return export_local_rank(parser.parse_args(argv))


def _accelerator_available() -> bool:
    return torch.cuda.is_available()


def setup_cfg(args) -> Config:
    """Load the config and apply the command-line options to it."""
    cfg = load_config(args.config, args.launcher, args.cfg_options, args.work_dir)
    if args.amp:
        if not _accelerator_available():
            raise SystemExit('--amp needs a GPU (mmengine\'s AmpOptimWrapper runs on CUDA, NPU, '
                             'MLU or MUSA devices only); run without --amp on the CPU.')
        optim_type = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if optim_type == 'AmpOptimWrapper':
            print_log('AMP is already enabled in the config.', logger='current',
                      level=logging.WARNING)
        else:
            if optim_type != 'OptimWrapper':
                raise SystemExit(f'--amp works with OptimWrapper configs, got {optim_type}')
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'

    if args.resume == 'auto':
        # The newest *complete* checkpoint of the work dir (a process killed while saving
        # leaves a truncated one behind); none: train from the start.
        cfg.load_from = find_resume_checkpoint(cfg.work_dir)
        cfg.resume = cfg.load_from is not None
        if cfg.resume:
            print_log(f'Auto resumed from the latest checkpoint {cfg.load_from} (complete: '
                      f'checked before loading)', logger='current')
        else:
            print_log(f'--resume: no complete checkpoint in {cfg.work_dir}; training starts '
                      f'from the first iteration', logger='current', level=logging.WARNING)
    elif args.resume is not None:
        try:
            check_checkpoint_file(args.resume)
        except DamagedCheckpointError as err:
            raise SystemExit(f'error: cannot resume: {err}')
        cfg.resume = True
        cfg.load_from = args.resume

    # Fine-tuning configs name the checkpoint they start from as ``finetune_from``; honour it
    # when it was given with --cfg-options (the config itself already copies it to load_from).
    if cfg.get('finetune_from') and not cfg.get('load_from') and not cfg.get('resume'):
        cfg.load_from = cfg.finetune_from

    if cfg.launcher != 'none' and not _accelerator_available():
        try:
            refuse_sync_bn_on_cpu(cfg)
        except ValueError as err:
            raise SystemExit(f'error: {err}')
        setup_cpu_distributed(cfg)
    return cfg


def main(argv=None):
    args = parse_args(argv)
    # Lets torch >= 2.6 (weights_only=True) load mmengine's resume checkpoints.
    register_resume_safe_globals()
    # Checkpoints appear under their name only once complete (a kill while saving leaves none).
    use_atomic_local_writes()
    cfg = setup_cfg(args)

    try:
        check_distillation_config(cfg)
        check_datasets(cfg, splits=('train', 'val'))
    except (TeacherCheckpointError, DatasetNotFoundError) as err:
        raise SystemExit(f'error: {err}')

    runner = build_runner(cfg)
    warn_if_training_from_scratch(cfg, runner.logger)
    runner.train()
    log_parameter_hash(runner)
    close_distributed()


if __name__ == '__main__':
    main()
