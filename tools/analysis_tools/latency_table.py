"""Build and validate a latency table of a search space on this machine's device.

    # measure every piece of the space's networks (progress shown; Ctrl-C and --resume later)
    python tools/analysis_tools/latency_table.py build CONFIG --device cpu --input-size 800x1333 \\
        --batch 1 [--dtype fp32] [--mode forward] [--threads N] --out FILE [--resume]
    #   ... --validation-sample N --seed S: only the pieces validate --num-archs N --seed S needs
    # predicted vs measured for N sampled architectures (and UniNet-B0..B3 where covered),
    # against the FLOPs baseline latency = k x FLOPs (with --out: Ctrl-C and --resume later)
    python tools/analysis_tools/latency_table.py validate CONFIG --table FILE --num-archs 30 \\
        --seed 0 [--out RESULT.json [--resume]] [--flops-from EARLIER_RESULT.json]
    # the top architectures of finished searches, measured whole with the table's settings
    python tools/analysis_tools/latency_table.py compare --table FILE --runs DIR1 DIR2 ...

CONFIG is a search config (``configs/search/*.py``); its ``search_space`` is what the table
covers. See ``uninet_mm/search/latency.py`` for what is measured and how.
"""
import argparse
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch
from mmengine.config import Config, DictAction

from uninet_mm.search.latency import (DRIFT_FACTOR, STATISTICS, LatencyError, LatencyTable,
                                      error_stats, fit_scale, measure_networks,
                                      sample_feasible_archs, write_json_atomic)
from uninet_mm.search.space import SearchSpace
from uninet_mm.utils.plain import to_plain
from uninet_mm.utils.tools_support import parse_size

PUBLISHED = ('b0', 'b1', 'b2', 'b3')


def load_space(config: str, cfg_options: Optional[dict]) -> SearchSpace:
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if 'search_space' not in cfg:
        raise LatencyError(f'{config} has no search_space; pass a search config '
                           f'(configs/search/*.py)')
    return SearchSpace.from_config(cfg.search_space.to_dict())


def fmt_seconds(seconds: float) -> str:
    if seconds < 120:
        return f'{seconds:.0f} s'
    if seconds < 7200:
        return f'{seconds / 60:.1f} min'
    return f'{seconds / 3600:.1f} h'


class Progress:
    """Prints ``done/total`` with the time left at most every ``interval`` seconds: from
    ``seconds_left()`` where given (runs differ 1000x in length, so their count says little),
    else extrapolated from the runs so far."""

    def __init__(self, what: str, interval: float = 10.0,
                 seconds_left: Optional[Callable[[], float]] = None):
        self.what, self.interval, self.seconds_left = what, interval, seconds_left
        self.start = time.perf_counter()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter() - self.start
        if done < total and now - self.last < self.interval:
            return
        self.last = now
        if self.seconds_left is not None:
            eta = self.seconds_left()  # may include work after the runs (FLOPs counts)
        else:
            eta = now / done * (total - done) if done else float('nan')
        print(f'  {self.what} {done}/{total} ({100 * done / total:.0f} %), '
              f'{fmt_seconds(now)} so far, about {fmt_seconds(eta)} left', flush=True)


def report_drift(table: LatencyTable) -> None:
    """Says which pieces took much longer in one pass of the build than in another."""
    drifted = table.drifted()
    if not drifted:
        return
    # the ones that move a prediction most first (tiny pieces drift by noise alone)
    worst = ', '.join(f'{key} {fast:.4g}-{slow:.4g} ms' for key, (fast, slow) in
                      sorted(drifted.items(), key=lambda item: item[1][0] - item[1][1])[:3])
    print(f'  note: {len(drifted)} of {len(table.data["entries"])} pieces took over '
          f'{DRIFT_FACTOR:g}x longer in one pass of the build than in another (most time: '
          f'{worst}): their time depends on the state of the machine (other jobs, memory '
          f'bandwidth, a resume on another day); each piece keeps the {table.statistic} of its '
          f'samples. Validate the table, and build it again in one sitting on a quiet machine '
          f'if its errors are large',
          flush=True)


