"""A latency model of UniNet backbones, measured on the device it predicts for.

A :class:`LatencyTable` predicts the time of ``UniNet(arch=arch)`` with its defaults (every
stage run, outputs of stages 1, 2, 4, 5 made contiguous, no classification head conv), as a
detector runs it, for one setting: device (``cpu`` with a thread count, or ``cuda``), dtype
(``fp32``, or ``bf16`` / ``fp16`` autocast), batch, input size H x W (any, non-square
included) and mode (``forward``: eval inference under ``no_grad``; ``train``: forward and
backward in train mode).

What it is keyed by (see ``docs/latency.md`` for the measurements that decided it): the
network is cut into the pieces the backbone runs one after another, and each piece is timed
alone with *exactly* the input it gets inside the network, i.e. the same shape and the same
memory layout:

* ``fixed``: the stem and stage 0 (never searched), on the image;
* ``dsm``: one downsampling module: type, in/out channels, stride, input map H x W, layout;
* ``block``: one block: GOP, channels, expansion, map H x W, input layout;
* ``copy``: the ``.contiguous()`` the backbone applies to a returned map that is not NCHW.

A network's latency is the sum of its pieces (a stage of r blocks is its DSM, its first block
and r - 1 times the next ones). Keys carry the feature-map size, so a kernel that changes
with the shape is timed at that shape; they carry the memory layout because a piece's time
depends on it (an L-DSM on a channels-last map ran 4x faster than on an NCHW one here) and
LG/G-DSMs hand a channels-last map to everything after them. Which layout each piece returns
is probed once on the table's device and stored in the table.

Timing: CPU at one thread with the thread's CPU time (what the piece costs on an idle core;
robust to other processes being scheduled), CPU with more threads with the wall clock (other
processes do disturb it), CUDA with CUDA events after warm-up. Each piece is warmed up, then
timed in rounds interleaved over a group of pieces, in ``passes`` passes over the whole
table (each median then spans the whole build, not one busy moment); one statistic of the
``repeats`` samples is kept (CPU memory stays in the heap meanwhile, see
:func:`device_settings`): the median for ``forward``, the minimum for ``train`` (a table's
``statistic``; train-mode samples are skewed upwards by gradient allocation and the backward
engine, and the minimum of pieces and of whole networks agreed better there, see
``docs/latency.md``). The samples stay in the table, so :meth:`LatencyTable.use_statistic`
re-summarises a table without measuring again.

Architectures that cannot run at the table's size (MLP token mixing has weights per token
position, so it only runs at the size the space builds its networks for) are infeasible:
:meth:`LatencyTable.infeasible_reason` says why and :meth:`~LatencyTable.predict` raises
:class:`InfeasibleArchError`.
"""
from __future__ import annotations

import collections
import contextlib
import datetime
import hashlib
import json
import math
import os
import platform
import random
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from mmengine.logging import MMLogger
from torch import nn

from ..models.arch_settings import ArchSpec, StageSpec, parse_arch
from ..utils.heap import keep_heap
from ..utils.plain import to_plain
from .space import SearchSpace

FORMAT = 'uninet_mm.latency_table'
VERSION = 1
DEVICES = ('cpu', 'cuda')
DTYPES = ('fp32', 'bf16', 'fp16')
MODES = ('forward', 'train')
#: Stages whose outputs UniNet returns by default (a detector's strides 4, 8, 16, 32).
DEFAULT_OUT_INDICES = (1, 2, 4, 5)
#: Settings that define a table; a table is refused for any other value of any of them.
SETTING_KEYS = ('device', 'input_size', 'batch', 'dtype', 'mode', 'threads')
DEFAULT_WARMUP = 1
DEFAULT_REPEATS = 6
#: Passes over all pieces a build makes (each adds repeats / passes samples to every piece).
DEFAULT_PASSES = 3
#: A piece whose passes' medians differ by more than this is reported as drifted: its time
#: depends on the state of the machine (other jobs, memory bandwidth, a resume on another day).
DRIFT_FACTOR = 1.5
#: How a piece's (and a whole network's) timed samples become one number.
STATISTICS = ('median', 'min')
#: Pieces timed together in interleaved rounds are grouped up to this many input bytes.
GROUP_BYTES = 1 << 30
GROUP_SIZE = 32
#: ``environment.heap`` of tables timed while glibc still mmapped blocks above 32 MiB.
OLD_HEAP = 'mmap threshold 32 MiB'

CF, CL = 'cf', 'cl'  # NCHW (contiguous) and channels-last memory layouts


class LatencyError(ValueError):
    """A latency-table problem; the message says what to change."""


class LatencySettingsError(LatencyError):
    """A table used for settings other than the ones it was measured for."""


class MissingEntryError(LatencyError, KeyError):
    """An architecture needs a piece the table did not measure."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class InfeasibleArchError(LatencyError):
    """An architecture that cannot run at the table's input size."""


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------
def check_settings(device: str = 'cpu', input_size: Union[int, Sequence[int]] = (224, 224),
                   batch: int = 1, dtype: str = 'fp32', mode: str = 'forward',
                   threads: Optional[int] = None) -> Dict[str, Any]:
    """Validated build settings as a plain dict (``threads`` resolved: CPU default 1, CUDA
    None). Raises :class:`LatencyError` naming the bad value."""
    if device not in DEVICES:
        raise LatencyError(f'latency device {device!r} is not supported; use one of '
                           f'{list(DEVICES)}')
    if isinstance(input_size, int) and not isinstance(input_size, bool):
        input_size = (input_size, input_size)
    if (isinstance(input_size, (str, bytes)) or not isinstance(input_size, Sequence)
            or len(input_size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                       for s in input_size)):
        raise LatencyError(f'latency input_size must be (H, W) of positive ints, got '
                           f'{input_size!r}')
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise LatencyError(f'latency batch must be an int >= 1, got {batch!r}')
    if dtype not in DTYPES:
        raise LatencyError(f'latency dtype {dtype!r} is not supported; use one of {list(DTYPES)} '
                           f'(bf16/fp16 run under torch.autocast)')
    if mode not in MODES:
        raise LatencyError(f'latency mode {mode!r} is not supported; use one of {list(MODES)} '
                           f'(forward: eval inference; train: forward + backward)')
    if device == 'cuda':
        if threads is not None:
            raise LatencyError('latency threads is a CPU setting; leave it None for cuda')
    else:
        if threads is None:
            threads = 1
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise LatencyError(f'latency threads must be an int >= 1, got {threads!r}')
        if dtype == 'fp16':
            raise LatencyError('fp16 autocast is a CUDA setting; on the CPU use fp32 or bf16')
    return dict(device=device, input_size=[int(s) for s in input_size], batch=batch,
                dtype=dtype, mode=mode, threads=threads)


def default_statistic(mode: str) -> str:
    """The statistic a table keeps by default: ``min`` in train mode, else ``median``."""
    return 'min' if mode == 'train' else 'median'


def check_statistic(statistic: Optional[str], mode: str) -> str:
    """``statistic`` validated (None: :func:`default_statistic` of ``mode``)."""
    if statistic is None:
        return default_statistic(mode)
    if statistic not in STATISTICS:
        raise LatencyError(f'latency statistic {statistic!r} is not supported; use one of '
                           f'{list(STATISTICS)}')
    return statistic


