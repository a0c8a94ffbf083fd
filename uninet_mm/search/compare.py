"""Compare searches: several work dirs (searchers x seeds) side by side.

Every run is read from its ``search_log.jsonl``; its searcher from the records' ``searcher``
field (logs written before the searchers existed: ``ppo``). Runs of one searcher are its seeds.
:func:`compare_searches` writes into an output folder:

* ``compare.png``: best-so-far reward and running mean reward (last ``window`` trials)
  against the trial index, per searcher the mean over its runs with the min-max band, and the
  accuracy-cost Pareto fronts of the searchers overlaid (each front over all of its runs).
* ``compare.csv`` and ``compare.md``: per searcher the runs, trials per run, the best reward
  (mean +- std over runs), the mean reward of each run's last ``window`` trials (mean +- std)
  and the trials' summed seconds per run (the time spent in trials, mean over runs; waits
  between a kill and its resume are not in it).

Failed trials count with the reward they were logged with (``failure_reward``) and are left
out when it is None.
"""
from __future__ import annotations

import csv
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .records import read_log
from .report import pareto_records, record_cost

#: Trials in the running mean and in the "last trials" column.
DEFAULT_WINDOW = 30


@dataclass
class SearchRun:
    """One work dir's log."""
    work_dir: str
    searcher: str
    records: List[Dict[str, Any]]

    @property
    def rewards(self) -> List[Optional[float]]:
        """Reward of every trial in trial order (None: failed and left out)."""
        return [r.get('reward') for r in sorted(self.records, key=lambda r: r['trial'])]

    def best_so_far(self) -> np.ndarray:
        best, out = -math.inf, []
        for reward in self.rewards:
            if reward is not None:
                best = max(best, reward)
            out.append(best if best > -math.inf else np.nan)
        return np.array(out, dtype=float)

    def running_mean(self, window: int) -> np.ndarray:
        values = np.array([np.nan if r is None else r for r in self.rewards], dtype=float)
        out = np.full(len(values), np.nan)
        for i in range(len(values)):
            chunk = values[max(0, i - window + 1):i + 1]
            if np.isfinite(chunk).any():
                out[i] = np.nanmean(chunk)
        return out

    @property
    def seconds(self) -> float:
        return float(sum(r.get('seconds') or 0.0 for r in self.records))


def load_run(work_dir: str) -> SearchRun:
    """The run in ``work_dir``; FileNotFoundError without a log."""
    records = read_log(work_dir)
    if not records:
        raise FileNotFoundError(f'{work_dir} has no search_log.jsonl (or it is empty)')
    searchers = {r.get('searcher', 'ppo') for r in records}
    if len(searchers) != 1:
        raise ValueError(f'{work_dir}: its log names several searchers {sorted(searchers)}')
    return SearchRun(str(work_dir), searchers.pop(), records)


def _stack(curves: Sequence[np.ndarray]) -> np.ndarray:
    """Curves of different lengths as one (runs, longest) array padded with NaN."""
    out = np.full((len(curves), max(len(c) for c in curves)), np.nan)
    for row, curve in zip(out, curves):
        row[:len(curve)] = curve
    return out


def _mean_std(values: Sequence[float]) -> tuple:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return float('nan'), float('nan')
    return float(np.mean(values)), float(np.std(values))


def summarize(runs: Sequence[SearchRun], window: int = DEFAULT_WINDOW) -> List[Dict[str, Any]]:
    """One row per searcher (in order of first appearance): runs, trials, best reward and
    last-``window`` mean reward (mean and std over runs), trial seconds per run."""
    rows = []
    for searcher in dict.fromkeys(r.searcher for r in runs):
        group = [r for r in runs if r.searcher == searcher]
        best = _mean_std([float(np.nanmax(r.best_so_far())) if np.isfinite(
            r.best_so_far()).any() else None for r in group])
        last = _mean_std([_nanmean_or_none([v for v in r.rewards[-window:] if v is not None])
                          for r in group])
        trials = sorted({len(r.records) for r in group})
        rows.append(dict(searcher=searcher, runs=len(group),
                         trials='-'.join(str(t) for t in (trials[0], trials[-1]))
                         if len(trials) > 1 else str(trials[0]),
                         best_reward_mean=best[0], best_reward_std=best[1],
                         last_mean_reward_mean=last[0], last_mean_reward_std=last[1],
                         trial_seconds_mean=float(np.mean([r.seconds for r in group]))))
    return rows