# ---------------------------------------------------------------------------------------------
def build(args: argparse.Namespace) -> int:
    space = load_space(args.config, args.cfg_options)
    table = LatencyTable.plan_build(space, device=args.device, input_size=args.input_size,
                                    batch=args.batch, dtype=args.dtype, mode=args.mode,
                                    threads=args.threads, extra_archs=args.extra_archs,
                                    warmup=args.warmup, repeats=args.repeats,
                                    passes=args.passes, statistic=args.statistic)
    if args.validation_sample is not None:
        sampled, _, _ = sample_feasible_archs(table, space, args.validation_sample, args.seed)
        table.keep_pieces_of(sampled + list(PUBLISHED),
                             dict(num_archs=args.validation_sample, seed=args.seed))
    out = Path(args.out)
    if out.exists():
        if not args.resume:
            print(f'{out} exists; pass --resume to continue its build or choose another --out',
                  file=sys.stderr)
            return 2
        table = table.continue_from(LatencyTable.load(str(out), complete=False))
    print(f'latency table for {args.config}: {table.describe()}')
    print(f'  search space: {space!r}')
    todo = table.todo()
    pieces = len(table.data['pieces'])
    samples = sum(todo.values())
    print(f'  {pieces} pieces, {len(todo)} still to time: {samples} timed runs '
          f'({table.statistic} of '
          f'{table.data["repeats"]} per piece, in {table.data["passes"]} passes over all pieces, '
          f'+{table.data["warmup"]} warm-up per piece and pass)')
    if not todo:
        table.data['complete'] = True
        table.save(str(out))
        print(f'nothing left to measure; {out} is complete')
        report_drift(table)
        return 0
    gmacs, overhead = table.calibrate()
    estimate = table.estimate_seconds(gmacs, overhead)
    started = sum(bool(table.data['entries'].get(k, {}).get('samples')) for k in todo)
    macs = (f'multiply-adds at {gmacs:.1f} GMAC/s and {overhead:.2f} ms per call, probed just '
            f'now')
    basis = (f'the pieces\' {macs}' if not started else
             'the samples taken so far' if started == len(todo) else
             f'the samples taken so far for {started} pieces, the others\' {macs}')
    print(f'  estimated time: {fmt_seconds(estimate)} (from {basis}; a rough guide)',
          flush=True)
    try:
        table.measure(path=str(out), progress=Progress(
            'timed', seconds_left=lambda: table.estimate_seconds(gmacs, overhead)))
    except KeyboardInterrupt:
        print(f'stopped: {len(table.todo())} pieces left, progress kept in {out}; continue with '
              f'the same command and --resume', file=sys.stderr)
        return 130
    print(f'done: {out} ({pieces} pieces, {fmt_seconds(table.data["build_seconds"])} of '
          f'measuring in all)')
    report_drift(table)
    return 0


# ---------------------------------------------------------------------------------------------
def arch_text(arch: Any) -> str:
    if isinstance(arch, str):
        return arch.upper()
    return ' '.join(f'{s["gop"]}/{s["dsm"]}/e{s["expansion"]:g}/c{s["channels"]}/r{s["repeats"]}'
                    for s in arch['stages'][1:])


def count_flops(arch: Any, settings: Dict[str, Any], mlp_size) -> float:
    """Multiply-adds of the backbone (the project's counter, the paper's way) at the table's
    batch and size, counted on the table's device (tracing at 800x1333 on a CPU takes minutes
    per network when attention runs at stride 4)."""
    from uninet_mm.models.backbones.uninet import UniNet
    from uninet_mm.utils.flops import model_complexity

    device = settings['device']
    model = UniNet(arch=arch, input_size=tuple(mlp_size)).eval().to(device)
    with torch.no_grad():
        return float(model_complexity(
            model, torch.randn(settings['batch'], 3, *settings['input_size'],
                               device=device))['flops'])