def summarize(samples: Sequence[float], statistic: str) -> float:
    """One number of timed ``samples`` (ms): their median or their minimum."""
    return min(samples) if statistic == 'min' else statistics.median(samples)


def timer_name(settings: Mapping[str, Any]) -> str:
    """``thread_cpu_time`` (CPU, 1 thread), ``wall_clock`` (CPU, more threads) or
    ``cuda_events``."""
    if settings['device'] == 'cuda':
        return 'cuda_events'
    return 'thread_cpu_time' if settings['threads'] == 1 else 'wall_clock'


def environment(device: str) -> Dict[str, Any]:
    """Where a table is measured: machine, CPU, torch, device name, load, date."""
    from ..benchmark.measure import environment as machine_environment
    env = machine_environment()
    env.pop('gpu', None)
    env.update(machine=platform.node(), cpu_count=os.cpu_count(),
               load_average=[round(v, 2) for v in os.getloadavg()],
               date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'))
    env['heap'] = keep_heap()
    env['device_name'] = (torch.cuda.get_device_name()
                          if device == 'cuda' and torch.cuda.is_available() else env['cpu'])
    return env


# ---------------------------------------------------------------------------------------------
# Pieces of a network
# ---------------------------------------------------------------------------------------------
def _ceil_div(size: int, stride: int) -> int:
    return -(-size // stride)


@dataclass(frozen=True)
class Piece:
    """One timed piece of a backbone. ``hw`` is the map it reads (the image for ``fixed``)."""
    kind: str                      # fixed | dsm | block | copy
    op: str                        # stem+stage0 | L/LG/G | DWConv/Conv/SA/LSA/MLP | contiguous
    in_channels: int
    channels: int
    hw: Tuple[int, int]
    layout: str = CF
    stride: int = 1
    expansion: float = 1.0
    extra: str = ''                # fixed: the stage-0 spec

    @property
    def key(self) -> str:
        h, w = self.hw
        if self.kind == 'fixed':
            return f'fixed stem{self.in_channels} {self.extra} @{h}x{w}'
        if self.kind == 'dsm':
            return (f'dsm {self.op} {self.in_channels}>{self.channels} s{self.stride} '
                    f'@{h}x{w} {self.layout}')
        if self.kind == 'block':
            return f'block {self.op} c{self.channels} e{self.expansion:g} @{h}x{w} {self.layout}'
        return f'copy c{self.channels} @{h}x{w}'

    def macs(self, batch: int = 1) -> float:
        """Multiply-adds (analytic, for the time estimate of a build only)."""
        h, w = self.hw
        n = h * w
        a, c = self.in_channels, self.channels
        if self.kind == 'copy':
            return 0.0
        if self.kind == 'block':
            return batch * _block_macs(self.op, c, c, self.expansion, n)
        if self.kind == 'dsm':
            n_out = _ceil_div(h, self.stride) * _ceil_div(w, self.stride)
            local = 9 * a * n_out + a * c * n_out
            shortcut = a * c * n_out
            if self.op == 'L':
                return batch * (local + shortcut)
            query = local if self.op == 'LG' else a * c * self.stride ** 2 * n_out
            return batch * (query + shortcut + 2 * a * c * n + 2 * n_out * n * c
                            + c * c * n_out)
        return 0.0  # fixed: estimated from the first measurement


def _block_macs(gop: str, a: int, c: int, e: float, n: int) -> float:
    if gop in ('DWConv', 'Conv'):
        hid = int(a * e)
        conv = 9 * hid if gop == 'DWConv' else 9 * hid * hid
        return n * (a * hid + conv + hid * c)
    mixer = {'SA': 2 * n * c, 'LSA': 2 * 49 * c, 'MLP': 2 * n}[gop]
    return n * (9 * c + 4 * c * c + mixer + 2 * c * int(c * e))


@dataclass
class Plan:
    """The pieces of one architecture in the order the backbone runs them (``order``: one key
    per run of a piece) and how often each runs (``counts``)."""
    order: List[str]
    pieces: Dict[str, Piece]
    infeasible: Optional[str] = None

    @property
    def counts(self) -> Dict[str, int]:
        return dict(collections.Counter(self.order))


def _layout_key(kind: str, op: str, layout: str) -> str:
    return f'{kind} {op} {layout}'


def plan_arch(arch: Union[str, Mapping, ArchSpec], input_size: Tuple[int, int],
              layouts: Mapping[str, str], mlp_input_size: Optional[Sequence[int]],
              out_indices: Sequence[int] = DEFAULT_OUT_INDICES) -> Plan:
    """Cut ``arch`` at ``input_size`` into :class:`Piece` s (see the module docstring).

    ``layouts`` maps ``'kind op input_layout'`` to the layout the piece returns (probed by
    :func:`probe_layouts`); ``mlp_input_size`` is the only input size at which MLP stages can
    run (the size their token mixing was built for), None if never.
    """
    spec = parse_arch(arch)
    height, width = (_ceil_div(s, 2) for s in input_size)
    pieces: Dict[str, Piece] = {}
    order: List[str] = []
    infeasible = None

    def add(piece: Piece) -> None:
        pieces[piece.key] = piece
        order.append(piece.key)

    def after(kind: str, op: str, layout: str) -> str:
        return _after(layouts, kind, op, layout)

    mlp_ok = mlp_input_size is not None and tuple(mlp_input_size) == tuple(input_size)
    for index, stage in enumerate(spec.stages):
        if stage.gop == 'MLP' and not mlp_ok and infeasible is None:
            built = ('x'.join(map(str, mlp_input_size)) if mlp_input_size is not None
                     else 'no size')
            infeasible = (f'stage {index} uses the MLP GOP, whose token mixing has weights per '
                          f'token position: it runs only at the input size its network is '
                          f'built for ({built}), not at {input_size[0]}x{input_size[1]}')
    stage0 = spec.stages[0]
    add(Piece('fixed', 'stem+stage0', spec.stem_channels, stage0.channels, tuple(input_size),
              extra=_stage0_text(stage0)))
    layout = after('block', stage0.gop, after('stem', 'stem', CF))
    height, width = _ceil_div(height, stage0.stride), _ceil_div(width, stage0.stride)
    in_channels = stage0.channels
    for index, stage in enumerate(spec.stages[1:], start=1):
        add(Piece('dsm', stage.dsm, in_channels, stage.channels, (height, width), layout,
                  stride=stage.stride))
        layout = after('dsm', stage.dsm, layout)
        height, width = _ceil_div(height, stage.stride), _ceil_div(width, stage.stride)
        for _ in range(stage.repeats):
            add(Piece('block', stage.gop, stage.channels, stage.channels, (height, width),
                      layout, expansion=stage.expansion))
            layout = after('block', stage.gop, layout)
        if index in out_indices and layout == CL and stage.channels > 1 and height * width > 1:
            add(Piece('copy', 'contiguous', stage.channels, stage.channels, (height, width), CL))
        in_channels = stage.channels
    return Plan(order=order, pieces=pieces, infeasible=infeasible)


def _stage0_text(stage: StageSpec) -> str:
    return f'{stage.gop} c{stage.channels} e{stage.expansion:g} r{stage.repeats}'


def _stage_options(space: SearchSpace, index: int) -> Tuple[List[StageSpec], int]:
    """Distinct (gop, dsm, expansion, channels) choices of a stage and its most repeats."""
    base = space.base_arch.stages[index]
    if index not in space.searched_stages:
        return [base], base.repeats
    seen: Dict[Tuple, StageSpec] = {}
    for gop in space.gops:
        for dsm in space.dsms:
            for exp in space.expansions:
                for width in space.widths:
                    stage = space._stage(index, dict(gop=gop, dsm=dsm, expansion=exp,
                                                     width=width, repeat_delta=0))
                    spec = StageSpec(**dict(stage, repeats=1))
                    seen.setdefault((spec.gop, spec.dsm, spec.expansion, spec.channels), spec)
    return list(seen.values()), max(1, base.repeats + max(space.repeat_deltas))


def space_pieces(space: SearchSpace, input_size: Sequence[int], layouts: Mapping[str, str],
                 extra_archs: Sequence[Union[str, Mapping, ArchSpec]] = ()) -> Dict[str, Piece]:
    """Every piece a feasible network of ``space`` (or one of ``extra_archs``) can contain
    at ``input_size``: each stage choice after each choice of the previous stage (a DSM
    depends on both widths) and after each layout earlier stages can leave behind."""
    size = tuple(input_size)
    mlp_ok = tuple(space.input_size) == size
    pieces: Dict[str, Piece] = {}
    for spec in [parse_arch(a) for a in extra_archs]:
        pieces.update(plan_arch(spec, size, layouts, space.input_size).pieces)
    base = space.base_arch
    stage0 = base.stages[0]
    fixed = Piece('fixed', 'stem+stage0', base.stem_channels, stage0.channels, size,
                  extra=_stage0_text(stage0))
    pieces[fixed.key] = fixed
    # states entering a stage: (channels of the previous stage, layout)
    states = {(stage0.channels, _after(layouts, 'block', stage0.gop,
                                       _after(layouts, 'stem', 'stem', CF)))}
    height, width = (_ceil_div(s, 2) for s in size)
    height, width = _ceil_div(height, stage0.stride), _ceil_div(width, stage0.stride)
    for index in range(1, len(base.stages)):
        options, max_repeats = _stage_options(space, index)
        out_h, out_w = (_ceil_div(height, options[0].stride), _ceil_div(width, options[0].stride))
        next_states = set()
        for in_channels, layout in states:
            for stage in options:
                if stage.gop == 'MLP' and not mlp_ok:
                    continue
                dsm = Piece('dsm', stage.dsm, in_channels, stage.channels, (height, width),
                            layout, stride=stage.stride)
                pieces[dsm.key] = dsm
                block_layout = _after(layouts, 'dsm', stage.dsm, layout)
                seen_layouts = []
                for _ in range(max_repeats):
                    if block_layout in seen_layouts:
                        break
                    seen_layouts.append(block_layout)
                    block = Piece('block', stage.gop, stage.channels, stage.channels,
                                  (out_h, out_w), block_layout, expansion=stage.expansion)
                    pieces[block.key] = block
                    block_layout = _after(layouts, 'block', stage.gop, block_layout)
                for out_layout in seen_layouts[1:] + [block_layout]:
                    next_states.add((stage.channels, out_layout))
                    if (index in DEFAULT_OUT_INDICES and out_layout == CL
                            and stage.channels > 1 and out_h * out_w > 1):
                        copy = Piece('copy', 'contiguous', stage.channels, stage.channels,
                                     (out_h, out_w), CL)
                        pieces[copy.key] = copy
        states = next_states
        height, width = out_h, out_w
    return pieces


def _after(layouts: Mapping[str, str], kind: str, op: str, layout: str) -> str:
    key = _layout_key(kind, op, layout)
    if key not in layouts:
        raise MissingEntryError(f'the table has no probed output layout for {key!r}')
    return layouts[key]


def layouts_needed(space: SearchSpace,
                   extra_archs: Sequence[Union[str, Mapping, ArchSpec]] = ()
                   ) -> List[Tuple[str, str]]:
    """(kind, op) pairs whose output layout a plan of this space asks for."""
    ops = {('stem', 'stem')}
    for spec in [space.base_arch] + [parse_arch(a) for a in extra_archs]:
        for stage in spec.stages:
            ops.add(('block', stage.gop))
            if stage.dsm is not None:
                ops.add(('dsm', stage.dsm))
    ops |= {('block', g) for g in space.gops} | {('dsm', d) for d in space.dsms}
    return sorted(ops)


# ---------------------------------------------------------------------------------------------
# Building and timing pieces
# ---------------------------------------------------------------------------------------------
def build_piece(piece: Piece) -> nn.Module:
    """The module of a piece, with the backbone's own layers and initialisation."""
    from ..models.backbones.uninet import UniNetStage
    from ..models.layers import DOWNSAMPLE_MODULES, ConvBlock, ConvNormAct, TransformerBlock

    norm_cfg = dict(type='BN', requires_grad=True)
    if piece.kind == 'fixed':
        gop, rest = piece.extra.split(' ', 1)
        fields = {item[0]: item[1:] for item in rest.split()}
        stage0 = StageSpec(gop=gop, dsm=None, expansion=float(fields['e']),
                           channels=int(fields['c']), repeats=int(fields['r']), stride=1)
        hw0 = tuple(_ceil_div(s, 2) for s in piece.hw)
        module = nn.Sequential(
            ConvNormAct(3, piece.in_channels, 3, 2, norm_cfg),
            UniNetStage(piece.in_channels, stage0, [0.0] * stage0.repeats, norm_cfg, 1e-6,
                        hw_shape=hw0))
    elif piece.kind == 'dsm':
        module = DOWNSAMPLE_MODULES[piece.op](piece.in_channels, piece.channels, piece.stride,
                                              norm_cfg=norm_cfg)
    elif piece.kind == 'block':
        if piece.op in ('DWConv', 'Conv'):
            module = ConvBlock(piece.channels, piece.channels, piece.expansion,
                               depthwise=piece.op == 'DWConv', norm_cfg=norm_cfg)
        else:
            module = TransformerBlock(piece.channels, piece.expansion, mixer=piece.op,
                                      hw_shape=piece.hw)
    else:
        module = _Contiguous()
    from ..models.backbones.uninet import UniNet
    module.apply(UniNet._init_reference_weights)
    return module


class _Contiguous(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous()


def make_input(piece: Piece, batch: int, device: str) -> torch.Tensor:
    """The input a piece gets inside the network: its shape and memory layout."""
    h, w = piece.hw
    channels = 3 if piece.kind == 'fixed' else piece.in_channels
    if piece.layout == CL:
        return torch.randn(batch, h, w, channels, device=device).permute(0, 3, 1, 2)
    return torch.randn(batch, channels, h, w, device=device)


def layout_of(x: torch.Tensor) -> str:
    """'cl' for a channels-last map that is not also NCHW-contiguous, else 'cf'."""
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return CL
    return CF


def _autocast(settings: Mapping[str, Any]):
    if settings['dtype'] == 'fp32':
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if settings['dtype'] == 'bf16' else torch.float16
    return torch.autocast(settings['device'], dtype=dtype)


class Step:
    """A timed call (``step()``) and what runs untimed before it (``step.touch()``: read the
    input once, so that it is in the caches as the previous piece's output is inside the
    network)."""

    def __init__(self, run: Callable[[], None], inputs: torch.Tensor):
        self.run, self.inputs = run, inputs

    def __call__(self) -> None:
        self.run()

    def touch(self) -> None:
        with torch.no_grad():
            self.inputs.sum()


def make_step(module: nn.Module, inputs: torch.Tensor, settings: Mapping[str, Any],
              input_grad: bool = True) -> Step:
    """One forward (eval, no_grad) or one forward + backward (train) of ``module``; outputs of
    a tuple all get a fixed gradient, as a neck gives them."""
    module.to(settings['device'])
    if settings['mode'] == 'forward':
        module.eval()

        def step() -> None:
            with torch.no_grad(), _autocast(settings):
                module(inputs)
        return Step(step, inputs)
    module.train()
    if input_grad:
        inputs = inputs.detach().requires_grad_(True)
    grads: List[torch.Tensor] = []

    def train_step() -> None:
        with _autocast(settings):
            outs = module(inputs)
        outs = outs if isinstance(outs, (tuple, list)) else (outs,)
        if not grads:
            grads.extend(torch.randn_like(o) for o in outs)
        torch.autograd.backward(outs, grads)
        module.zero_grad(set_to_none=True)
        if inputs.grad is not None:
            inputs.grad = None
    return Step(train_step, inputs)


class Timer:
    """Times one call of a step in milliseconds with the table's clock.

    On CUDA there are two timers. ``queued=False`` (whole networks) records CUDA events around
    the call on an idle GPU, the way a user's forward runs. ``queued=True`` (pieces) first
    queues :attr:`spin_ms` of matrix products on the GPU, so that the CPU has issued all of the
    piece's kernels before the GPU reaches them: the events then hold the piece's GPU time
    alone, without the gaps where the GPU waits for the Python code that launches the next
    kernel (a piece timed alone otherwise pays them all, while inside a network they overlap
    with earlier pieces' GPU work: on an H200, bf16, 800x1333, pieces summed that way
    over-predicted whole networks by 8-58 %). The CPU time spent issuing the piece is kept in
    :attr:`host_ms`; :func:`pipelined_ms` puts the two together. If the GPU reached the piece
    before the CPU had issued it all, the spin is doubled and the piece timed again. The spin
    is a few large products, not many small ones: CUDA's launch queue holds about a thousand
    kernels, and once it is full every launch waits for the GPU, which would put GPU time into
    the host time (seen on an H200 with 2048x2048 products: host times of 0.66-2.75 ms a block,
    and a copy's host time growing with its size).
    """

    def __init__(self, settings: Mapping[str, Any], queued: bool = False):
        self.kind = timer_name(settings)
        self.queued = queued and self.kind == 'cuda_events'
        self.host_ms = float('nan')
        if self.kind == 'cuda_events':
            self.start_event = torch.cuda.Event(enable_timing=True)
            self.end_event = torch.cuda.Event(enable_timing=True)
        if self.queued:
            self.spin_ms, self.spin_ms_max = 1.0, 64.0
            self._spin_operand = torch.randn(4096, 4096, device='cuda', dtype=torch.bfloat16)
            self._spin_per_ms = self._calibrate_spin()

    def _spin(self, count: int) -> None:
        for _ in range(count):
            torch.mm(self._spin_operand, self._spin_operand)

    def _calibrate_spin(self) -> float:
        """Matrix products per millisecond of GPU time."""
        self._spin(2)
        torch.cuda.synchronize()
        self.start_event.record()
        self._spin(10)
        self.end_event.record()
        torch.cuda.synchronize()
        return 10 / max(self.start_event.elapsed_time(self.end_event), 1e-3)

    def __call__(self, step: Callable[[], None]) -> float:
        if hasattr(step, 'touch'):
            step.touch()
        if self.kind == 'cuda_events':
            while True:
                torch.cuda.synchronize()
                spin_ms = self.spin_ms if self.queued else 0.0
                if self.queued:
                    self._spin(math.ceil(spin_ms * self._spin_per_ms))
                self.start_event.record()
                start = time.perf_counter_ns()
                step()
                self.host_ms = (time.perf_counter_ns() - start) / 1e6
                self.end_event.record()
                ran_dry = self.queued and self.start_event.query()
                torch.cuda.synchronize()
                if not self.queued:
                    return float(self.start_event.elapsed_time(self.end_event))
                # keep the spin ahead of this piece's launches; twice as long if it ran dry
                grown = max(spin_ms, 2 * self.host_ms, 2 * spin_ms if ran_dry else 0.0)
                self.spin_ms = min(grown, self.spin_ms_max)
                if not ran_dry or spin_ms >= self.spin_ms_max:
                    return float(self.start_event.elapsed_time(self.end_event))
        clock = time.thread_time_ns if self.kind == 'thread_cpu_time' else time.perf_counter_ns
        start = clock()
        step()
        self.host_ms = (clock() - start) / 1e6
        return self.host_ms


def pipelined_ms(runs: Iterable[Tuple[float, float]]) -> float:
    """Latency of pieces run one after another on a GPU, from each run's ``(gpu_ms, host_ms)``:
    the CPU issues the pieces one after another (piece i is issued by the sum of the host
    times up to i), the GPU runs them in order, and a piece ends no earlier than it was issued
    nor earlier than the GPU finished the previous one and then ran it.

        >>> pipelined_ms([(1.0, 0.1), (1.0, 0.1)])   # GPU-bound: the GPU times add up
        2.0
        >>> pipelined_ms([(0.1, 1.0), (0.1, 1.0)])   # launch-bound: the host times add up
        2.0
    """
    issued = finished = 0.0
    for gpu_ms, host_ms in runs:
        issued += host_ms
        finished = max(finished + gpu_ms, issued)
    return finished


@contextlib.contextmanager
def device_settings(settings: Mapping[str, Any]):
    """Apply the thread count (CPU) for the duration and keep the heap
    (:func:`~uninet_mm.utils.heap.keep_heap`: pieces timed alone free everything after each
    step, and with glibc's defaults page-faulted it in again: 469 minor faults per step for
    one DWConv block at 20x20 in train mode here, 0-3 in most steps with the heap kept, and pieces alone
    up to 1.4x slower than inside a network; networks are timed the same way); check that
    CUDA exists."""
    if settings['device'] == 'cuda' and not torch.cuda.is_available():
        raise LatencyError('latency device cuda was asked for, but torch sees no CUDA device '
                           '(torch.cuda.is_available() is False); build the table on the GPU '
                           'it is for')
    keep_heap()
    threads = torch.get_num_threads()
    if settings['threads'] is not None:
        torch.set_num_threads(settings['threads'])
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def probe_layouts(ops: Iterable[Tuple[str, str]], settings: Mapping[str, Any]
                  ) -> Dict[str, str]:
    """The layout each (kind, op) returns for an NCHW and a channels-last input, found by
    running it once on an 8x8 map on the table's device (``'kind op layout' -> layout``)."""
    from ..models.layers import ConvNormAct

    result = {}
    probe = dict(settings, mode='forward')
    for kind, op in ops:
        for layout in ((CF,) if kind == 'stem' else (CF, CL)):
            if kind == 'stem':
                module = ConvNormAct(3, 32, 3, 2, dict(type='BN'))
                x = make_input(Piece('fixed', 'stem', 3, 32, (8, 8)), 1, settings['device'])
            else:
                piece = (Piece('dsm', op, 32, 64, (8, 8), layout, stride=2) if kind == 'dsm'
                         else Piece('block', op, 32, 32, (8, 8), layout, expansion=2.0))
                module = build_piece(piece)
                x = make_input(piece, 1, settings['device'])
            module.to(settings['device']).eval()
            with torch.no_grad(), _autocast(probe):
                out = module(x)
            result[_layout_key(kind, op, layout)] = layout_of(out)
    return result


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------
def _sample_text(sample: Optional[Mapping[str, Any]]) -> str:
    return ('every piece of its space' if not sample else
            f'the pieces of a validation sample (--validation-sample {sample["num_archs"]} '
            f'--seed {sample["seed"]})')


def sample_feasible_archs(table: 'LatencyTable', space: SearchSpace, num_archs: int, seed: int
                          ) -> Tuple[List[Dict[str, Any]], Dict[str, int], int]:
    """The first ``num_archs`` architectures of ``space`` drawn with ``random.Random(seed)``
    that can run at the table's size, how many were skipped per reason, and how many were
    drawn. Raises :class:`LatencyError` when fewer than 1 in 100 can run."""
    rng = random.Random(seed)
    sampled: List[Dict[str, Any]] = []
    infeasible: Dict[str, int] = {}
    draws = 0
    while len(sampled) < num_archs:
        draws += 1
        if draws > 100 * num_archs:
            raise LatencyError(f'too many infeasible architectures in this space at '
                               f'{table.describe()}: {infeasible}')
        arch = space.decode(space.sample(rng))
        reason = table.infeasible_reason(arch)
        if reason:
            infeasible[reason.split(':')[0]] = infeasible.get(reason.split(':')[0], 0) + 1
            continue
        sampled.append(arch)
    return sampled, infeasible, draws


class LatencyTable:
    """Latency of every piece a search space's networks are made of, on one device.

    Build with :meth:`build`, keep with :meth:`save` / :meth:`load`, predict with
    :meth:`predict` (milliseconds per forward, or per forward + backward, of one batch).
    """

    def __init__(self, data: Dict[str, Any], path: Optional[str] = None):
        if data.get('format') != FORMAT:
            raise LatencyError(f'{path or "data"} is not a UniNet latency table (no '
                               f'"format": "{FORMAT}")')
        if data.get('version') != VERSION:
            raise LatencyError(f'latency table version {data.get("version")!r} is not '
                               f'{VERSION}; build it again with this code')
        self.data = data
        self.path = path
        self.settings: Dict[str, Any] = data['settings']
        self.space = SearchSpace.from_config(data['space'])
        self.layouts: Dict[str, str] = data['layouts']

    # ------------------------------------------------------------------ construction
    @classmethod
    def plan_build(cls, space: SearchSpace, device: str = 'cpu',
                   input_size: Union[int, Sequence[int]] = (224, 224), batch: int = 1,
                   dtype: str = 'fp32', mode: str = 'forward', threads: Optional[int] = None,
                   extra_archs: Sequence[Union[str, Mapping]] = (),
                   warmup: int = DEFAULT_WARMUP, repeats: int = DEFAULT_REPEATS,
                   passes: int = DEFAULT_PASSES, statistic: Optional[str] = None
                   ) -> 'LatencyTable':
        """An empty table (no piece measured yet) with its layouts probed and its pieces
        listed; :meth:`measure` fills it. ``extra_archs`` (e.g. ``['b0', 'b1']``) adds the
        pieces of networks outside the space; ``statistic`` (``median`` or ``min``; None:
        :func:`default_statistic` of the mode) is what each piece's samples are summarised
        by."""
        settings = check_settings(device, input_size, batch, dtype, mode, threads)
        statistic = check_statistic(statistic, settings['mode'])
        if not (isinstance(repeats, int) and repeats >= 1 and isinstance(warmup, int)
                and warmup >= 0 and isinstance(passes, int) and passes >= 1):
            raise LatencyError(f'repeats and passes must be >= 1 and warmup >= 0, got '
                               f'{repeats}, {passes}, {warmup}')
        passes = min(passes, repeats)
        extra_specs = [parse_arch(a) for a in extra_archs]
        with device_settings(settings):
            layouts = probe_layouts(layouts_needed(space, extra_specs), settings)
        data = dict(format=FORMAT, version=VERSION, settings=settings,
                    timer=timer_name(settings), space=to_plain(space.config),
                    extra_archs=[s.to_dict() for s in extra_specs],
                    environment=environment(device), warmup=warmup, repeats=repeats,
                    passes=passes, statistic=statistic,
                    layouts=layouts, pieces={}, entries={}, complete=False, build_seconds=0.0)
        table = cls(data)
        pieces = space_pieces(space, settings['input_size'], layouts, extra_specs)
        data['pieces'] = {k: _piece_dict(p) for k, p in sorted(pieces.items())}
        return table

    @classmethod
    def build(cls, space: SearchSpace, device: str = 'cpu',
              input_size: Union[int, Sequence[int]] = (224, 224), batch: int = 1,
              dtype: str = 'fp32', mode: str = 'forward', threads: Optional[int] = None,
              extra_archs: Sequence[Union[str, Mapping]] = (), warmup: int = DEFAULT_WARMUP,
              repeats: int = DEFAULT_REPEATS, passes: int = DEFAULT_PASSES,
              statistic: Optional[str] = None, path: Optional[str] = None,
              logger: Optional[MMLogger] = None) -> 'LatencyTable':
        """Measure every piece of ``space`` at these settings (see :func:`check_settings`).

        With ``path``, progress is saved there as it goes and a partial table at ``path``
        with the same settings is continued (no sample is taken twice)."""
        table = cls.plan_build(space, device, input_size, batch, dtype, mode, threads,
                               extra_archs, warmup, repeats, passes, statistic)
        if path is not None and Path(path).is_file():
            table = table.continue_from(cls.load(path, complete=False))
        table.measure(path=path, logger=logger)
        return table

    def continue_from(self, previous: 'LatencyTable') -> 'LatencyTable':
        """Take over the samples of a partial table with the same settings and space."""
        self.check_settings(**{k: previous.settings[k] for k in SETTING_KEYS})
        if previous.data['space'] != self.data['space'] or (
                previous.data['extra_archs'] != self.data['extra_archs']):
            raise LatencySettingsError(
                f'{previous.path} was built for another search space (or other extra '
                f'archs); build into a new file')
        how = ('repeats', 'warmup', 'passes')
        if [previous.data.get(k) for k in how] != [self.data[k] for k in how]:
            raise LatencySettingsError(
                f'{previous.path} was built with repeats/warmup/passes '
                f'{"/".join(str(previous.data.get(k)) for k in how)}; resume with those')
        if previous.data.get('validation_sample') != self.data.get('validation_sample'):
            raise LatencySettingsError(
                f'{previous.path} was built for '
                f'{_sample_text(previous.data.get("validation_sample"))}, not for '
                f'{_sample_text(self.data.get("validation_sample"))}; resume with the same '
                f'--validation-sample and --seed, or build into a new file')
        self.data['pieces'] = dict(previous.data['pieces'])
        self.data['entries'] = dict(previous.data['entries'])
        self.data['build_seconds'] = previous.data.get('build_seconds', 0.0)
        self.data['environment'] = previous.data['environment']
        self.layouts = self.data['layouts'] = previous.layouts
        return self.use_statistic(self.statistic)

    def keep_pieces_of(self, archs: Sequence[Union[str, Mapping, ArchSpec]],
                       label: Mapping[str, Any]) -> 'LatencyTable':
        """Before measuring: keep only the pieces ``archs`` run (those of an arch the table does
        not cover entirely are left out), e.g. a validation's sample (``label``:
        ``dict(num_archs=N, seed=S)``, kept as ``validation_sample``). Such a table checks a
        device's predictions in a fraction of a full build's time; it predicts only those
        archs, and a search refuses it. Returns self."""
        if self.data['entries']:
            raise LatencyError('keep_pieces_of: the table has measured pieces already')
        covered, kept = set(self.data['pieces']), set()
        for arch in archs:
            keys = set(self.plan(arch).pieces)
            if keys <= covered:
                kept |= keys
        self.data['pieces'] = {k: v for k, v in self.data['pieces'].items() if k in kept}
        self.data['validation_sample'] = dict(label)
        return self

    @property
    def statistic(self) -> str:
        """How each piece's samples are summarised (tables from before the option: median)."""
        return self.data.get('statistic', 'median')

    def use_statistic(self, statistic: Optional[str]) -> 'LatencyTable':
        """Summarise every piece's stored samples with ``statistic`` (``median``/``min``;
        None: the mode's default) from now on; nothing is measured again. Returns self."""
        statistic = check_statistic(statistic, self.settings['mode'])
        self.data['statistic'] = statistic
        for entry in self.data['entries'].values():
            if entry.get('samples'):
                entry['ms'] = summarize(entry['samples'], statistic)
        return self

    @property
    def pieces(self) -> Dict[str, Piece]:
        return {k: _piece_from_dict(v) for k, v in self.data['pieces'].items()}

    def todo(self) -> Dict[str, int]:
        """Pieces still to time -> samples missing."""
        repeats = self.data['repeats']
        return {k: repeats - len(self.data['entries'].get(k, {}).get('samples', []))
                for k in self.data['pieces']
                if len(self.data['entries'].get(k, {}).get('samples', [])) < repeats}

    def estimate_seconds(self, throughput_gmacs: float, overhead_ms: float) -> float:
        """Rough time of the remaining samples (warm-up included). A piece already timed (a
        resumed build) costs what its samples say; the others their multiply-adds at
        ``throughput_gmacs`` plus ``overhead_ms`` per call (pieces took 0.6x to 17x that on a
        2-core EPYC at 800x1333, the memory-bound ones at stride 4 the most)."""
        total = 0.0
        batch = self.settings['batch']
        per_run = 3 if self.settings['mode'] == 'train' else 1  # backward ~ 2x forward
        ends = self._pass_ends()
        for key, missing in self.todo().items():
            samples = self.data['entries'].get(key, {}).get('samples', [])
            if samples:
                run_ms = summarize(samples, 'median')
            else:
                piece = _piece_from_dict(self.data['pieces'][key])
                run_ms = overhead_ms + per_run * piece.macs(batch) / throughput_gmacs / 1e6
            passes_left = sum(len(samples) < end for end in ends)
            total += run_ms * (missing + self.data['warmup'] * passes_left)
        return total / 1e3

    def calibrate(self, probe_macs: float = 1e9) -> Tuple[float, float]:
        """(GMAC/s, overhead ms per call) of this device for :meth:`estimate_seconds`: the
        smallest piece timed once gives the overhead, and the largest convolution, attention
        and downsampling pieces below ``probe_macs`` the throughput (their mean)."""
        batch = self.settings['batch']
        pieces = sorted((p for p in self.pieces.values() if p.kind in ('block', 'dsm')),
                        key=lambda p: p.macs(batch))
        if not pieces:
            return 20.0, 0.5
        probes = []
        for wanted in (('block', ('DWConv', 'Conv')), ('block', ('SA', 'LSA')),
                       ('dsm', ('L', 'LG', 'G'))):
            fits = [p for p in pieces if p.kind == wanted[0] and p.op in wanted[1]
                    and p.macs(batch) <= probe_macs]
            if fits:
                probes.append(fits[-1])
        per_run = 3 if self.settings['mode'] == 'train' else 1  # backward ~ 2x forward

        def once(piece: Piece) -> float:
            step = make_step(build_piece(piece), make_input(piece, batch,
                                                            self.settings['device']),
                             self.settings)
            step()
            return Timer(self.settings)(step)
        with device_settings(self.settings):
            overhead = once(pieces[0])
            rates = [per_run * p.macs(batch) / 1e9 / max((once(p) - overhead) / 1e3, 1e-6)
                     for p in probes]
        return (statistics.mean(rates) if rates else 20.0), overhead

    def measure(self, path: Optional[str] = None, logger: Optional[MMLogger] = None,
                progress: Optional[Callable[[int, int], None]] = None,
                save_every_s: float = 2.0, stop_after: Optional[int] = None) -> None:
        """Time every piece not yet timed, in ``passes`` passes over all pieces (so that each
        median spans the whole build, not one moment of a shared machine); within a pass,
        groups of pieces get a warm-up run each, then interleaved rounds. Samples are saved to
        ``path`` at most every ``save_every_s`` and on any exit (Ctrl-C included).
        ``stop_after`` stops after that many samples (tests)."""
        logger = logger or MMLogger.get_current_instance()
        total = sum(self.todo().values())
        state = dict(done=0, start=time.perf_counter(), last_save=time.perf_counter(),
                     before=self.data.get('build_seconds', 0.0))

        def save(force: bool = False) -> None:
            now = time.perf_counter()
            if not force and now - state['last_save'] < save_every_s:
                return
            state['last_save'] = now
            self.data['build_seconds'] = state['before'] + now - state['start']
            if path is not None:
                self.save(path)

        def count() -> None:
            state['done'] += 1
            if progress is not None:
                progress(state['done'], total)
            if stop_after is not None and state['done'] >= stop_after:
                raise _StopBuild()
        try:
            with device_settings(self.settings):
                for wanted in self._pass_ends():
                    self._measure_pass(wanted, count, save)
        except _StopBuild:
            pass
        finally:
            self.data['complete'] = not self.todo()
            self.data['load_average_end'] = [round(v, 2) for v in os.getloadavg()]
            save(force=True)
        if self.data['complete']:
            logger.info(f'latency table complete: {len(self.data["entries"])} pieces, '
                        f'{self.data["build_seconds"]:.0f} s')

    def drifted(self, factor: float = DRIFT_FACTOR) -> Dict[str, Tuple[float, float]]:
        """Pieces whose passes disagree: key -> (fastest, slowest) median of one pass's samples
        in ms, where slowest / fastest exceeds ``factor``. A piece's passes are spread over
        the whole build (over days when it was resumed); on a shared 2-core VM at 800x1333,
        large depthwise blocks moved 1.5-2.8x between sessions, attention blocks a few per
        cent."""
        ends = self._pass_ends()
        found = {}
        for key, entry in self.data['entries'].items():
            samples = entry.get('samples', [])
            medians = [statistics.median(samples[start:end])
                       for start, end in zip([0] + ends, ends) if samples[start:end]]
            if len(medians) > 1 and min(medians) > 0 and max(medians) / min(medians) > factor:
                found[key] = (min(medians), max(medians))
        return found

    def _pass_ends(self) -> List[int]:
        """Samples every piece has once each pass is done, in order (the last: repeats)."""
        passes = self.data.get('passes', 1)
        return [math.ceil(self.data['repeats'] * index / passes)
                for index in range(1, passes + 1)]

    def _measure_pass(self, wanted: int, count: Callable[[], None],
                      save: Callable[[], None]) -> None:
        """Bring every piece to ``wanted`` samples."""
        settings, entries = self.settings, self.data['entries']
        todo = {k: wanted - len(entries.get(k, {}).get('samples', []))
                for k in self.data['pieces']}
        todo = {k: n for k, n in todo.items() if n > 0}
        for group in _groups([_piece_from_dict(self.data['pieces'][k]) for k in todo],
                             settings):
            steps = {}
            for piece in group:
                torch.manual_seed(0)
                steps[piece.key] = make_step(
                    build_piece(piece), make_input(piece, settings['batch'], settings['device']),
                    settings, input_grad=piece.kind != 'fixed')
                for _ in range(self.data['warmup']):
                    steps[piece.key]()
            timer = Timer(settings, queued=True)
            for _ in range(max(todo[k] for k in steps)):
                for key, step in steps.items():
                    entry = entries.setdefault(key, dict(samples=[]))
                    if len(entry['samples']) >= wanted:
                        continue
                    entry['samples'].append(round(timer(step), 6))
                    entry['ms'] = summarize(entry['samples'], self.statistic)
                    if timer.queued:
                        entry.setdefault('host_samples', []).append(round(timer.host_ms, 6))
                        entry['host_ms'] = summarize(entry['host_samples'], self.statistic)
                    count()
                save()
            del steps

    # ------------------------------------------------------------------ files
    def save(self, path: str) -> None:
        """Write the table as JSON (atomically)."""
        write_json_atomic(path, self.data)
        self.path = str(path)

    @classmethod
    def load(cls, path: str, complete: bool = True, **expected: Any) -> 'LatencyTable':
        """Read a table; ``expected`` settings (e.g. ``device='cpu', input_size=(800, 1333)``)
        are checked (:meth:`check_settings`). A partial table (a stopped build) loads only
        with ``complete=False``."""
        path = str(path)
        if not Path(path).is_file():
            raise LatencyError(f'latency table {path} does not exist; build it with '
                               f'tools/analysis_tools/latency_table.py build ... --out {path}')
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as exc:
            raise LatencyError(f'latency table {path} is not valid JSON: {exc}') from None
        table = cls(data, path)
        if (table.settings.get('device') == 'cpu'
                and OLD_HEAP in data.get('environment', {}).get('heap', '')):
            warnings.warn(f'latency table {path} was timed with glibc still mmapping blocks above '
                          '32 MiB (before 2026-12-06): pieces with such maps were timed up to 3.9x '
                          'too slow (800x1333 depthwise blocks); rebuild it for accurate '
                          'predictions', stacklevel=2)
        if complete and not data.get('complete'):
            raise LatencyError(f'latency table {path} is incomplete ({len(table.todo())} pieces '
                               f'not timed): continue its build with --resume')
        if expected:
            table.check_settings(**expected)
        return table

    def check_settings(self, **expected: Any) -> None:
        """Raise :class:`LatencySettingsError` if any given setting differs from the table's."""
        unknown = sorted(set(expected) - set(SETTING_KEYS))
        if unknown:
            raise LatencyError(f'unknown latency settings {unknown}; allowed: '
                               f'{list(SETTING_KEYS)}')
        full = dict(device=self.settings['device'], input_size=self.settings['input_size'],
                    batch=self.settings['batch'], dtype=self.settings['dtype'],
                    mode=self.settings['mode'], threads=self.settings['threads'])
        wanted = dict(full)
        for key, value in expected.items():
            wanted[key] = value
        if 'threads' not in expected and wanted['device'] != full['device']:
            wanted['threads'] = None
        wanted = check_settings(**wanted)
        diffs = [f'{k}={full[k]!r} (asked: {wanted[k]!r})' for k in SETTING_KEYS
                 if k in expected and full[k] != wanted[k]]
        if diffs:
            raise LatencySettingsError(
                f'latency table {self.path or ""} was measured for other settings: '
                f'{", ".join(diffs)}; build a table for the settings you want '
                f'(tools/analysis_tools/latency_table.py build)')

    @property
    def identity(self) -> Dict[str, Any]:
        """What a search log records about the table: path, content hash, settings, where."""
        digest = hashlib.sha256(json.dumps(self.data['entries'], sort_keys=True)
                                .encode()).hexdigest()[:16]
        env = self.data['environment']
        return dict(path=self.path, sha256=digest, **self.settings, statistic=self.statistic,
                    device_name=env.get('device_name'), machine=env.get('machine'),
                    torch=env.get('torch'))

    def describe(self) -> str:
        s = self.settings
        h, w = s['input_size']
        threads = f', {s["threads"]} thread(s)' if s['device'] == 'cpu' else ''
        return (f'{s["device"]}{threads} ({self.data["environment"].get("device_name")}), '
                f'{s["dtype"]}, batch {s["batch"]}, {h}x{w}, {s["mode"]}, '
                f'timer {self.data["timer"]}, {self.statistic} of the samples'
                + (', pieces pipelined (GPU and host times)' if self.pipelined else '')
                + (f', only {_sample_text(self.data["validation_sample"])}'
                   if self.data.get('validation_sample') else ''))

    # ------------------------------------------------------------------ prediction
    def plan(self, arch: Union[str, Mapping, ArchSpec]) -> Plan:
        return plan_arch(arch, tuple(self.settings['input_size']), self.layouts,
                         tuple(self.space.input_size))

    def infeasible_reason(self, arch: Union[str, Mapping, ArchSpec]) -> Optional[str]:
        """Why ``arch`` cannot run at the table's size, or None."""
        return self.plan(arch).infeasible

    def predict(self, arch: Union[str, Mapping, ArchSpec]) -> float:
        """Predicted latency of ``UniNet(arch=arch)`` in milliseconds (see the module
        docstring). Raises :class:`InfeasibleArchError` or :class:`MissingEntryError`."""
        plan = self.plan(arch)
        if plan.infeasible:
            raise InfeasibleArchError(f'infeasible at {self.describe()}: {plan.infeasible}')
        total = 0.0
        entries = self.data['entries']
        for key, count in plan.counts.items():
            entry = entries.get(key)
            if entry is None or len(entry.get('samples', [])) < self.data['repeats']:
                state = ('not timed yet (a stopped build; continue it with --resume)'
                         if key in self.data['pieces'] else
                         f'the table holds only {_sample_text(self.data["validation_sample"])}'
                         if self.data.get('validation_sample') else
                         'outside the space the table was built for')
                raise MissingEntryError(f'latency table {self.path or ""} has no entry '
                                        f'{key!r}: {state}')
            total += count * entry['ms']
        if self.pipelined:
            return pipelined_ms((entries[k]['ms'], entries[k]['host_ms']) for k in plan.order)
        return total

    def predict_bounds(self, arch: Union[str, Mapping, ArchSpec]) -> Dict[str, float]:
        """For a :attr:`pipelined` table, the two bounds its prediction lies between, for
        diagnosis: ``gpu_sum`` (every launch hidden) and ``slower_sum`` (the slower of GPU and
        host time per piece, nothing overlapping across pieces), beside ``pipelined``."""
        if not self.pipelined:
            raise LatencyError('predict_bounds needs a table with host times (a CUDA table)')
        entries = self.data['entries']
        order = self.plan(arch).order
        return dict(pipelined=self.predict(arch),
                    gpu_sum=sum(entries[k]['ms'] for k in order),
                    slower_sum=sum(max(entries[k]['ms'], entries[k]['host_ms']) for k in order))

    @property
    def pipelined(self) -> bool:
        """Whether pieces carry GPU and host times (CUDA tables since queued timing): then a
        network's latency is :func:`pipelined_ms` of its pieces in order, not their sum."""
        entries = self.data['entries']
        return bool(entries) and all('host_ms' in e for e in entries.values())

    def breakdown(self, arch: Union[str, Mapping, ArchSpec]) -> Dict[str, float]:
        """Milliseconds per piece key (times how often it runs)."""
        plan = self.plan(arch)
        return {k: c * self.data['entries'][k]['ms'] for k, c in plan.counts.items()}

    def missing_for(self, space: SearchSpace) -> List[str]:
        """Keys ``space``'s networks need that the table lacks (empty: it covers the space)."""
        needed = space_pieces(space, self.settings['input_size'], self.layouts)
        return sorted(k for k in needed if k not in self.data['entries'])


class _StopBuild(Exception):
    pass


def _groups(pieces: List[Piece], settings: Mapping[str, Any]) -> Iterable[List[Piece]]:
    """Pieces in groups timed together: by size, up to GROUP_SIZE and GROUP_BYTES of input."""
    group, size = [], 0
    for piece in sorted(pieces, key=lambda p: p.key):
        h, w = piece.hw
        channels = 3 if piece.kind == 'fixed' else piece.in_channels
        nbytes = 4 * settings['batch'] * channels * h * w * (3 if settings['mode'] == 'train'
                                                              else 1)
        if group and (len(group) >= GROUP_SIZE or size + nbytes > GROUP_BYTES):
            yield group
            group, size = [], 0
        group.append(piece)
        size += nbytes
    if group:
        yield group


def _piece_dict(piece: Piece) -> Dict[str, Any]:
    return dict(kind=piece.kind, op=piece.op, in_channels=piece.in_channels,
                channels=piece.channels, hw=list(piece.hw), layout=piece.layout,
                stride=piece.stride, expansion=piece.expansion, extra=piece.extra)


def _piece_from_dict(data: Mapping[str, Any]) -> Piece:
    return Piece(**dict(data, hw=tuple(data['hw'])))



# ---------------------------------------------------------------------------------------------
# Whole networks (validation)
# ---------------------------------------------------------------------------------------------
def write_json_atomic(path: Union[str, Path], data: Mapping[str, Any]) -> None:
    """Write ``data`` as JSON to ``path`` whole or not at all (a kill while writing keeps the
    old file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + '.tmp')
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def measure_networks(archs: Sequence[Union[str, Mapping]], settings: Mapping[str, Any],
                     mlp_input_size: Optional[Sequence[int]] = None, warmup: int = 1,
                     repeats: int = 5, progress: Optional[Callable[[int, int], None]] = None,
                     statistic: str = 'median',
                     samples: Optional[List[List[float]]] = None,
                     on_sample: Optional[Callable[[List[List[float]]], None]] = None
                     ) -> List[Dict[str, Any]]:
    """Time whole ``UniNet(arch=...)`` backbones with a table's settings, interleaved round by
    round; returns ``dict(ms=statistic of the samples, samples)`` per arch.

    ``samples`` continues a stopped measurement: one list of milliseconds per arch, taken
    before (it is extended in place); networks that already have ``repeats`` samples are not
    built again. ``on_sample(samples)`` is called after every new sample (to save progress).
    All networks of a round are kept in memory (backbones are small)."""
    from ..models.backbones.uninet import UniNet

    settings = dict(settings)
    size = tuple(settings['input_size'])
    samples = [[] for _ in archs] if samples is None else samples
    if len(samples) != len(archs):
        raise ValueError(f'{len(samples)} sample lists for {len(archs)} networks')
    with device_settings(settings):
        steps: Dict[int, Callable[[], Any]] = {}
        for i, arch in enumerate(archs):
            if len(samples[i]) >= repeats:
                continue
            torch.manual_seed(0)
            model = UniNet(arch=arch, input_size=tuple(mlp_input_size or size))
            x = torch.randn(settings['batch'], 3, *size, device=settings['device'])
            step = make_step(model, x, settings, input_grad=False)
            for _ in range(warmup):
                step()
            steps[i] = step
        timer = Timer(settings)
        total = repeats * len(archs)
        done = sum(min(len(s), repeats) for s in samples)
        for round_index in range(repeats):
            for i, step in steps.items():
                if len(samples[i]) > round_index:
                    continue
                samples[i].append(timer(step))
                done += 1
                if on_sample is not None:
                    on_sample(samples)
                if progress is not None:
                    progress(done, total)
    return [dict(ms=summarize(s[:repeats], statistic), samples=s[:repeats]) for s in samples]


# ---------------------------------------------------------------------------------------------
# Statistics of a validation
# ---------------------------------------------------------------------------------------------
def _ranks(values: Sequence[float]) -> List[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (Pearson of the ranks; ties get their mean rank)."""
    if len(x) != len(y) or len(x) < 2:
        raise ValueError('spearman needs two sequences of the same length >= 2')
    rx, ry = _ranks(x), _ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx = math.sqrt(sum((a - mx) ** 2 for a in rx))
    vy = math.sqrt(sum((b - my) ** 2 for b in ry))
    return cov / (vx * vy) if vx and vy else float('nan')


def error_stats(predicted: Sequence[float], measured: Sequence[float],
                tolerance: float = 0.10) -> Dict[str, float]:
    """Share of predictions within +-tolerance, median absolute relative error, Spearman."""
    rel = [abs(p - m) / m for p, m in zip(predicted, measured)]
    return dict(within=sum(r <= tolerance for r in rel) / len(rel),
                median_error=statistics.median(rel),
                spearman=spearman(predicted, measured) if len(rel) > 1 else float('nan'),
                count=len(rel))


def fit_scale(predictor: Sequence[float], measured: Sequence[float]) -> float:
    """k of ``latency = k * predictor`` (k of the FLOPs baseline ``k * FLOPs``): the median of
    measured / predictor, fitted on the same architectures it is then judged on."""
    return statistics.median(m / f for m, f in zip(measured, predictor))
