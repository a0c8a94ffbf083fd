"""Benchmark UniNet backbones, plain and with each speed option, next to mmdet's Swin-T and
ResNet-50: latency, peak memory and the share of the device's peak FLOP/s reached.

    python tools/analysis_tools/benchmark_backbone.py                       # CPU (+ CUDA if any)
    python tools/analysis_tools/benchmark_backbone.py --quick --sizes 224x224
    python tools/analysis_tools/benchmark_backbone.py --device cpu --models uninet_b3 swin_t \
        --variants plain channels_last fused sac compile --sizes 800x1333 --batch 2
    python tools/analysis_tools/benchmark_backbone.py --device cuda --amp bf16   # GPU, bf16

Variants of the UniNet models (``--variants``; the peers always run as mmdet builds them) and
the models (``--models``) are described in :mod:`uninet_mm.benchmark.models`; how a step, its
latency and its memory are measured in :mod:`uninet_mm.benchmark.measure`.

What is measured, for every model, input size (H x W) and device, at ``--batch`` (default 2):

* ``fwd``: forward latency, ``model.eval()`` under ``torch.no_grad()``.
* ``fwd+bwd``: one training step without the optimizer: ``model.train()``, forward, backward
  of fixed random dense gradients of all returned maps (NCHW, what a neck's convolutions
  hand back), then ``zero_grad(set_to_none=True)``.
* ``train mem`` / ``infer mem``: peak memory of one such training step / inference forward
  (activations, gradients, workspaces; the weights and the input are excluded):

  CPU: process RSS in a fresh subprocess per (model, size, mode); CUDA: the allocator's peak.

FLOP/s: the forward multiply-adds are counted once per model at the measured size (the paper's
way, :func:`uninet_mm.utils.flops.model_complexity`), as 2 FLOPs each; a training step is
counted as 3x the forward (backward ~ 2x forward). Achieved FLOP/s divided by the device's
peak fp32 (or ``--amp`` dtype) FLOP/s gives the share of peak: CPU peak = cores x clock x
32 FLOP/cycle with AVX2 FMA (64 with AVX-512), the clock read from ``/proc/cpuinfo``
(override with ``--peak-tflops``); GPUs from a small table of dense peaks (or the option).

Latencies come from one process per (device, size, mode) that holds all models and
interleaves them: after ``--warmup`` steps of each, every round times each model once, and
the table reports the median over ``--repeats`` rounds, so background noise hits all models
alike. Inference and training run in separate processes, as they would in use: training
steps leave the CPU allocator holding a larger heap, which changes inference timings (by
~10% for some models at 800x1333). Every model runs with the same thread count (``--threads``, default: all cores
available to the process), the same batch size and fp32 (or ``--amp fp16|bf16``: autocast, CUDA only, as detectors train). ``--timer cpu`` times with the
process's CPU time instead of the wall clock: on a machine shared with other jobs, and with
``--threads 1``, that is the latency the step would have on an idle core (with more threads
it would add up the threads' time, spinning included, so it is refused).

Allocator (``--malloc``): with glibc's default, every CPU tensor over 32 MiB is a fresh
``mmap`` whose pages are faulted in (and zeroed) on first touch; at 800x1333 that is a large
part of every elementwise op on a full-resolution map. ``--malloc keep`` runs every model
with ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` raised, so freed memory is
reused (what jemalloc/tcmalloc give). It changes the ratios (models with more large
temporaries gain more), so compare both.

Ratios printed: every UniNet-B3 variant / Swin-T and UniNet-B1 variant / ResNet-50.
"""
import argparse
import json
import logging
import os
from typing import Dict, List, Optional, Tuple

import torch

from uninet_mm.benchmark import add_peak_shares, format_table, model_keys
from uninet_mm.benchmark.measure import cpu_peak_flops, environment, gpu_peak_flops
from uninet_mm.benchmark.models import (ALL_MODELS, MMDET_MODELS, UNINET_MODELS, VARIANTS,
                                        mmdet_available, split_key)