def earlier_flops(path: str, archs: List[Any], settings: Dict[str, Any]
                  ) -> List[Optional[float]]:
    """The FLOPs counts of ``archs`` that an earlier validation (``validate --out``) made at
    the same input size and batch (None where it has none): counting them again takes minutes
    per network at detection sizes on a CPU. Raises LatencyError for a file that is not one."""
    try:
        earlier = json.loads(Path(path).read_text())
        identity, rows = earlier['identity'], earlier['rows']
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LatencyError(f'--flops-from {path}: not a finished validation '
                           f'(validate --out): {exc!r}') from None
    for key in ('input_size', 'batch'):
        if identity.get(key) != settings[key]:
            raise LatencyError(f'--flops-from {path} counted FLOPs at {key} '
                               f'{identity.get(key)!r}, not {settings[key]!r}')
    counted = {json.dumps(r['arch'], sort_keys=True): r['flops'] for r in rows}
    return [counted.get(json.dumps(a, sort_keys=True)) for a in archs]  # tuples dump as lists


def normalized(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples become lists), to compare with a saved file."""
    return json.loads(json.dumps(value))


def validate(args: argparse.Namespace) -> int:
    if args.resume and not args.out:
        print('--resume needs --out, the file the stopped validation was saved to',
              file=sys.stderr)
        return 2
    space = load_space(args.config, args.cfg_options)
    table = LatencyTable.load(args.table)
    if args.statistic is not None:
        table.use_statistic(args.statistic)
    sample = table.data.get('validation_sample')
    if sample and sample != dict(num_archs=args.num_archs, seed=args.seed):
        print(f'{args.table} holds only the pieces of the networks that validate --num-archs '
              f'{sample["num_archs"]} --seed {sample["seed"]} draws; validate with those, or '
              f'build a full table', file=sys.stderr)
        return 2
    if sample and table.data['space'] != to_plain(space.config):
        print(f'{args.table} was built for another search space than {args.config}\'s',
              file=sys.stderr)
        return 2
    missing = [] if sample else table.missing_for(space)
    if missing:
        print(f'{args.table} does not cover the search space of {args.config}: {len(missing)} '
              f'pieces missing, e.g. {missing[0]!r}; build a table for this config',
              file=sys.stderr)
        return 2
    settings = table.settings
    print(f'table {args.table}: {table.describe()}, measured on '
          f'{table.data["environment"]["machine"]} ({table.data["environment"]["cpu"]}, torch '
          f'{table.data["environment"]["torch"]}), built in '
          f'{fmt_seconds(table.data["build_seconds"])}')
    report_drift(table)
    sampled, infeasible, draws = sample_feasible_archs(table, space, args.num_archs, args.seed)
    if infeasible:
        print(f'  {sum(infeasible.values())} of {draws} drawn architectures are infeasible at '
              f'this size and were skipped: ' + '; '.join(f'{n} x {r}'
                                                           for r, n in infeasible.items()))
    published, not_covered = [], {}
    for name in PUBLISHED:
        try:
            table.predict(name)
            published.append(name)
        except LatencyError as exc:
            not_covered[name] = str(exc)
    archs = sampled + published
    plan = normalized(dict(table=table.identity, space=repr(space), seed=args.seed,
                           num_archs=len(sampled), repeats=args.repeats, warmup=args.warmup,
                           statistic=table.statistic, archs=archs))
    state = dict(samples=[[] for _ in archs], flops=[None] * len(archs), measure_seconds=0.0)
    out = Path(args.out) if args.out else None
    if out is not None and out.exists():
        previous = json.loads(out.read_text())
        if not args.resume:
            if previous.get('complete') is False:
                print(f'{out} holds a stopped validation; pass --resume to continue it or choose '
                      f'another --out', file=sys.stderr)
                return 2
        else:
            changed = sorted(k for k in plan if previous.get('plan', {}).get(k) != plan[k])
            if changed:
                print(f'{out} was started with other settings ({", ".join(changed)} differ); '
                      f'continue it with the same table, config, --seed, --num-archs, --repeats '
                      f'and --warmup, or choose another --out', file=sys.stderr)
                return 2
            state = previous['progress']
            if previous.get('complete') and 'load_average_before' not in state:
                # written before progress kept the load: the report's own numbers stand
                load = previous['load_average']
                state.update(load_average_before=load[:3], load_average_after=load[3:])
            print(f'continuing {out}: {sum(map(len, state["samples"]))} of '
                  f'{len(archs) * args.repeats} timed runs done')
    elif args.resume:
        print(f'--resume: {out} does not exist', file=sys.stderr)
        return 2
    if args.flops_from:  # fills the counts a (resumed) validation still lacks
        earlier = earlier_flops(args.flops_from, archs, settings)
        taken = sum(f is None and e is not None for f, e in zip(state['flops'], earlier))
        state['flops'] = [e if f is None else f for f, e in zip(state['flops'], earlier)]
        print(f'  FLOPs of {taken} of {len(archs)} networks taken from {args.flops_from}')
    last_save = [0.0]

    def save_progress(force: bool = False) -> None:
        if out is None or (not force and time.monotonic() - last_save[0] < 2.0):
            return
        last_save[0] = time.monotonic()
        write_json_atomic(out, dict(complete=False, plan=plan, progress=state))

    start = time.perf_counter()
    seconds_before = state['measure_seconds']
    # the load around the sitting(s) that timed; a finished validation reported again keeps it
    state.setdefault('load_average_before', [round(v, 2) for v in os.getloadavg()])

    def runs_done() -> int:
        return sum(map(len, state['samples'])) + sum(f is not None for f in state['flops'])
    timed_before = runs_done()
    print(f'measuring {len(archs)} whole networks ({args.warmup} warm-up, {args.repeats} '
          f'interleaved rounds)...', flush=True)
    # Each unfinished network runs its warm-up and missing rounds, and once more to count FLOPs.
    runs_left = [(args.warmup + args.repeats - len(done) if len(done) < args.repeats else 0)
                 + (flops is None) for done, flops in zip(state['samples'], state['flops'])]
    predicted = [table.predict(a) for a in archs]
    estimate = sum(n * p for n, p in zip(runs_left, predicted)) / 1e3
    print(f'  estimated time: {fmt_seconds(estimate)} ({sum(runs_left)} runs of the networks, '
          f'as the table predicts them; a rough guide)', flush=True)

    def seconds_left() -> float:  # the rounds and FLOPs counts still to run (warm-ups are done)
        return sum(((args.repeats - len(done) if len(done) < args.repeats else 0) + (f is None))
                   * (statistics.median(done) if done else p)
                   for done, f, p in zip(state['samples'], state['flops'], predicted)) / 1e3

    try:
        measured = measure_networks(archs, settings, mlp_input_size=space.input_size,
                                    warmup=args.warmup, repeats=args.repeats,
                                    progress=Progress('timed', seconds_left=seconds_left),
                                    statistic=table.statistic,
                                    samples=state['samples'],
                                    on_sample=lambda _: save_progress())
        if runs_done() > timed_before:  # a finished validation reported again keeps its time
            state['measure_seconds'] = seconds_before + time.perf_counter() - start
        threads = torch.get_num_threads()
        if settings['threads']:
            torch.set_num_threads(settings['threads'])
        uncounted = [i for i, f in enumerate(state['flops']) if f is None]
        counting = Progress('FLOPs counted', seconds_left=seconds_left)
        for n, i in enumerate(uncounted, 1):  # minutes per network at detection sizes on a CPU
            state['flops'][i] = count_flops(archs[i], settings, space.input_size)
            save_progress()
            counting(n, len(uncounted))
        torch.set_num_threads(threads)
    except KeyboardInterrupt:
        state['measure_seconds'] = seconds_before + time.perf_counter() - start
        if out is None:
            print('stopped (pass --out to be able to continue a stopped validation)',
                  file=sys.stderr)
        else:
            save_progress(force=True)
            print(f'stopped: progress kept in {out}; continue with the same command and '
                  f'--resume', file=sys.stderr)
        return 130
    seconds = state['measure_seconds']
    flops = state['flops']
    if 'load_average_after' not in state or runs_done() > timed_before:
        state['load_average_after'] = [round(v, 2) for v in os.getloadavg()]
    load = state['load_average_before'] + state['load_average_after']
    rows = []
    for arch, result, f in zip(archs, measured, flops):
        samples = result['samples']
        half = len(samples) // 2
        repeat_diff = (abs(statistics.median(samples[:half]) - statistics.median(samples[half:]))
                       / result['ms'] if half else float('nan'))
        rows.append(dict(arch=arch, name=arch if isinstance(arch, str) else None,
                         predicted_ms=table.predict(arch), measured_ms=result['ms'],
                         samples_ms=samples, flops=f, repeat_diff=repeat_diff))
    n = len(sampled)
    k = fit_scale([r['flops'] for r in rows[:n]], [r['measured_ms'] for r in rows[:n]])
    for row in rows:
        row['flops_ms'] = k * row['flops']
    print(f'\n{"#":>3} {"GMAC":>8} {"measured":>10} {"table":>10} {"err":>7} {"k*FLOPs":>10} '
          f'{"err":>7}  architecture (stages 1-5: GOP/DSM/expansion/channels/repeats)')
    for i, row in enumerate(rows):
        label = f'{i:>3}' if row['name'] is None else f'{row["name"].upper():>3}'
        print(f'{label} {row["flops"] / 1e9:8.2f} {row["measured_ms"]:10.2f} '
              f'{row["predicted_ms"]:10.2f} '
              f'{100 * (row["predicted_ms"] / row["measured_ms"] - 1):+6.1f}% '
              f'{row["flops_ms"]:10.2f} {100 * (row["flops_ms"] / row["measured_ms"] - 1):+6.1f}%'
              f'  {arch_text(row["arch"])}')
    table_stats = error_stats([r['predicted_ms'] for r in rows[:n]],
                              [r['measured_ms'] for r in rows[:n]])
    flops_stats = error_stats([r['flops_ms'] for r in rows[:n]],
                              [r['measured_ms'] for r in rows[:n]])
    repeat = [r['repeat_diff'] for r in rows]
    print(f'\n{n} sampled architectures, {table.describe()}:')
    print(f'  {"":24} {"within +-10%":>13} {"median |err|":>13} {"Spearman":>9}')
    for name, stats in (('latency table', table_stats),
                        (f'k x FLOPs (k={k * 1e9:.2f} ms/GMAC)', flops_stats)):
        print(f'  {name:24} {100 * stats["within"]:12.1f}% {100 * stats["median_error"]:12.2f}% '
              f'{stats["spearman"]:9.3f}')
    bounds_stats = {}
    if table.pipelined:  # what the pipelining does, against its two bounds
        bounds = [table.predict_bounds(r['arch']) for r in rows[:n]]
        for key, name in (('gpu_sum', 'GPU times summed'),
                          ('slower_sum', 'max(GPU, host) summed')):
            bounds_stats[key] = error_stats([b[key] for b in bounds],
                                            [r['measured_ms'] for r in rows[:n]])
            stats = bounds_stats[key]
            print(f'  {name:24} {100 * stats["within"]:12.1f}% '
                  f'{100 * stats["median_error"]:12.2f}% {stats["spearman"]:9.3f}')
    ratio = table_stats['median_error'] / flops_stats['median_error']
    print(f'  median error of the table / of FLOPs: {ratio:.2f}')
    mix_stats = mix_split(table, rows[:n])
    print(f'  by the largest piece\'s share of a prediction (at >= {DOMINANT:.0%} one operator '
          f'decides the time, and k x FLOPs, fitted on these networks, scales it):')
    for name, stats in mix_stats.items():
        mine, flops_only = stats['table'], stats['flops']
        print(f'    {name:22} {stats["count"]:3d} networks: table {100 * mine["within"]:.1f}% '
              f'within +-10%, median error {100 * mine["median_error"]:.2f}%; FLOPs '
              f'{100 * flops_only["within"]:.1f}%, {100 * flops_only["median_error"]:.2f}%')
    print(f'  repeatability (median of the first vs the second half of the rounds, same '
          f'network): median {100 * statistics.median(repeat):.2f}%, max {100 * max(repeat):.2f}%')
    scaled = scaled_table_stats(rows[:n])
    print(f'  the table x c, one scale fitted on these networks as k is (a diagnostic; c = '
          f'{scaled["scale"]:.3f}: a change of the machine\'s speed since the build, or a bias '
          f'the table shares across networks): '
          f'{100 * scaled["stats"]["within"]:.1f}% within +-10%, median error '
          f'{100 * scaled["stats"]["median_error"]:.2f}%')
    for name, reason in not_covered.items():
        print(f'  {name.upper()}: not predicted: {reason}')
    print(f'  whole networks measured in {fmt_seconds(seconds)}; load average (1, 5, 15 min) '
          f'before {load[:3]}, after {load[3:]}; table built at {table.data["environment"].get("load_average")} '
          f'.. {table.data.get("load_average_end")}')
    if args.out:
        write_json_atomic(Path(args.out), dict(
            complete=True, plan=plan, progress=state,
            table=args.table, identity=table.identity, config=args.config, seed=args.seed,
            num_archs=n, rows=rows, table_stats=table_stats, flops_stats=flops_stats,
            bounds_stats=bounds_stats, mix_stats=mix_stats, scaled_table=scaled,
            flops_k_ms_per_mac=k, infeasible_skipped=infeasible, not_covered=not_covered,
            measure_seconds=seconds, load_average=load,
            environment=table.data['environment']))
        print(f'  written to {args.out}')
    return 0


DOMINANT = 0.5  # a network whose largest piece is at least this share of its prediction


def mix_split(table: LatencyTable, rows: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """Table and FLOPs errors over the networks one piece dominates (its share of the
    prediction >= DOMINANT) and over the others. At 800x1333 most sampled networks spend most
    of their time in one attention DSM at stride 4, which FLOPs scale well; the others are
    where a table earns its place."""
    groups: Dict[str, List[Dict[str, Any]]] = {}
    for row in rows:
        pieces = table.breakdown(row['arch'])
        share = max(pieces.values()) / sum(pieces.values())
        groups.setdefault(f'largest piece >= {DOMINANT:.0%}' if share >= DOMINANT else
                          f'largest piece < {DOMINANT:.0%}', []).append(row)
    return {name: dict(count=len(group),
                       table=error_stats([r['predicted_ms'] for r in group],
                                         [r['measured_ms'] for r in group]),
                       flops=error_stats([r['flops_ms'] for r in group],
                                         [r['measured_ms'] for r in group]))
            for name, group in sorted(groups.items())}


def scaled_table_stats(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The table given the FLOPs baseline's advantage: one scale c fitted on the measured
    networks (``scale``, the median of measured / predicted, as k is fitted) and the errors
    of c x table (``stats``). c < 1: the networks ran faster than predicted, all alike (the
    machine sped up since the build, or the table is biased); the errors left are how the
    table ranks and spaces the networks."""
    predicted = [r['predicted_ms'] for r in rows]
    measured = [r['measured_ms'] for r in rows]
    scale = fit_scale(predicted, measured)
    return dict(scale=scale, stats=error_stats([scale * p for p in predicted], measured))


