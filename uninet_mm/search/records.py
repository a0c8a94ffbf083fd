"""The search's records: its logger, ``search_log.jsonl`` (one line per scored architecture),
the progress lines, ``results.csv`` (the same rows as a table), :func:`load_search`, and the
searcher's statistics in mmengine's visualizer (``WORK_DIR/vis``:
``vis_data/scalars.json`` and TensorBoard events; PPO: mean reward, baseline, entropy, clip fraction,
approximate KL of every update; the other searchers: mean / best reward of every window of
results plus their own, e.g. the population's best for evolution)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Sequence

from mmengine.logging import MMLogger
from mmengine.visualization import Visualizer

if TYPE_CHECKING:
    import pandas

    from .driver import SearchDriver

LOG_NAME = 'search_log.jsonl'
VIS_DIR = 'vis'
RESULTS_NAME = 'results.csv'


def search_logger(work_dir: str) -> MMLogger:
    """The search's own logger: console and ``WORK_DIR/search.log``."""
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    name = f'uninet_search:{Path(work_dir).resolve()}'
    if MMLogger.check_instance_created(name):
        return MMLogger.get_instance(name)
    return MMLogger.get_instance(name, logger_name='uninet_search',
                                 log_file=str(Path(work_dir) / 'search.log'), log_level='INFO',
                                 file_mode='a')


# ---------------------------------------------------------------------------------------------
# The log
# ---------------------------------------------------------------------------------------------
def write_log(work_dir: str, records: List[Dict[str, Any]]) -> None:
    """Rewrite ``search_log.jsonl`` from the records (atomic)."""
    path = Path(work_dir) / LOG_NAME
    tmp = path.with_suffix('.tmp')
    tmp.write_text(''.join(json.dumps(r, default=_json_default) + '\n' for r in records))
    os.replace(tmp, path)


def append_log(work_dir: str, record: Dict[str, Any]) -> None:
    with open(Path(work_dir) / LOG_NAME, 'a') as f:
        f.write(json.dumps(record, default=_json_default) + '\n')


def read_log(work_dir: str) -> List[Dict[str, Any]]:
    path = Path(work_dir) / LOG_NAME
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_search(work_dir: str) -> 'pandas.DataFrame':
    """The search in ``work_dir`` (either backend, finished or not) as a DataFrame: one row
    per scored architecture, in the order scored, the columns of ``search_log.jsonl``
    (``tokens``, ``arch``, ``update``, ... stay lists and dicts)."""
    import pandas

    path = Path(work_dir) / LOG_NAME
    if not path.is_file():
        raise FileNotFoundError(f'no search log at {path}')
    return pandas.DataFrame(read_log(work_dir))


def write_results(work_dir: str, records: Sequence[Dict[str, Any]]) -> Path:
    """Write ``results.csv``: one row per record (a trial), the log's fields as columns; lists
    and dicts (``tokens``, ``arch``, ...) as JSON text."""
    import pandas

    rows = [{key: json.dumps(value, default=_json_default)
             if isinstance(value, (list, dict, tuple)) else value
             for key, value in record.items()} for record in records]
    path = Path(work_dir) / RESULTS_NAME
    tmp = path.with_suffix('.tmp')
    pandas.DataFrame(rows).to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, 'tolist'):
        return value.tolist()
    return str(value)


def search_visualizer(work_dir: str) -> Visualizer:
    """The search's visualizer: ``LocalVisBackend`` and ``TensorboardVisBackend`` writing to
    ``WORK_DIR/vis`` (one instance per work dir)."""
    save_dir = Path(work_dir).resolve() / VIS_DIR
    name = f'uninet_search_vis:{save_dir}'
    if Visualizer.check_instance_created(name):
        return Visualizer.get_instance(name)
    return Visualizer.get_instance(name, save_dir=str(save_dir),
                                   vis_backends=[dict(type='LocalVisBackend'),
                                                 dict(type='TensorboardVisBackend')])


def add_stats(visualizer: Visualizer, stats: Dict[str, Any]) -> None:
    """The numbers of one statistics entry as scalars ``SEARCHER/KEY`` at step ``update``."""
    prefix = stats.get('searcher', 'ppo')
    scalars = {f'{prefix}/{key}': float(value) for key, value in stats.items()
               if isinstance(value, (int, float)) and not isinstance(value, bool)
               and key not in ('update', 'first_trial', 'last_trial')}
    visualizer.add_scalars(scalars, step=int(stats['update']))


def record_trial(work_dir: str, driver: 'SearchDriver', record: Dict[str, Any],
                 logger: MMLogger) -> None:
    """After :meth:`SearchDriver.complete`: checkpoint, the log line, the progress lines and
    the searcher's statistics, in that order (a kill after the checkpoint loses at most a
    log line, which a resume rewrites from the checkpoint, and one scalar entry)."""
    driver.save(work_dir)
    append_log(work_dir, record)
    log_progress(logger, driver, record)
    if record.get('update'):
        add_stats(search_visualizer(work_dir), record['update'])


def describe_scores(record: Dict[str, Any]) -> str:
    """``'reward R, accuracy A, F M FLOPs[, L ms]'`` of a scored record (log line or top entry)."""
    latency = (f', {record["latency_ms"]:.2f} ms' if record.get('latency_ms') is not None
               else '')
    return (f'reward {record["reward"]:.4f}, accuracy {record["accuracy"]:.4f}, '
            f'{record["flops"] / 1e6:.2f}M FLOPs{latency}')


def log_progress(logger: MMLogger, driver: 'SearchDriver', record: Dict[str, Any]) -> None:
    """One progress line per scored trial, one more per searcher statistics entry."""
    done = len(driver.history)
    if record['status'] == 'ok':
        stopped = (f', stopped early after {record.get("epochs")} epochs'
                   if record.get('early_stopped') else '')
        logger.info(f'trial {record["trial"]} ({done}/{driver.max_trials}): '
                    f'{describe_scores(record)}, {record["params"] / 1e6:.3f}M params, '
                    f'{record["seconds"] or 0:.1f} s{stopped}')
    else:
        logger.warning(f'trial {record["trial"]} ({done}/{driver.max_trials}) failed '
                       f'(reward {record["reward"]}): {record["error"]}')
    stats = record.get('update')
    if stats and stats.get('searcher', 'ppo') == 'ppo':
        logger.info(f'PPO update {stats["update"]} on {stats["num_archs"]} archs: mean reward '
                    f'{stats["mean_reward"]:.4f}, max {stats["max_reward"]:.4f}, baseline '
                    f'{stats["baseline"]:.4f}, entropy {stats["entropy"]:.3f}, clip fraction '
                    f'{stats["clip_fraction"]:.3f}, approx KL {stats["approx_kl"]:.4f}')
    elif stats:
        extra = ', '.join(f'{k} {v:.4g}' for k, v in stats.items()
                          if isinstance(v, float) and k not in ('mean_reward', 'max_reward'))
        logger.info(f'{stats["searcher"]} statistics {stats["update"]} '
                    f'(trials {stats["first_trial"]}..{stats["last_trial"]}): mean reward '
                    f'{stats["mean_reward"]:.4f}, max {stats["max_reward"]:.4f}; {extra}')
