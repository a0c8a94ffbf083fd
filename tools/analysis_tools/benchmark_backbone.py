"""Benchmark UniNet backbones, plain and with each speed option, next to mmdet's Swin-T and
ResNet-50: latency, peak memory and the share of the device's peak FLOP/s reached.

    python tools/analysis_tools/benchmark_backbone.py                       # CPU (+ CUDA if any)
    python tools/analysis_tools/benchmark_backbone.py --quick --sizes 224x224
    python tools/analysis_tools/benchmark_backbone.py --device cpu --models uninet_b3 swin_t \
        --variants plain channels_last fused sac compile --sizes 800x1333 --batch 2
    python tools/analysis_tools/benchmark_backbone.py --device cuda --amp bf16   # GPU, bf16

Variants of the UniNet models (``--variants``; the peers always run as mmdet builds them):

* ``plain``: the model as built, NCHW, eager.
* ``channels_last``: :func:`uninet_mm.models.acceleration.to_channels_last`.
* ``channels_last_no_hook``: only ``model.to(memory_format=torch.channels_last)``, to show
  what the gradient-layout hook of ``to_channels_last`` buys.
* ``fused`` (inference only): ``accelerate(inference=True)``, BN folded once + channels_last.
* ``sac`` (training only): channels_last + ``with_cp='selective'`` (torch's selective
  activation checkpointing: conv/matmul/attention and training-BatchNorm outputs kept, the
  other elementwise ops recomputed in backward).
* ``cp`` (training only): channels_last + ``with_cp=True`` (whole blocks recomputed).
* ``compile``: channels_last + ``torch.compile`` (inductor); inference with
  ``torch._inductor.config.freezing = True`` (weights constant-folded, BN folded by inductor).
  Compilation happens in the warm-up steps and is not timed.
* ``compile_fused`` (inference only): ``torch.compile`` (with freezing) of the ``fused``
  copy.

What is measured, for every model, input size (H x W) and device, at ``--batch`` (default 2):

* ``fwd``: forward latency, ``model.eval()`` under ``torch.no_grad()``.
* ``fwd+bwd``: one training step without the optimizer: ``model.train()``, forward, backward
  of fixed random dense gradients of all returned maps (NCHW, what a neck's convolutions
  hand back), then ``zero_grad(set_to_none=True)``.
* ``train mem`` / ``infer mem``: peak memory of one such training step / inference forward
  (activations, gradients, workspaces; the weights and the input are excluded):

  - CPU: every (model, size, mode) runs in a fresh subprocess, which builds the model, runs
    the step once at the measured size (libraries, JIT kernels and oneDNN primitive caches
    get loaded), returns freed heap memory to the system (``malloc_trim``), reads its
    resident set size (RSS, ``/proc/self/statm``), runs the step again and reports the peak
    RSS during it minus that RSS. The peak is sampled every 2 ms by a thread and, when the
    step sets a new process high-water mark, taken from ``getrusage().ru_maxrss``. This is
    real process memory (allocator overheads and oneDNN scratch buffers included), at
    steady state; tensors smaller than the sampling gap can make small steps (224x224) read
    a few MiB low.
  - CUDA: ``torch.cuda.max_memory_allocated()`` during the step minus
    ``torch.cuda.memory_allocated()`` before it (``reset_peak_memory_stats`` in between),
    measured after the warm-up inside the latency process (the allocator's counters do not
    depend on what ran before, so no fresh process is needed).

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

Models (``--models``): ``uninet_b1`` and ``uninet_b3`` (this project, ``out_indices=(1, 2, 4,
5)``, drop path 0.1 / 0.2 as in the Mask R-CNN configs), ``swin_t`` (mmdet SwinTransformer with
the Mask R-CNN Swin-T settings, drop path 0.2) and ``resnet50`` (mmdet ResNet depth 50, all
stages trained, BN in train mode). Without mmdet only the UniNet models are run; ``swin_t_tv`` is torchvision's Swin-T (same
architecture, its own implementation) for such machines.
Ratios printed: every UniNet-B3 variant / Swin-T and UniNet-B1 variant / ResNet-50.
"""
import argparse
import contextlib
import ctypes
import ctypes.util
import gc
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from uninet_mm.utils.tools_support import parse_size

logger = logging.getLogger('benchmark_backbone')