def _nanmean_or_none(values: Sequence[float]) -> Optional[float]:
    return float(np.mean(values)) if values else None


def write_table(rows: Sequence[Dict[str, Any]], out_dir: Path, window: int) -> None:
    """``compare.csv`` (all numbers) and ``compare.md`` (the same as a Markdown table)."""
    with open(out_dir / 'compare.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [f'| searcher | runs | trials per run | best reward (mean ± std) | mean reward of '
             f'the last {window} trials (mean ± std) | trial seconds per run (mean) |',
             '|---|---|---|---|---|---|']
    for row in rows:
        lines.append(f'| {row["searcher"]} | {row["runs"]} | {row["trials"]} | '
                     f'{row["best_reward_mean"]:.4f} ± {row["best_reward_std"]:.4f} | '
                     f'{row["last_mean_reward_mean"]:.4f} ± {row["last_mean_reward_std"]:.4f} | '
                     f'{row["trial_seconds_mean"]:.0f} |')
    (out_dir / 'compare.md').write_text('\n'.join(lines) + '\n')


def plot_comparison(runs: Sequence[SearchRun], path: Path, window: int) -> None:
    """``compare.png``: best-so-far and running mean reward vs trial (mean over runs with the
    min-max band), and the Pareto fronts overlaid."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, (ax_best, ax_mean, ax_front) = plt.subplots(1, 3, figsize=(18, 4.8))
    colors = plt.rcParams['axes.prop_cycle'].by_key()['color']
    cost = runs[0].records[0].get('cost', 'flops')
    for i, searcher in enumerate(dict.fromkeys(r.searcher for r in runs)):
        group = [r for r in runs if r.searcher == searcher]
        color = colors[i % len(colors)]
        label = f'{searcher} ({len(group)} run{"s" if len(group) > 1 else ""})'
        for ax, curves in ((ax_best, [r.best_so_far() for r in group]),
                           (ax_mean, [r.running_mean(window) for r in group])):
            stacked = _stack(curves)
            x = np.arange(stacked.shape[1])
            with warnings.catch_warnings():  # all-NaN columns (no reward yet) stay NaN
                warnings.simplefilter('ignore', RuntimeWarning)
                mean = np.nanmean(stacked, 0)
                low, high = np.nanmin(stacked, 0), np.nanmax(stacked, 0)
            ax.plot(x, mean, color=color, label=label)
            ax.fill_between(x, low, high, color=color, alpha=0.2, linewidth=0)
        front = pareto_records([rec for r in group for rec in r.records])
        if front:
            scale = 1e6 if cost == 'flops' else 1.0
            ax_front.step([record_cost(r) / scale for r in front],
                          [r['accuracy'] for r in front], where='post', color=color,
                          marker='o', markersize=3, label=label)
    ax_best.set_title('best reward so far (mean, min-max over runs)')
    ax_mean.set_title(f'running mean reward, last {window} trials (mean, min-max)')
    for ax in (ax_best, ax_mean):
        ax.set_xlabel('trial')
        ax.set_ylabel('reward')
        ax.legend(loc='lower right', fontsize=8)
    ax_front.set_title('accuracy-cost Pareto front (all runs of a searcher)')
    ax_front.set_xlabel('FLOPs (M)' if cost == 'flops' else 'predicted latency (ms)')
    ax_front.set_ylabel('proxy top-1 accuracy')
    ax_front.legend(loc='lower right', fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def compare_searches(work_dirs: Sequence[str], out_dir: str,
                     window: int = DEFAULT_WINDOW) -> Dict[str, Any]:
    """Read the runs, write ``compare.png``, ``compare.csv`` and ``compare.md`` into
    ``out_dir``; returns ``dict(runs, rows, picture, table)``."""
    if not work_dirs:
        raise ValueError('give at least one search work dir')
    runs = [load_run(d) for d in work_dirs]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = summarize(runs, window)
    write_table(rows, out, window)
    plot_comparison(runs, out / 'compare.png', window)
    return dict(runs=runs, rows=rows, picture=str(out / 'compare.png'),
                table=str(out / 'compare.md'))
