"""Measuring one backbone step: latency in interleaved rounds, peak memory, FLOPs and the
device's peak FLOP/s.

A *step* is one inference forward (``'fwd'``: ``model.eval()`` under ``torch.no_grad()``) or
one training step without the optimizer (``'train'``: ``model.train()``, forward, backward of
fixed random dense gradients of all returned maps, NCHW as a neck's convolutions hand them
back, then ``zero_grad(set_to_none=True)``).

Memory is what one step needs beyond the weights and the input:

* CPU (:func:`measure_memory`, in a fresh process): the step runs once (libraries, kernels and
  oneDNN primitive caches load), freed heap goes back to the system (``malloc_trim``), the
  resident set size (RSS) is read, the step runs again and the peak RSS during it minus that
  baseline is reported. The peak is sampled every 2 ms by a thread and, when the step sets a
  new process high-water mark, taken from ``getrusage().ru_maxrss``: real process memory
  (allocator overheads and oneDNN scratch buffers included); tensors shorter-lived than the
  sampling gap can make small steps read a few MiB low.
* CUDA (:func:`cuda_peak_mib`): ``max_memory_allocated()`` during the step minus
  ``memory_allocated()`` before it.
"""
import contextlib
import ctypes
import ctypes.util
import gc
import logging
import os
import platform
import resource
import statistics
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from .models import build_model, split_key

logger = logging.getLogger(__name__)

Step = Callable[[], None]
#: Dense peak TFLOP/s of some GPUs (fp32 without TF32; fp16/bf16 tensor cores), SXM parts.
GPU_PEAK_TFLOPS = {'H100': dict(fp32=67.0, bf16=989.0, fp16=989.0),
                   'H200': dict(fp32=67.0, bf16=989.0, fp16=989.0),
                   'A100': dict(fp32=19.5, bf16=312.0, fp16=312.0)}


def make_step(model: nn.Module, x: torch.Tensor, mode: str,
              amp: Optional[str] = None) -> Step:
    """One inference forward (``mode='fwd'``) or one training forward+backward
    (``'train'``) of ``model`` on ``x`` (B, 3, H, W), under ``amp`` autocast if given."""
    if mode not in ('fwd', 'train'):
        raise ValueError(f"mode must be 'fwd' or 'train', got {mode!r}")

    def autocast():
        if amp is None:
            return contextlib.nullcontext()
        return torch.autocast(x.device.type, dtype=dict(bf16=torch.bfloat16,
                                                        fp16=torch.float16)[amp])

    if mode == 'fwd':
        model.eval()

        def step() -> None:
            with torch.no_grad(), autocast():
                model(x)
        return step

    grads: List[torch.Tensor] = []
    model.train()

    def train_step() -> None:
        with autocast():
            outs = model(x)
        if not grads:  # fixed dense NCHW gradients, as a neck's convolutions return them
            grads.extend(torch.randn(o.shape, dtype=o.dtype, device=o.device) for o in outs)
        torch.autograd.backward(outs, grads)
        model.zero_grad(set_to_none=True)
    return train_step


def sync(device: str) -> None:
    if device == 'cuda':
        torch.cuda.synchronize()


def warm_up(steps: Dict[str, Step], count: int) -> None:
    """``count`` untimed runs of every step (kernels load, compilation happens)."""
    for key, step in steps.items():
        start = time.perf_counter()
        for _ in range(count):
            step()
        logger.info('warm-up of %s: %.1f s', key, time.perf_counter() - start)


def time_interleaved(steps: Dict[str, Step], repeats: int, device: str = 'cpu',
                     timer: str = 'wall') -> Dict[str, List[float]]:
    """Milliseconds of every step in each of ``repeats`` rounds; each round times every step
    once, so background noise hits all alike. Warm the steps up first (:func:`warm_up`).

    ``timer='cpu'`` uses the process's CPU time: with one thread, the time the step would
    take on an idle core when other jobs share the machine.
    """
    if timer not in ('wall', 'cpu'):
        raise ValueError(f"timer must be 'wall' or 'cpu', got {timer!r}")
    clock = time.process_time if timer == 'cpu' else time.perf_counter
    times: Dict[str, List[float]] = {key: [] for key in steps}
    for round_index in range(repeats):
        for key, step in steps.items():
            sync(device)
            start = clock()
            step()
            sync(device)
            times[key].append((clock() - start) * 1e3)
        logger.info('round %d/%d done', round_index + 1, repeats)
    return times