# ---------------------------------------------------------------------------------------------
def compare(args: argparse.Namespace) -> int:
    """Measure the top architectures of search runs (``top*.json``) whole, side by side."""
    table = LatencyTable.load(args.table)
    settings = table.settings
    runs = []
    for run in args.runs:
        tops = sorted(Path(run).glob('top*.json'))
        if not tops:
            print(f'{run} has no top*.json (a finished search leaves one)', file=sys.stderr)
            return 2
        runs.append((run, json.loads(tops[0].read_text())))
    archs, where = [], []
    for r, (run, top) in enumerate(runs):
        for entry in top:
            reason = table.infeasible_reason(entry['arch'])
            where.append((r, entry, reason))
            if reason is None:
                archs.append(entry['arch'])
    print(f'measuring {len(archs)} architectures whole: {table.describe()}', flush=True)
    measured = iter(measure_networks(archs, settings, mlp_input_size=table.space.input_size,
                                     warmup=args.warmup, repeats=args.repeats,
                                     progress=Progress('timed'), statistic=table.statistic))
    rows = []
    for r, entry, reason in where:
        row = dict(run=runs[r][0], rank=entry['rank'], trial=entry['trial'],
                   accuracy=entry['accuracy'], proxy_flops=entry['flops'],
                   reward=entry['reward'], cost=entry.get('cost', 'flops'), arch=entry['arch'],
                   infeasible=reason)
        if reason is None:
            result = next(measured)
            row.update(measured_ms=result['ms'], samples_ms=result['samples'],
                       predicted_ms=table.predict(entry['arch']),
                       flops=count_flops(entry['arch'], settings, table.space.input_size))
        rows.append(row)
    h, w = settings['input_size']
    print(f'\n{"run":30} {"#":>2} {"acc":>6} {"proxy MFLOPs":>12} {f"GMAC@{h}x{w}":>13} '
          f'{"measured ms":>12} {"table ms":>9}')
    for row in rows:
        if row['infeasible']:
            tail = f'{"infeasible":>13}  ({row["infeasible"].split(":")[0]})'
        else:
            tail = (f'{row["flops"] / 1e9:13.2f} {row["measured_ms"]:12.1f} '
                    f'{row["predicted_ms"]:9.1f}')
        print(f'{Path(row["run"]).name:30} {row["rank"]:>2} {row["accuracy"]:6.3f} '
              f'{row["proxy_flops"] / 1e6:12.2f} {tail}')
    for run, _ in runs:
        mine = [r for r in rows if r['run'] == run and not r['infeasible']]
        if mine:
            print(f'{Path(run).name}: median measured {statistics.median(r["measured_ms"] for r in mine):.1f} ms, '
                  f'mean accuracy {statistics.mean(r["accuracy"] for r in mine):.3f} over '
                  f'{len(mine)} feasible of {sum(r["run"] == run for r in rows)}')
    if args.out:
        Path(args.out).write_text(json.dumps(dict(identity=table.identity, rows=rows), indent=1))
    return 0