from uninet_mm.benchmark.report import fmt
from uninet_mm.benchmark.worker import spawn
from uninet_mm.utils.tools_support import parse_size

logger = logging.getLogger('benchmark_backbone')
DEFAULT_SIZES = ('224x224', '800x1333')
#: glibc thresholds for ``--malloc keep``: no mmap-backed allocations, no heap trimming.
KEEP_BYTES = 1 << 40


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes', nargs='+', default=list(DEFAULT_SIZES),
                        help='input sizes HxW (default: 224x224 800x1333)')
    parser.add_argument('--models', nargs='+', default=list(ALL_MODELS),
                        help=f'from {ALL_MODELS}')
    parser.add_argument('--variants', nargs='+', default=['plain', 'channels_last'],
                        choices=list(VARIANTS),
                        help='speed options for the UniNet models (default: plain '
                             'channels_last); each runs in the modes it applies to')
    parser.add_argument('--batch', type=int, default=2, help='batch size (default 2)')
    parser.add_argument('--device', nargs='+', default=['auto'],
                        choices=['auto', 'cpu', 'cuda'],
                        help='auto: cpu, and cuda when available')
    parser.add_argument('--amp', default=None, choices=['fp16', 'bf16'],
                        help='autocast dtype (CUDA only; default fp32)')
    parser.add_argument('--peak-tflops', type=float, default=None,
                        help="the device's peak TFLOP/s for the share-of-peak columns")
    parser.add_argument('--repeats', type=int, default=None,
                        help='timed rounds per model (median reported; default 5, quick 2)')
    parser.add_argument('--warmup', type=int, default=None,
                        help='untimed steps per model and mode first (default 2, quick 1)')
    parser.add_argument('--threads', type=int, default=len(os.sched_getaffinity(0)),
                        help='torch threads for every model (default: all available cores)')
    parser.add_argument('--quick', action='store_true',
                        help='fewer rounds (2 timed, 1 warm-up): a smoke run, noisier numbers')
    parser.add_argument('--timer', default='wall', choices=['wall', 'cpu'],
                        help='wall clock, or process CPU time (CPU only, with --threads 1: '
                             'latency on an idle core when the machine is shared)')
    parser.add_argument('--thp', action='store_true',
                        help='run every model with THP_MEM_ALLOC_ENABLE=1 (PyTorch allocates '
                             'large CPU tensors on transparent huge pages: fewer page faults)')
    parser.add_argument('--malloc', default='default', choices=['default', 'keep'],
                        help="glibc malloc as configured, or 'keep': freed memory is reused "
                             'instead of returned to the system (see above)')
    parser.add_argument('--no-memory', action='store_true',
                        help='skip the CPU memory workers')
    parser.add_argument('--memory-modes', nargs='+', default=['fwd', 'train'],
                        choices=['fwd', 'train'],
                        help='CPU memory workers for these modes only (default: both)')
    parser.add_argument('--no-flops', action='store_true',
                        help='skip counting FLOPs (and the share-of-peak columns)')
    parser.add_argument('--json', default=None, metavar='OUT', help='also write results here')
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 2 if args.quick else 5
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    for size in args.sizes:
        parse_size(size)
    unknown = [m for m in args.models if m not in ALL_MODELS]
    if unknown:
        parser.error(f'unknown models {unknown}; choose from {ALL_MODELS}')
    if args.timer == 'cpu' and (args.threads != 1 or 'cpu' not in args.device):
        parser.error('--timer cpu needs --device cpu and --threads 1')
    if args.amp and 'cuda' not in args.device:
        parser.error('--amp needs --device cuda (CPU rows are fp32)')
    return args


def measure(args: argparse.Namespace, kind: str, keys: List[str], size: str, device: str,
            mode: Optional[str] = None) -> Optional[Dict]:
    """One measurement in a fresh interpreter with the command line's settings."""
    spec = dict(kind=kind, keys=keys, size=parse_size(size), device=device, mode=mode,
                batch=args.batch, threads=args.threads, repeats=args.repeats,
                warmup=args.warmup, timer=args.timer, amp=args.amp)
    env = {}
    if args.thp:
        env['THP_MEM_ALLOC_ENABLE'] = '1'
    if args.malloc == 'keep':
        env.update(MALLOC_MMAP_THRESHOLD_=str(KEEP_BYTES), MALLOC_TRIM_THRESHOLD_=str(KEEP_BYTES))
    return spawn(spec, env)