UNINET_MODELS = ('uninet_b1', 'uninet_b3')
MMDET_MODELS = ('swin_t', 'resnet50')
TORCHVISION_MODELS = ('swin_t_tv',)
ALL_MODELS = UNINET_MODELS + MMDET_MODELS + TORCHVISION_MODELS
LABELS = dict(uninet_b1='UniNet-B1', uninet_b3='UniNet-B3', swin_t='Swin-T',
              resnet50='ResNet-50', swin_t_tv='Swin-T (tv)')
#: variant -> the modes it is measured in.
VARIANTS = dict(plain=('fwd', 'train'), channels_last=('fwd', 'train'),
                channels_last_no_hook=('fwd', 'train'), fused=('fwd',),
                sac=('train',), cp=('train',), compile=('fwd', 'train'), compile_fused=('fwd',))
#: (numerator, denominator) pairs whose ratios are printed.
RATIOS = (('uninet_b3', 'swin_t'), ('uninet_b3', 'swin_t_tv'), ('uninet_b1', 'resnet50'))
DEFAULT_SIZES = ('224x224', '800x1333')
#: glibc thresholds for ``--malloc keep``: no mmap-backed allocations, no heap trimming.
KEEP_BYTES = 1 << 40
#: Dense peak TFLOP/s of some GPUs (fp32 without TF32; fp16/bf16 tensor cores), SXM parts.
GPU_PEAK_TFLOPS = {'H100': dict(fp32=67.0, bf16=989.0, fp16=989.0),
                   'H200': dict(fp32=67.0, bf16=989.0, fp16=989.0),
                   'A100': dict(fp32=19.5, bf16=312.0, fp16=312.0)}


def mmdet_available() -> bool:
    try:
        import mmdet.models  # noqa: F401
    except Exception as err:  # ImportError, or a broken mmcv build underneath
        logger.warning('mmdet is not importable (%s): benchmarking only the UniNet models', err)
        return False
    return True


def row_key(name: str, variant: str) -> str:
    return name if variant == 'plain' else f'{name}:{variant}'


def split_key(key: str) -> Tuple[str, str]:
    name, _, variant = key.partition(':')
    return name, variant or 'plain'


def build_model(name: str, variant: str = 'plain', mode: str = 'fwd') -> nn.Module:
    """The backbone called ``name``, randomly initialised (weights do not change speed), with
    the speed options of ``variant`` for ``mode``."""
    if name in UNINET_MODELS:
        from uninet_mm import UniNet
        from uninet_mm.models.acceleration import accelerate, to_channels_last
        with_cp = dict(sac='selective', cp=True).get(variant, False)
        model = UniNet(name.split('_')[1], out_indices=(1, 2, 4, 5), with_cp=with_cp,
                       drop_path_rate=0.1 if name == 'uninet_b1' else 0.2)
        if variant == 'fused':
            return accelerate(model, inference=True)
        if variant == 'compile_fused':
            return accelerate(model, inference=True, compile=True)
        if variant == 'compile':
            return torch.compile(to_channels_last(model))
        if variant == 'channels_last_no_hook':  # without the gradient-layout hook
            return model.to(memory_format=torch.channels_last)
        return model if variant == 'plain' else to_channels_last(model)
    if variant != 'plain':
        raise ValueError(f'{name} runs only as the plain mmdet model')
    if name == 'swin_t_tv':
        return TorchvisionSwinFeatures()
    from mmdet.models.backbones import ResNet, SwinTransformer
    if name == 'swin_t':
        return SwinTransformer(embed_dims=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
                               window_size=7, mlp_ratio=4, qkv_bias=True, qk_scale=None,
                               drop_rate=0., attn_drop_rate=0., drop_path_rate=0.2,
                               patch_norm=True, out_indices=(0, 1, 2, 3), with_cp=False)
    if name == 'resnet50':
        return ResNet(depth=50, out_indices=(0, 1, 2, 3))
    raise ValueError(f'unknown model {name!r}; choose from {ALL_MODELS}')