# ---------------------------------------------------------------------------- memory
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


def peak_rss_during(step: Step, interval_s: float = 0.002) -> int:
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


def cuda_peak_mib(step: Step) -> float:
    """Peak CUDA memory of one ``step`` above what was allocated before it, in MiB."""
    sync('cuda')
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    step()
    sync('cuda')
    return (torch.cuda.max_memory_allocated() - base) / 2**20


# ---------------------------------------------------------------------------- measurements
def configure_compile(mode: str) -> None:
    """Inference compiles with inductor's freezing (weights constant-folded, BN folded by
    inductor; its documented switch), training without."""
    import torch._inductor.config as inductor_config
    inductor_config.freezing = mode == 'fwd'


def measure_latency(keys: List[str], size: Tuple[int, int], device: str, mode: str,
                    repeats: int, warmup: int, batch: int, timer: str = 'wall',
                    amp: Optional[str] = None) -> Dict[str, Dict]:
    """Median latencies (ms) of the model variants ``keys`` (see
    :func:`~uninet_mm.benchmark.models.row_key`) in ``mode``, interleaved round by round;
    on CUDA also each step's peak memory."""
    torch.manual_seed(0)
    configure_compile(mode)
    steps, params = {}, {}
    for key in keys:
        model = build_model(*split_key(key)).to(device)
        params[key] = sum(p.numel() for p in model.parameters())
        steps[key] = make_step(model, torch.randn(batch, 3, *size, device=device), mode, amp)
    warm_up(steps, warmup)
    results = {key: dict(params=params[key]) for key in keys}
    if device == 'cuda':  # the allocator's counters do not depend on what ran before
        for key, step in steps.items():
            results[key]['infer_mib' if mode == 'fwd' else 'train_mib'] = cuda_peak_mib(step)
    for key, runs in time_interleaved(steps, repeats, device, timer).items():
        results[key].update({f'{mode}_ms': statistics.median(runs), f'{mode}_runs_ms': runs})
    return results


def measure_memory(key: str, size: Tuple[int, int], mode: str, batch: int) -> Dict:
    """CPU peak memory (MiB) of one ``mode`` step; run it in a fresh process."""
    torch.manual_seed(0)
    configure_compile(mode)
    step = make_step(build_model(*split_key(key)), torch.randn(batch, 3, *size), mode)
    step()  # warm-up: kernels, compilation, primitive caches, gradients' first allocation
    release_free_heap()
    base = current_rss_bytes()
    return dict(peak_mib=(peak_rss_during(step) - base) / 2**20)


def measure_macs(key: str, size: Tuple[int, int], batch: int) -> Dict:
    """Forward multiply-adds of the plain model at ``batch`` x ``size``."""
    from ..utils.flops import model_complexity
    model = build_model(split_key(key)[0])
    model.eval()  # not chained: mmdet's Swin overrides train() and returns None
    return dict(macs=model_complexity(model, torch.randn(batch, 3, *size))['flops'])


# ---------------------------------------------------------------------------- the device
def cpu_peak_flops(threads: int) -> Optional[float]:
    """threads x clock x FLOP/cycle (2 FMA units x vector width x 2), clock from
    /proc/cpuinfo; None where it cannot be read."""
    try:
        with open('/proc/cpuinfo') as f:
            mhz = max(float(ln.split(':', 1)[1]) for ln in f if ln.startswith('cpu MHz'))
    except (OSError, ValueError):
        return None
    capability = torch.backends.cpu.get_cpu_capability()
    per_cycle = 64 if 'AVX512' in capability else 32 if 'AVX2' in capability else 8
    return threads * mhz * 1e6 * per_cycle


def gpu_peak_flops(amp: Optional[str]) -> Optional[float]:
    """Dense peak FLOP/s of the current GPU in ``amp`` (fp32 if None), if it is in the table."""
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    for gpu, peaks in GPU_PEAK_TFLOPS.items():
        if gpu in name:
            return peaks[amp or 'fp32'] * 1e12
    return None


def environment() -> Dict:
    """torch, Python, the CPU's name and vector capability, load average, GPU name."""
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
