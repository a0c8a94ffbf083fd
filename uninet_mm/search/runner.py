"""One entry point for a whole search: check the config, prepare the data, run the trials
(embedded or on Ray Tune), write the outputs. ``tools/search.py`` is a thin CLI around
:func:`run_search`."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from .config import check_search_config, prepare_latency_table
from .driver import STATE_NAME, SearchDriver
from .embedded import run_embedded
from .proxy import ProxyTrial, prepare_proxy
from .records import describe_scores, search_logger, write_results
from .report import update_curve, write_outputs

BACKENDS = ('embedded', 'ray')


def prepare_search(cfg: Mapping, work_dir: str, max_trials: Optional[int] = None,
                   resume: bool = False, logger=None, searcher: Optional[str] = None):
    """Check the config, prepare the data (and the latency table the reward asks for, built
    here if it does not exist yet) and build (or resume) the driver, before any trial.

    Returns ``(settings, proxy, driver)``; every config problem raises here (a resume with
    another searcher than the saved search's too).
    """
    settings = check_search_config(cfg, max_trials, searcher)
    state = Path(work_dir) / STATE_NAME
    if not resume and state.exists():
        raise FileExistsError(f'{work_dir} already holds a search ({state}); pass --resume to '
                              f'continue it or choose another --work-dir')
    proxy = prepare_proxy(settings.proxy, work_dir)
    prepare_latency_table(settings, logger)
    driver = SearchDriver(**settings.driver_kwargs())
    if resume:
        driver.load(work_dir, max_trials=max_trials)
    return settings, proxy, driver


def run_search(cfg: Mapping, work_dir: str, max_trials: Optional[int] = None,
               resume: bool = False, backend: str = 'embedded', trial_fn=None,
               ray_address: Optional[str] = None,
               searcher: Optional[str] = None) -> Dict[str, Any]:
    """Run (or resume) a search and write its outputs into ``work_dir``.

    Args:
        cfg: a search config (see :mod:`uninet_mm.search.config`).
        work_dir: where the state, the log, the configs and the pictures go.
        max_trials: overrides ``search.max_trials``.
        resume: continue the search saved in ``work_dir``.
        backend: ``'embedded'`` (trials one after another in this process) or ``'ray'``.
        trial_fn: embedded backend only: replaces the proxy task (tests, custom scoring).
        ray_address: Ray backend only: the cluster to join (None: start a local one or use
            the one ``ray.init`` was already called for).
        searcher: overrides the config's searcher type (``'ppo'``, ``'random'``,
            ``'evolution'``, ``'nsga2'``).

    Returns:
        ``dict(driver, curve, top, picture, top_json, pareto_json, results_csv, result_grid, seconds,
        trials_per_hour)``; ``result_grid`` is Ray Tune's ``ResultGrid`` (Ray backend; None
        for the embedded one).
    """
    if backend not in BACKENDS:
        raise ValueError(f'unknown backend {backend!r}; choose one of {list(BACKENDS)}')
    logger = search_logger(work_dir)
    settings, proxy, driver = prepare_search(cfg, work_dir, max_trials, resume, logger,
                                             searcher)
    logger.info(f'search space: {settings.space!r}')
    if settings.latency is not None:
        logger.info(f'latency table {settings.latency.path}: {settings.latency.describe()}')
    logger.info(f'reward: t={settings.reward.target:g} {settings.reward.unit}, '
                f'alpha={settings.reward.alpha}, '
                f'hard={settings.reward.hard}; {driver.max_trials} trials; searcher '
                f'{settings.searcher}' + (f', {driver.archs_per_update} per PPO update'
                                          if driver.searcher == 'ppo' else '')
                + f'; backend {backend}')
    start = time.perf_counter()
    done_before = len(driver.history)
    grid = None
    if backend == 'embedded':
        if settings.search['scheduler'] is not None:
            logger.warning('search.scheduler is for the Ray backend; the embedded backend runs '
                           'every trial to the end')
        trial_fn = trial_fn or ProxyTrial(settings.space, proxy, str(Path(work_dir) / 'trials'),
                                          reward=settings.reward,
                                          failure_reward=settings.search['failure_reward'])
        run_embedded(driver, trial_fn, work_dir, logger)
    else:
        if trial_fn is not None:
            raise ValueError('trial_fn is for the embedded backend; the Ray backend runs the '
                             'proxy task')
        from .ray_tune import run_ray
        driver, grid = run_ray(settings, proxy, driver, work_dir, resume=resume, logger=logger,
                               address=ray_address)
    seconds = time.perf_counter() - start
    outputs = write_outputs(driver.history, driver.updates, work_dir, settings.search['top_k'])
    outputs['results_csv'] = str(write_results(work_dir, driver.history))
    curve = update_curve(driver.updates)
    scored = len(driver.history) - done_before
    per_hour = scored / seconds * 3600 if seconds > 0 else float('nan')
    logger.info(f'search finished: {len(driver.history)} trials scored '
                f'({scored} in this run, {seconds:.0f} s, {per_hour:.0f} trials/hour)')
    logger.info(f'mean reward per {"PPO update" if driver.searcher == "ppo" else "window"}: '
                + ', '.join(f'{v:.4f}' for v in curve))
    for entry in outputs['top']:
        logger.info(f'top {entry["rank"]}: trial {entry["trial"]}, {describe_scores(entry)}; '
                    f'configs {entry["cls_config"]}, {entry["det_config"]}')
    logger.info(f'log {Path(work_dir) / "search_log.jsonl"} (table: {outputs["results_csv"]}; '
                f'uninet_mm.search.records.load_search(work_dir)), picture {outputs["picture"]}')
    return dict(outputs, driver=driver, curve=curve, result_grid=grid, seconds=seconds,
                trials_per_hour=per_hour)