class TorchvisionSwinFeatures(nn.Module):
    """torchvision's Swin-T as a backbone (stride 4-32 maps, NCHW), drop path 0.2: a peer for
    machines where mmdet/mmcv cannot be installed."""

    def __init__(self):
        super().__init__()
        from torchvision.models import swin_t
        self.features = swin_t().features  # stochastic depth 0.2, as in mmdet's config

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        outs = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index % 2 == 1:  # after each stage's blocks: (B, H, W, C)
                outs.append(x.permute(0, 3, 1, 2).contiguous())
        return tuple(outs)


def make_step(model: nn.Module, x: torch.Tensor, mode: str,
              amp: Optional[str] = None) -> Callable[[], None]:
    """One inference forward (``fwd``) or one training forward+backward (``train``)."""
    def autocast():
        if amp is None:
            return contextlib.nullcontext()
        return torch.autocast(x.device.type, dtype=getattr(torch, dict(
            bf16='bfloat16', fp16='float16')[amp]))

    if mode == 'fwd':
        model.eval()

        def step() -> None:
            with torch.no_grad(), autocast():
                model(x)
    else:
        grads: List[torch.Tensor] = []
        model.train()

        def step() -> None:
            with autocast():
                outs = model(x)
            if not grads:  # fixed dense NCHW gradients, as a neck's convolutions return them
                grads.extend(torch.randn(o.shape, dtype=o.dtype, device=o.device)
                             for o in outs)
            torch.autograd.backward(outs, grads)
            model.zero_grad(set_to_none=True)
    return step


def sync(device: str) -> None:
    if device == 'cuda':
        torch.cuda.synchronize()


def current_rss_bytes() -> int:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def release_free_heap() -> None:
    """Return freed heap memory to the system, so the next RSS reading is a true baseline."""
    gc.collect()
    libc_name = ctypes.util.find_library('c')
    if libc_name:
        try:
            ctypes.CDLL(libc_name).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass


def peak_rss_during(step: Callable[[], None], interval_s: float = 0.002) -> int:
    """Peak RSS (bytes) while ``step`` runs: sampled by a thread, or the new high-water mark."""
    high_water_before = max_rss_bytes()
    peak = [current_rss_bytes()]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], current_rss_bytes())
            time.sleep(interval_s)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        step()
    finally:
        done.set()
        sampler.join()
    high_water = max_rss_bytes()
    return max(peak[0], high_water if high_water > high_water_before else 0)


# ---------------------------------------------------------------------------- workers
def configure_compile(mode: str) -> None:
    """Inference compiles with inductor's freezing (the documented switch for it)."""
    import torch._inductor.config as inductor_config
    inductor_config.freezing = mode == 'fwd'


def worker_memory(key: str, size: Tuple[int, int], mode: str, batch: int) -> Dict:
    """CPU peak memory of one ``mode`` step in this (fresh) process, in MiB."""
    torch.manual_seed(0)
    configure_compile(mode)
    model = build_model(*split_key(key), mode=mode)
    step = make_step(model, torch.randn(batch, 3, *size), mode)
    step()  # warm-up: kernels, compilation, primitive caches, gradients' first allocation
    release_free_heap()
    base = current_rss_bytes()
    return dict(peak_mib=(peak_rss_during(step) - base) / 2**20)


def worker_flops(key: str, size: Tuple[int, int], batch: int) -> Dict:
    """Forward multiply-adds of the plain model at ``batch`` x ``size``."""
    from uninet_mm.utils.flops import model_complexity
    model = build_model(split_key(key)[0])
    model.eval()  # not chained: mmdet's Swin overrides train() and returns None
    return dict(macs=model_complexity(model, torch.randn(batch, 3, *size))['flops'])


def worker_latency(keys: List[str], size: Tuple[int, int], device: str, mode: str,
                   repeats: int, warmup: int, batch: int, timer: str = 'wall',
                   amp: Optional[str] = None) -> Dict:
    """Median latencies (ms) of all model variants ``keys`` in ``mode``, interleaved round by
    round."""
    torch.manual_seed(0)
    configure_compile(mode)
    steps, params = {}, {}
    for key in keys:
        model = build_model(*split_key(key), mode=mode).to(device)
        params[key] = sum(p.numel() for p in model.parameters())
        x = torch.randn(batch, 3, *size, device=device)
        steps[key] = make_step(model, x, mode, amp)
    for key, step in steps.items():
        start = time.perf_counter()
        for _ in range(warmup):
            step()
        logger.info('warm-up of %s: %.1f s', key, time.perf_counter() - start)
    memory = {key: cuda_peak_mib(step) for key, step in steps.items()} if device == 'cuda' else {}
    times = {key: [] for key in steps}
    clock = time.process_time if timer == 'cpu' else time.perf_counter
    for round_index in range(repeats):
        for key, step in steps.items():
            sync(device)
            start = clock()
            step()
            sync(device)
            times[key].append((clock() - start) * 1e3)
        logger.info('round %d/%d done', round_index + 1, repeats)
    results = {key: dict(params=params[key]) for key in keys}
    for key, runs in times.items():
        results[key].update({f'{mode}_ms': statistics.median(runs), f'{mode}_runs_ms': runs})
    for key, mib in memory.items():
        results[key]['infer_mib' if mode == 'fwd' else 'train_mib'] = mib
    return results


