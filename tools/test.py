"""Evaluate a checkpoint of a UniNet detector, segmentor or classifier with mmengine's Runner.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--show-dir DIR]
                                           [--cfg-options KEY=VALUE ...]
                                           [--launcher none|pytorch|slurm|mpi]
                                           [--no-fuse]

The UniNet backbone runs as its BN-folded inference copy in channels_last
(``fuse_for_inference``: every eval-mode BatchNorm folded into its convolution once, after the
checkpoint is loaded; same outputs up to float rounding, faster): the tool adds
``UniNetAccelerationHook(channels_last=True, fuse_for_test=True)`` unless the config has that
hook already (it converts the backbone only). ``--no-fuse`` tests the plain model. Models
without a UniNet backbone are left as they are.

The metrics are logged and printed at the end. Distributed: tools/dist_test.sh (torchrun) or
tools/slurm_test.sh (srun).
"""
import argparse
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.logging import print_log

from uninet_mm.utils.resume_safe_load import register_resume_safe_globals
from uninet_mm.utils.data_check import DatasetNotFoundError, check_datasets
from uninet_mm.utils.tools_support import (add_launcher_args, build_runner, close_distributed,
                                           enable_visualization, export_local_rank, load_config,
                                           set_fuse_for_test, setup_cpu_distributed)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a model with a UniNet backbone')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='folder for the evaluation log and metrics '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument('--show-dir', help='save images with the predictions drawn on them '
                        'to this folder')
    parser.add_argument('--no-fuse', action='store_true',
                        help='test the plain model instead of the BN-folded backbone')
    add_launcher_args(parser, 'override config settings, KEY=VALUE pairs')
    return export_local_rank(parser.parse_args(argv))


def setup_cfg(args) -> Config:
    cfg = load_config(args.config, args.launcher, args.cfg_options, args.work_dir)
    cfg.load_from = args.checkpoint
    cfg.resume = False
    print_log(set_fuse_for_test(cfg, fuse=not args.no_fuse), logger='current')
    if args.show_dir:
        try:
            enable_visualization(cfg, args.show_dir)
        except ValueError as err:
            raise SystemExit(f'error: {err}')
    if cfg.launcher != 'none' and not torch.cuda.is_available():
        setup_cpu_distributed(cfg)
    return cfg


def main(argv=None):
    args = parse_args(argv)
    # Lets torch >= 2.6 (weights_only=True) load checkpoints written by mmengine's Runner.
    register_resume_safe_globals()
    cfg = setup_cfg(args)
    if '://' not in args.checkpoint and not osp.isfile(args.checkpoint):
        raise SystemExit(f'error: checkpoint not found: {args.checkpoint}')
    try:
        check_datasets(cfg, splits=('test', ))
    except DatasetNotFoundError as err:
        raise SystemExit(f'error: {err}')

    runner = build_runner(cfg)
    metrics = runner.test()
    if runner.rank == 0:
        for name, value in (metrics or {}).items():
            print(f'{name}: {value}')
    close_distributed()


if __name__ == '__main__':
    main()