def main(argv: Optional[List[str]] = None) -> Dict:
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    args = parse_args(argv)
    models = list(dict.fromkeys(args.models))
    mmdet_missing = any(m in MMDET_MODELS for m in models) and not mmdet_available()
    if mmdet_missing:
        models = [m for m in models if m in UNINET_MODELS]
    devices = ['cpu', 'cuda'] if 'auto' in args.device else list(dict.fromkeys(args.device))
    if 'cuda' in devices and not torch.cuda.is_available():
        if 'auto' not in args.device:
            logger.warning('CUDA requested but not available: skipping it')
        devices.remove('cuda')
    variants = list(dict.fromkeys(args.variants))
    all_keys = list(dict.fromkeys(model_keys(models, variants, 'fwd') +
                                  model_keys(models, variants, 'train')))
    logger.info('models %s, variants %s, sizes %s, devices %s, batch %d, %d threads, '
                '%d rounds after %d warm-up', models, variants, args.sizes, devices,
                args.batch, args.threads, args.repeats, args.warmup)

    results: Dict[Tuple[str, str, str], Dict] = {}
    peaks = dict(cpu=cpu_peak_flops(args.threads), cuda=gpu_peak_flops(args.amp))
    if args.peak_tflops:
        peaks = {device: args.peak_tflops * 1e12 for device in devices}
    for device in devices:
        for size in args.sizes:
            for key in all_keys:
                results[device, size, key] = {}
            for mode in ('fwd', 'train'):
                keys = model_keys(models, variants, mode)
                logger.info('[%s %s] %s latency, interleaved over %s', device, size, mode, keys)
                latency = measure(args, 'latency', keys, size, device, mode) or {}
                for key in keys:
                    results[device, size, key].update(latency.get(key, {}))
            if not args.no_flops:
                for name in models:
                    macs = measure(args, 'macs', [name], size, 'cpu')
                    for key in all_keys:
                        if macs and split_key(key)[0] == name:
                            results[device, size, key]['macs'] = macs['macs']
            if args.no_memory or device == 'cuda':  # CUDA memory comes with the latencies
                continue
            for mode, field in (('fwd', 'infer_mib'), ('train', 'train_mib')):
                if mode not in args.memory_modes:
                    continue
                for key in model_keys(models, variants, mode):
                    logger.info('[%s %s] %s memory of %s', device, size, mode, key)
                    memory = measure(args, 'memory', [key], size, device, mode)
                    if memory is not None:
                        results[device, size, key][field] = memory['peak_mib']
    add_peak_shares(results, peaks)

    table = format_table(results, devices, args.sizes, all_keys)
    env = environment()
    peak_text = ', '.join(f'{d} peak {fmt(peaks.get(d) and peaks[d] / 1e12, 2)} TFLOP/s'
                          for d in devices)
    print(f'\n{env}\nthreads {args.threads}, batch {args.batch}, {args.amp or "fp32"}, '
          f'{args.timer} time, median of {args.repeats} interleaved rounds, malloc '
          f'{args.malloc}{", THP_MEM_ALLOC_ENABLE=1" if args.thp else ""}; {peak_text}'
          f'\n{table}')
    if mmdet_missing:
        print('(mmdet is not importable: Swin-T and ResNet-50 were not run)')
    out = dict(environment=env, threads=args.threads, timer=args.timer, thp=args.thp,
               malloc=args.malloc, batch=args.batch, amp=args.amp, repeats=args.repeats,
               warmup=args.warmup, peak_flops=peaks,
               results=[dict(device=d, size=s, model=split_key(k)[0], variant=split_key(k)[1],
                             **v) for (d, s, k), v in results.items()])
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(out, f, indent=2)
        logger.info('results written to %s', args.json)
    return out


if __name__ == '__main__':
    main()