def cuda_peak_mib(step: Callable[[], None]) -> float:
    """Peak CUDA memory of one ``step`` above what was allocated before it, in MiB."""
    sync('cuda')
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    step()
    sync('cuda')
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def run_worker(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    size = parse_size(args.sizes[0])
    if args.worker in ('latency-fwd', 'latency-train'):
        result = worker_latency(args.models, size, args.device[0], args.worker[8:],
                                args.repeats, args.warmup, args.batch, args.timer, args.amp)
    elif args.worker == 'flops':
        result = worker_flops(args.models[0], size, args.batch)
    else:
        result = worker_memory(args.models[0], size, args.worker, args.batch)
    print('RESULT ' + json.dumps(result), flush=True)


def spawn(args: argparse.Namespace, worker: str, keys: List[str], size: str, device: str
          ) -> Optional[Dict]:
    """Run one worker in a fresh interpreter; None (logged) if it fails, e.g. out of memory."""
    cmd = [sys.executable, os.path.abspath(__file__), '--worker', worker, '--models', *keys,
           '--sizes', size, '--device', device, '--threads', str(args.threads),
           '--repeats', str(args.repeats), '--warmup', str(args.warmup), '--timer', args.timer,
           '--batch', str(args.batch)] + (['--amp', args.amp] if args.amp else [])
    env = dict(os.environ)
    if args.thp:
        env['THP_MEM_ALLOC_ENABLE'] = '1'
    if args.malloc == 'keep':
        env.update(MALLOC_MMAP_THRESHOLD_=str(KEEP_BYTES), MALLOC_TRIM_THRESHOLD_=str(KEEP_BYTES))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith('RESULT '):
            return json.loads(line[len('RESULT '):])
    logger.error('%s worker for %s at %s on %s failed (exit %d):\n%s', worker, keys, size,
                 device, proc.returncode, proc.stderr[-3000:])
    return None


# ---------------------------------------------------------------------------- peak FLOP/s
def cpu_peak_flops(threads: int) -> Optional[float]:
    """threads x clock x FLOP/cycle (2 FMA units x vector width x 2)."""
    try:
        with open('/proc/cpuinfo') as f:
            mhz = max(float(ln.split(':', 1)[1]) for ln in f if ln.startswith('cpu MHz'))
    except (OSError, ValueError):
        return None
    capability = torch.backends.cpu.get_cpu_capability()
    per_cycle = 64 if 'AVX512' in capability else 32 if 'AVX2' in capability else 8
    return threads * mhz * 1e6 * per_cycle


def gpu_peak_flops(amp: Optional[str]) -> Optional[float]:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    for gpu, peaks in GPU_PEAK_TFLOPS.items():
        if gpu in name:
            return peaks[amp or 'fp32'] * 1e12
    return None


# ---------------------------------------------------------------------------- reporting
FIELDS = (('fwd_ms', 'fwd ms'), ('train_ms', 'fwd+bwd ms'), ('infer_mib', 'infer MiB'),
          ('train_mib', 'train MiB'), ('fwd_peak', 'fwd %peak'), ('train_peak', 'trn %peak'))


def fmt(value: Optional[float], digits: int = 0) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def ratio(results: Dict, key: Tuple, num: str, den: str, field: str) -> Optional[float]:
    a, b = results.get(key + (num,), {}).get(field), results.get(key + (den,), {}).get(field)
    return None if a is None or b is None or b <= 0 else a / b


def add_peak_shares(results: Dict, peaks: Dict[str, Optional[float]]) -> None:
    """``fwd_peak`` / ``train_peak``: % of the device's peak FLOP/s reached."""
    for (device, _, _), row in results.items():
        peak, macs = peaks.get(device), row.get('macs')
        if not peak or not macs:
            continue
        for mode, factor in (('fwd', 2), ('train', 6)):  # 2 FLOPs per MAC; train = 3x fwd
            if row.get(f'{mode}_ms'):
                row[f'{mode}_peak'] = 100 * factor * macs / (row[f'{mode}_ms'] / 1e3) / peak


def report(results: Dict, devices: List[str], sizes: List[str], keys: List[str]) -> str:
    lines = [f'{"device":6} {"size (HxW)":11} {"model":26} {"params M":>8} {"GMACs":>7} ' +
             ' '.join(f'{title:>10}' for _, title in FIELDS)]
    for device in devices:
        for size in sizes:
            for key in keys:
                row = results.get((device, size, key), {})
                name, variant = split_key(key)
                label = LABELS[name] + ('' if variant == 'plain' else f' {variant}')
                params, macs = row.get('params'), row.get('macs')
                lines.append(f'{device:6} {size:11} {label:26} '
                             f'{fmt(params and params / 1e6, 1):>8} '
                             f'{fmt(macs and macs / 1e9, 1):>7} ' +
                             ' '.join(f'{fmt(row.get(f), 1 if "peak" in f else 0):>10}'
                                      for f, _ in FIELDS))
    lines.append('')
    lines.append('ratios (< 1: UniNet is faster / smaller)')
    for device in devices:
        for size in sizes:
            for num_name, den in RATIOS:
                for num in (k for k in keys if split_key(k)[0] == num_name):
                    if den not in keys:
                        continue
                    variant = split_key(num)[1]
                    values = ' '.join(
                        f'{title} {fmt(ratio(results, (device, size), num, den, f), 2)}'
                        for f, title in FIELDS[:4])
                    lines.append(f'{device:6} {size:11} {LABELS[num_name]} {variant:13} / '
                                 f'{LABELS[den]}: {values}')
    return '\n'.join(lines)


def environment() -> Dict:
    cpu = platform.processor()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(ln.split(':', 1)[1].strip() for ln in f if ln.startswith('model name'))
    except (OSError, StopIteration):
        pass
    env = dict(torch=torch.__version__, python=platform.python_version(), cpu=cpu,
               cpu_capability=torch.backends.cpu.get_cpu_capability(),
               load_average=os.getloadavg())
    if torch.cuda.is_available():
        env['gpu'] = torch.cuda.get_device_name()
    return env


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
    parser.add_argument('--worker', default=None,
                        choices=['latency-fwd', 'latency-train', 'fwd', 'train', 'flops'],
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 2 if args.quick else 5
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    for size in args.sizes:
        parse_size(size)
    if not args.worker:
        unknown = [m for m in args.models if m not in ALL_MODELS]
        if unknown:
            parser.error(f'unknown models {unknown}; choose from {ALL_MODELS}')
    if args.timer == 'cpu' and (args.threads != 1 or 'cpu' not in args.device):
        parser.error('--timer cpu needs --device cpu and --threads 1')
    if args.amp and 'cuda' not in args.device:
        parser.error('--amp needs --device cuda (CPU rows are fp32)')
    return args


def model_keys(models: List[str], variants: List[str], mode: str) -> List[str]:
    """Rows measured in ``mode``: every variant of the UniNet models, the peers plain."""
    keys = []
    for name in models:
        for variant in (variants if name in UNINET_MODELS else ['plain']):
            if mode in VARIANTS[variant]:
                keys.append(row_key(name, variant))
    return keys


def main(argv: Optional[List[str]] = None) -> Dict:
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return {}
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
                latency = spawn(args, f'latency-{mode}', keys, size, device) or {}
                for key in keys:
                    results[device, size, key].update(latency.get(key, {}))
            if not args.no_flops:
                for name in models:
                    macs = spawn(args, 'flops', [name], size, 'cpu')
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
                    memory = spawn(args, mode, [key], size, device)
                    if memory is not None:
                        results[device, size, key][field] = memory['peak_mib']
    add_peak_shares(results, peaks)

    table = report(results, devices, args.sizes, all_keys)
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