# ---------------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__)
    sub = parser.add_subparsers(dest='command', required=True)
    b = sub.add_parser('build', help='measure a latency table')
    b.add_argument('config', help='search config whose search_space the table covers')
    b.add_argument('--device', choices=('cpu', 'cuda'), default='cpu')
    b.add_argument('--input-size', type=parse_size, required=True, help='HxW, e.g. 800x1333')
    b.add_argument('--batch', type=int, default=1)
    b.add_argument('--dtype', choices=('fp32', 'bf16', 'fp16'), default='fp32',
                   help='bf16/fp16: torch.autocast')
    b.add_argument('--mode', choices=('forward', 'train'), default='forward',
                   help='forward: eval inference; train: forward + backward')
    b.add_argument('--threads', type=int, default=None,
                   help='CPU threads (default 1; timed with the thread\'s CPU time at 1, with '
                   'the wall clock above)')
    b.add_argument('--out', required=True, help='table JSON to write')
    b.add_argument('--resume', action='store_true', help='continue the stopped build in --out')
    b.add_argument('--repeats', type=int, default=6,
                   help='timed runs per piece (summarised by --statistic)')
    b.add_argument('--statistic', choices=STATISTICS, default=None,
                   help='what a piece\'s timed runs are summarised by (default: min in train '
                   'mode, where samples are skewed upwards; median in forward mode)')
    b.add_argument('--passes', type=int, default=3,
                   help='passes over all pieces, each adding repeats/passes samples (spreads '
                   'every piece\'s samples over the whole build)')
    b.add_argument('--warmup', type=int, default=1, help='untimed runs per piece first')
    b.add_argument('--extra-archs', nargs='*', default=['b0', 'b1', 'b2', 'b3'],
                   help='published networks to cover too (default: b0 b1 b2 b3)')
    b.add_argument('--validation-sample', type=int, default=None, metavar='N',
                   help='time only the pieces of the N networks that validate --num-archs N '
                   '--seed S draws (and of B0..B3): checks how well this device is predicted '
                   'in a fraction of a full build\'s time; such a table validates, but does not '
                   'search')
    b.add_argument('--seed', type=int, default=0, help='with --validation-sample')
    b.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config settings, e.g. search_space.gops="[SA,LSA,Conv,DWConv]"')
    v = sub.add_parser('validate', help='predicted vs measured whole networks')
    v.add_argument('config')
    v.add_argument('--table', required=True)
    v.add_argument('--num-archs', type=int, default=30)
    v.add_argument('--seed', type=int, default=0)
    v.add_argument('--repeats', type=int, default=6,
                   help='timed runs per network (summarised like the table\'s pieces; halves '
                   'compared for repeatability)')
    v.add_argument('--statistic', choices=STATISTICS, default=None,
                   help='summarise the table\'s stored samples and the networks\' by this '
                   'instead of the table\'s own statistic (nothing is measured again)')
    v.add_argument('--warmup', type=int, default=1)
    v.add_argument('--out', default=None,
                   help='write all numbers to this JSON file (progress is kept there while '
                        'measuring)')
    v.add_argument('--resume', action='store_true',
                   help='continue the stopped validation in --out without timing anything twice')
    v.add_argument('--flops-from', default=None, metavar='RESULT.json',
                   help='take the FLOPs counts of networks an earlier validation (--out) counted '
                   'at the same size and batch instead of counting them again')
    v.add_argument('--cfg-options', nargs='+', action=DictAction)
    c = sub.add_parser('compare', help='measure the top architectures of search runs whole')
    c.add_argument('--table', required=True, help='the settings to measure with')
    c.add_argument('--runs', nargs='+', required=True, help='search work dirs')
    c.add_argument('--repeats', type=int, default=6)
    c.add_argument('--warmup', type=int, default=1)
    c.add_argument('--out', default=None)
    return parser.parse_args(argv)


def stop_like_ctrl_c(signum, frame) -> None:
    """SIGTERM (``kill``, ``timeout``, a batch system ending the job) stops a build or a
    validation as Ctrl-C does: the progress is kept for ``--resume``. (A shell starting the
    tool in the background, ``nohup ... &``, ignores SIGINT for it, so ``kill`` is the way.)"""
    raise KeyboardInterrupt(f'signal {signum}')


def main(argv=None) -> int:
    args = parse_args(argv)
    previous_handler = signal.signal(signal.SIGTERM, stop_like_ctrl_c)
    try:
        return dict(build=build, validate=validate, compare=compare)[args.command](args)
    except LatencyError as exc:
        print(f'latency table error: {exc}', file=sys.stderr)
        return 2
    finally:  # main() called in a process of its own caller (tests) leaves it as it was
        signal.signal(signal.SIGTERM, previous_handler)


if __name__ == '__main__':
    sys.exit(main())
