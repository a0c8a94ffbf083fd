"""How much the proxy task's accuracy says about the architecture rather than the seed.

:func:`measure_proxy_noise` samples ``num_archs`` architectures uniformly from a search config's
space (a seeded ``random.Random(arch_seed)``), prepares the proxy once
(:func:`~uninet_mm.search.proxy.prepare_proxy`) and trains every architecture once per proxy
seed with :func:`~uninet_mm.search.proxy.run_proxy_trial` (``proxy.seed`` = that seed: it sets
the weight initialisation, the data order and the augmentation draws). From the accuracy matrix
``A`` (architectures x seeds) it reports (:func:`noise_statistics`):

* ``spearman``: the Spearman rank correlation of the architectures' accuracies between every
  pair of seeds (would two searches with different proxy seeds rank the architectures alike?);
* ``seed_std``: the mean over architectures of the standard deviation over seeds (ddof 1);
* ``arch_std``: the standard deviation of the per-architecture means (ddof 1);
* ``spread_ratio`` = ``arch_std / seed_std`` (how much larger the differences between
  architectures are than the noise of one architecture);
* ``seed_std_centred`` / ``spread_ratio_centred``: the same with each seed's mean offset over
  all architectures taken out first (a seed that lifts every architecture alike does not change
  which one a search with that seed prefers); for information, the targets use the raw ones.

Every trial is appended to ``WORK_DIR/proxy_noise.jsonl`` as it finishes, with a fingerprint of
the space and proxy settings; a second call with the same config and work dir only runs the
trials that are not there yet (a long run can be stopped and continued).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..utils.plain import to_plain
from .config import check_search_config
from .latency import spearman
from .proxy import prepare_proxy, run_proxy_trial

LOG_NAME = 'proxy_noise.jsonl'
#: What an informative proxy reaches: seed-to-seed Spearman >= 0.7, spread ratio >= 2.
TARGET_SPEARMAN = 0.7
TARGET_RATIO = 2.0


def rank_correlation(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation of two equally long sequences (ties get mean ranks); NaN
    when either is constant or shorter than 2."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f'need two 1-d sequences of equal length, got {x.shape} and {y.shape}')
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float('nan')
    return spearman(x.tolist(), y.tolist())


def noise_statistics(accuracies: Any, seeds: Optional[Sequence[int]] = None,
                     target_spearman: float = TARGET_SPEARMAN,
                     target_ratio: float = TARGET_RATIO) -> Dict[str, Any]:
    """Seed noise against architecture signal of an accuracy matrix.

    Args:
        accuracies: (num_archs, num_seeds) accuracies, no missing values; at least 2 x 2.
        seeds: names of the columns (default 0 .. num_seeds - 1), used as keys of
            ``spearman``.
        target_spearman, target_ratio: what ``meets_target`` checks.

    Returns:
        ``spearman`` ({'s0-s1': rho, ...} for every pair of seeds), ``spearman_min``,
        ``spearman_mean``, ``seed_std`` (mean over architectures of the std over seeds),
        ``arch_std`` (std of the per-architecture means), ``spread_ratio`` (arch_std /
        seed_std; inf when seed_std is 0), ``accuracy_min`` / ``accuracy_max`` / ``accuracy_mean``
        ``seed_std_centred`` / ``spread_ratio_centred`` (each seed's mean offset removed first)
        and ``meets_target`` (spearman_min >= target_spearman and spread_ratio >= target_ratio).
        Standard deviations use ddof=1.
    """
    acc = np.asarray(accuracies, dtype=float)
    if acc.ndim != 2 or acc.shape[0] < 2 or acc.shape[1] < 2:
        raise ValueError(f'need an (architectures x seeds) matrix of at least 2 x 2, '
                         f'got shape {acc.shape}')
    if not np.isfinite(acc).all():
        raise ValueError('accuracies must be finite (leave failed architectures out)')
    seeds = list(range(acc.shape[1])) if seeds is None else list(seeds)
    if len(seeds) != acc.shape[1]:
        raise ValueError(f'{len(seeds)} seed names for {acc.shape[1]} columns')
    spearman = {f's{seeds[i]}-s{seeds[j]}': rank_correlation(acc[:, i], acc[:, j])
                for i, j in itertools.combinations(range(acc.shape[1]), 2)}
    rhos = list(spearman.values())
    seed_std = float(acc.std(axis=1, ddof=1).mean())
    arch_std = float(acc.mean(axis=1).std(ddof=1))
    ratio = arch_std / seed_std if seed_std > 0 else math.inf
    centred = acc - acc.mean(axis=0, keepdims=True) + acc.mean()
    seed_std_centred = float(centred.std(axis=1, ddof=1).mean())
    ratio_centred = arch_std / seed_std_centred if seed_std_centred > 1e-12 else math.inf
    rho_min = float(min(rhos))  # min() is order-dependent with NaN: a NaN pair fails
    if any(math.isnan(r) for r in rhos):
        rho_min = float('nan')
    return dict(spearman=spearman, spearman_min=rho_min, spearman_mean=float(np.mean(rhos)),
                seed_std=seed_std, arch_std=arch_std, spread_ratio=ratio,
                seed_std_centred=seed_std_centred, spread_ratio_centred=ratio_centred,
                accuracy_min=float(acc.min()), accuracy_max=float(acc.max()),
                accuracy_mean=float(acc.mean()),
                meets_target=bool(rho_min >= target_spearman and ratio >= target_ratio))


def _fingerprint(space_cfg: Mapping, proxy: Mapping) -> str:
    """Short hash of the space and the proxy settings (what a trial's accuracy depends on)."""
    text = json.dumps(to_plain(dict(space=space_cfg, proxy=proxy)), sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _read_done(path: Path, fingerprint: str) -> Dict[tuple, Dict[str, Any]]:
    done = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
            if row.get('fingerprint') == fingerprint:
                done[(tuple(row['tokens']), row['seed'])] = row
    return done


def measure_proxy_noise(cfg: Mapping, num_archs: int, seeds: Union[int, Sequence[int]],
                        work_dir: str, arch_seed: int = 0,
                        progress: Optional[Callable[[Dict[str, Any]], None]] = None,
                        shard: Optional[Tuple[int, int]] = None) -> Dict[str, Any]:
    """Train ``num_archs`` random architectures of ``cfg``'s space once per proxy seed.

    Args:
        cfg: a search config (mmengine ``Config`` or dict with ``search_space`` and ``proxy``).
        num_archs: architectures to sample (uniformly, ``random.Random(arch_seed)``).
        seeds: proxy seeds: an int K (seeds 0 .. K-1) or a list.
        work_dir: folder for the data splits, the trials' runner folders and the trial log.
        arch_seed: seed of the architecture sampling.
        progress: called with every trial's record (run or read back).
        shard: ``(i, n)``: run only trials number ``k`` (architecture-major order) with
            ``k % n == i`` and read the others back if they are logged (n processes on one
            work dir share a measurement; a last run without ``shard`` reports it whole).

    Returns:
        ``archs`` (one dict per architecture: ``index``, ``tokens``, ``flops``, ``params``,
        ``accuracy`` {seed: value or None}), ``seeds``, ``trials`` (all records),
        ``failures`` (failed trial records), ``seconds_per_trial`` / ``cpu_seconds_per_trial``
        (means over the trials with a result), ``log`` (the JSONL path), ``fingerprint``, and
        the :func:`noise_statistics` of the architectures without a failed trial (``None``
        values when fewer than 2 are left), plus ``num_scored`` (how many that is).
    """
    if isinstance(seeds, int):
        seeds = list(range(seeds))
    seeds = [int(s) for s in seeds]
    if num_archs < 2 or len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ValueError(f'need at least 2 architectures and 2 distinct seeds, got {num_archs} '
                         f'architectures and seeds {seeds}')
    settings = check_search_config(cfg)
    space = settings.space
    rng = random.Random(arch_seed)
    tokens_list = [space.sample(rng) for _ in range(num_archs)]
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    proxy = prepare_proxy(settings.proxy, str(work))
    fingerprint = _fingerprint(space.config, proxy)
    log = work / LOG_NAME
    done = _read_done(log, fingerprint)
    if shard is not None and not (len(shard) == 2 and 0 <= shard[0] < shard[1]):
        raise ValueError(f'shard = {shard!r}; give (i, n) with 0 <= i < n')
    records: List[Dict[str, Any]] = []
    threads = torch.get_num_threads()
    try:
        for number, (index, tokens, seed) in enumerate(
                (i, t, s) for i, t in enumerate(tokens_list) for s in seeds):
            record = done.get((tuple(tokens), seed))
            if record is None and shard is not None and number % shard[1] != shard[0]:
                done.update(_read_done(log, fingerprint))  # another shard may have run it
                record = done.get((tuple(tokens), seed))
                if record is None:
                    continue
            if record is None:
                trial_proxy = dict(proxy, seed=seed)
                result = run_proxy_trial(trial_proxy, space.backbone_kwargs(tokens),
                                         str(work / 'trials'), f'a{index:03d}_s{seed}')
                record = dict(index=index, tokens=list(tokens), seed=seed,
                              fingerprint=fingerprint, **to_plain(result))
                with log.open('a') as f:
                    f.write(json.dumps(record) + '\n')
            records.append(dict(record, index=index))
            if progress is not None:
                progress(record)
    finally:
        torch.set_num_threads(threads)

    archs = []
    for index, tokens in enumerate(tokens_list):
        mine = [r for r in records if r['index'] == index]
        counted = next((r for r in mine if r.get('flops') is not None), {})
        archs.append(dict(index=index, tokens=list(tokens), flops=counted.get('flops'),
                          params=counted.get('params'),
                          accuracy={r['seed']: r['accuracy'] if r['status'] == 'ok' else None
                                    for r in mine}))
    scored = [a for a in archs if all(a['accuracy'].get(s) is not None for s in seeds)]
    timed = [r for r in records if r.get('seconds') is not None]
    out = dict(archs=archs, seeds=seeds, trials=records,
               failures=[r for r in records if r['status'] != 'ok'], num_scored=len(scored),
               seconds_per_trial=float(np.mean([r['seconds'] for r in timed])) if timed else None,
               cpu_seconds_per_trial=(float(np.mean([r['cpu_seconds'] for r in timed]))
                                      if timed else None),
               log=str(log), fingerprint=fingerprint)
    if len(scored) >= 2:
        out.update(noise_statistics([[a['accuracy'][s] for s in seeds] for a in scored], seeds))
    else:
        out.update(dict.fromkeys(('spearman', 'spearman_min', 'spearman_mean', 'seed_std',
                                  'arch_std', 'spread_ratio', 'seed_std_centred',
                                  'spread_ratio_centred', 'accuracy_min', 'accuracy_max',
                                  'accuracy_mean', 'meets_target')))
    return out
