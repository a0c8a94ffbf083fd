"""Read and check a search config (``configs/search/*.py``) before any work is done.

A search config has these top-level entries (see ``configs/search/uninet_search_synthetic.py``):

``search_space``  kwargs of :class:`~uninet_mm.search.space.SearchSpace` (or a ``preset``)
``reward``        ``target`` (t), ``alpha``, ``hard``, ``cost`` ('flops' or 'latency') and, for
                  the latency cost, ``table``: a latency table file, or
                  ``dict(path=..., device, input_size, batch, dtype, mode, threads)``, checked
                  against those settings and built on first use when the file is missing
``controller``    kwargs of :class:`~uninet_mm.search.controller.LSTMController`
``ppo``           kwargs of :class:`~uninet_mm.search.ppo.PPOTrainer`
``search``        ``max_trials``, ``archs_per_update``, ``seed``, ``failure_reward``, ``top_k``,
                  ``scheduler`` (Ray backend: ``dict(type='asha' | 'median', ...)``, a Ray Tune
                  trial scheduler that stops weak architectures early), ``val_every_epoch``
                  (validate, and report to Tune, after every proxy epoch; default: only with a
                  scheduler)
``searcher``      optional: ``dict(type='ppo' | 'random' | 'evolution' | 'nsga2', **settings)``
                  (default ``ppo``, the paper's; see :mod:`uninet_mm.search.searchers`)
``ray``           ``cpus_per_trial``, ``gpus_per_trial``, ``max_concurrent``, ``max_failures``,
                  ``verbose``, ``reuse_actors`` (Ray backend only)
``proxy``         the proxy task (:mod:`uninet_mm.search.proxy`)

Every problem raises :class:`SearchConfigError` naming the entry and what to change.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import torch

from ..utils.plain import to_plain
from .checks import is_int, is_number
from .latency import (SETTING_KEYS, LatencyError, LatencyTable, check_settings,
                      check_statistic)
from .reward import COSTS, MnasReward
from .searchers import SearcherError, searcher_class, split_searcher
from .space import SearchSpace

SECTIONS = ('search_space', 'reward', 'controller', 'ppo', 'search', 'searcher', 'ray',
            'proxy')
SEARCH_KEYS = dict(max_trials=None, archs_per_update=None, seed=0, failure_reward=0.0,
                   top_k=5, scheduler=None, val_every_epoch=None)
#: Ray Tune trial schedulers ``search.scheduler`` may name, with their settings and defaults
#: (``max_t`` None: the proxy's epochs). Time is counted in proxy epochs.
SCHEDULERS = dict(asha=dict(max_t=None, grace_period=1, reduction_factor=2, brackets=1),
                  median=dict(grace_period=1, min_samples_required=3))
#: ``max_failures``: how often Ray Tune starts a trial again (same architecture, another node)
#: after its worker died, e.g. with a lost node; after that it is recorded as failed.
#: ``verbose``: Ray Tune's console output (0 silent, 1 status table, 2 every result).
#: ``reuse_actors``: a worker process runs trial after trial (no new process, imports and
#: Ray actor per trial; a new one took about 15 s to start on a loaded 2-core machine).
RAY_KEYS = dict(cpus_per_trial=1, gpus_per_trial=0, max_concurrent=None, max_failures=3,
                verbose=1, reuse_actors=True)


class SearchConfigError(ValueError):
    """A search config that cannot run; the message says what to change."""


@dataclass
class SearchSettings:
    """A checked search config."""
    space: SearchSpace
    reward: MnasReward
    controller: Dict[str, Any]
    ppo: Dict[str, Any]
    search: Dict[str, Any]
    ray: Dict[str, Any]
    proxy: Dict[str, Any]
    #: ``dict(type=NAME, **settings)`` of the searcher (default ``dict(type='ppo')``).
    searcher: Dict[str, Any]
    #: The latency table of the reward (None: FLOPs only, or not built yet).
    latency: Optional[LatencyTable] = None
    #: ``dict(path, settings, warmup, repeats)`` of a table to build before the first trial.
    latency_build: Optional[Dict[str, Any]] = None

    def driver_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments of :class:`~uninet_mm.search.driver.SearchDriver`."""
        if self.latency_build is not None and self.latency is None:
            raise SearchConfigError('the latency table is not built yet; call '
                                    'prepare_latency_table(settings) first')
        return dict(space=self.space, reward=self.reward, max_trials=self.search['max_trials'],
                    controller=self.controller, ppo=self.ppo,
                    archs_per_update=self.search['archs_per_update'],
                    seed=self.search['seed'], failure_reward=self.search['failure_reward'],
                    latency=self.latency, searcher=self.searcher)


def _section(cfg: Mapping, name: str, required: bool = True) -> Dict[str, Any]:
    value = cfg.get(name)
    if value is None:
        if required:
            raise SearchConfigError(f'search config has no {name!r} section; add one (see '
                                    f'configs/search/uninet_search_synthetic.py)')
        return {}
    if not isinstance(value, Mapping):
        raise SearchConfigError(f'search config {name!r} must be a dict, got '
                                f'{type(value).__name__}')
    return to_plain(value)


def _with_defaults(name: str, given: Dict[str, Any], defaults: Dict[str, Any]) -> Dict[str, Any]:
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise SearchConfigError(f'search config {name!r} has unknown keys {unknown}; allowed: '
                                f'{sorted(defaults)}')
    return {**defaults, **given}


def check_searcher(searcher: Union[str, Mapping[str, Any], None]) -> Dict[str, Any]:
    """``dict(type=NAME, **settings)`` with the settings checked (defaults filled in);
    an unknown searcher or a bad setting raises :class:`SearchConfigError`."""
    try:
        name, settings = split_searcher(searcher)
        settings = searcher_class(name).check_settings(settings)
    except SearcherError as exc:
        raise SearchConfigError(f'search config "searcher": {exc}') from None
    return dict(type=name, **settings)


def check_search_config(cfg: Mapping, max_trials: Optional[int] = None,
                        searcher: Optional[str] = None) -> SearchSettings:
    """Check every section of a search config (without touching data; see
    :func:`uninet_mm.search.proxy.prepare_proxy` for that) and build the space and reward.

    Args:
        cfg: the loaded config (an mmengine ``Config`` or a dict).
        max_trials: overrides ``search.max_trials`` (``--max-trials``).
        searcher: overrides the searcher's type (``--searcher``); settings of the config's
            ``searcher`` section are kept when it names the same type.
    """
    from .controller import LSTMController  # noqa: F401  (import errors surface here)
    from .ppo import PPOTrainer

    try:
        space = SearchSpace.from_config(_section(cfg, 'search_space'))
    except ValueError as exc:
        raise SearchConfigError(f'search config "search_space": {exc}') from None
    reward_cfg = _with_defaults('reward', _section(cfg, 'reward'),
                                dict(target=None, alpha=0.07, hard=False, cost='flops',
                                     table=None))
    table_cfg = reward_cfg.pop('table')
    if reward_cfg['cost'] not in COSTS:
        raise SearchConfigError(f'search config "reward": cost = {reward_cfg["cost"]!r} is '
                                f'unknown; use one of {list(COSTS)}')
    if reward_cfg['target'] is None:
        if reward_cfg['cost'] == 'flops':
            raise SearchConfigError('search config "reward" needs target (t, the FLOPs target '
                                    'at the proxy input size; the paper uses 550e6 at ImageNet '
                                    'scale)')
        raise SearchConfigError(
            'search config "reward" needs target (t in milliseconds, with the latency table\'s '
            'settings): measure the latency you aim for, e.g. Swin-T\'s with '
            'tools/analysis_tools/benchmark_backbone.py (see docs/latency.md), '
            'and set it in the config or with --cfg-options reward.target=MILLISECONDS')
    try:
        reward = MnasReward(**reward_cfg)
    except (TypeError, ValueError) as exc:
        raise SearchConfigError(f'search config "reward": {exc}') from None
    latency, latency_build = _latency_table(table_cfg, reward, space)

    search = _with_defaults('search', _section(cfg, 'search'), SEARCH_KEYS)
    if max_trials is not None:
        search['max_trials'] = max_trials
    if not is_int(search['max_trials'], 1):
        raise SearchConfigError(f'search.max_trials = {search["max_trials"]!r} must be an int '
                                f'>= 1 (architectures to score)')
    ppo = _section(cfg, 'ppo', required=False)
    if search['archs_per_update'] is None:
        search['archs_per_update'] = ppo.get('batch_size', 20)
    if not is_int(search['archs_per_update'], 1):
        raise SearchConfigError(f'search.archs_per_update = {search["archs_per_update"]!r} '
                                f'must be an int >= 1')
    if not is_int(search['top_k'], 1):
        raise SearchConfigError(f'search.top_k = {search["top_k"]!r} must be an int >= 1')
    failure = search['failure_reward']
    if failure is not None and not is_number(failure):
        raise SearchConfigError(f'search.failure_reward = {failure!r} must be a finite number '
                                f'or None (failed trials left out of the PPO update)')

    search['scheduler'] = _scheduler(search['scheduler'], _proxy_epochs(cfg))
    if search['val_every_epoch'] is None:
        search['val_every_epoch'] = search['scheduler'] is not None
    if not isinstance(search['val_every_epoch'], bool):
        raise SearchConfigError(f'search.val_every_epoch = {search["val_every_epoch"]!r} must '
                                f'be True, False or None (None: True with a scheduler)')
    if search['scheduler'] is not None and not search['val_every_epoch']:
        raise SearchConfigError('search.scheduler needs search.val_every_epoch (a result every '
                                'epoch to stop on); leave it None or set True')

    controller = _section(cfg, 'controller', required=False)
    try:  # build once to check the controller and PPO settings
        PPOTrainer(LSTMController(space.num_choices, **controller), **ppo)
    except (TypeError, ValueError) as exc:
        raise SearchConfigError(f'search config "controller" / "ppo": {exc}') from None

    ray = _with_defaults('ray', _section(cfg, 'ray', required=False), RAY_KEYS)
    for key in ('cpus_per_trial', 'gpus_per_trial'):
        value = ray[key]
        if not is_number(value, 0):
            raise SearchConfigError(f'ray.{key} = {value!r} must be a number >= 0')
    if ray['verbose'] not in (0, 1, 2, 3):
        raise SearchConfigError(f'ray.verbose = {ray["verbose"]!r} must be 0, 1, 2 or 3')
    if not isinstance(ray['reuse_actors'], bool):
        raise SearchConfigError(f'ray.reuse_actors = {ray["reuse_actors"]!r} must be True or '
                                f'False')
    retries = ray['max_failures']
    if not is_int(retries, -1):
        raise SearchConfigError(f'ray.max_failures = {retries!r} must be an integer >= 0 '
                                f'(or -1: retry without limit)')
    searcher_cfg = cfg.get('searcher')
    if isinstance(searcher_cfg, Mapping):
        searcher_cfg = to_plain(searcher_cfg)
    if searcher is not None:
        given = searcher_cfg if isinstance(searcher_cfg, dict) else {}
        same = given.get('type', 'ppo') == searcher
        searcher_cfg = dict(given, type=searcher) if same else searcher
    searcher_cfg = check_searcher(searcher_cfg)
    proxy = _section(cfg, 'proxy')
    return SearchSettings(space=space, reward=reward, controller=controller, ppo=ppo,
                          search=search, ray=ray, proxy=proxy, searcher=searcher_cfg,
                          latency=latency, latency_build=latency_build)


def _proxy_epochs(cfg: Mapping) -> Optional[int]:
    try:
        epochs = cfg['proxy']['runner']['train_cfg']['max_epochs']
    except (KeyError, TypeError):
        return None  # prepare_proxy says what is missing
    return epochs if is_int(epochs, 1) else None


def _scheduler(value: Any, epochs: Optional[int]) -> Optional[Dict[str, Any]]:
    """The checked ``search.scheduler`` with its defaults filled in, or None."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or value.get('type') not in SCHEDULERS:
        kind = value.get('type') if isinstance(value, Mapping) else value
        raise SearchConfigError(f'search.scheduler type {kind!r} is unknown; use '
                                f'dict(type=...) with one of {list(SCHEDULERS)} (Ray Tune\'s '
                                f'ASHAScheduler, MedianStoppingRule) or None')
    value = dict(value)
    kind = value.pop('type')
    scheduler = _with_defaults(f'search.scheduler ({kind})', value, SCHEDULERS[kind])
    if kind == 'asha' and scheduler['max_t'] is None:
        scheduler['max_t'] = epochs
    for key, number in scheduler.items():
        if not is_int(number, 1):
            hint = ('; it defaults to proxy.runner.train_cfg.max_epochs' if key == 'max_t'
                    else '')
            raise SearchConfigError(f'search.scheduler.{key} = {number!r} must be an int >= 1 '
                                    f'(proxy epochs){hint}')
    if kind == 'asha':
        if epochs is not None and scheduler['max_t'] > epochs:
            raise SearchConfigError(f'search.scheduler.max_t = {scheduler["max_t"]} is more '
                                    f'than the {epochs} proxy epochs a trial runs')
        if scheduler['grace_period'] > scheduler['max_t']:
            raise SearchConfigError(f'search.scheduler.grace_period = '
                                    f'{scheduler["grace_period"]} must be <= max_t = '
                                    f'{scheduler["max_t"]}')
        if scheduler['reduction_factor'] < 2:
            raise SearchConfigError('search.scheduler.reduction_factor must be >= 2')
    return dict(type=kind, **scheduler)


def _latency_table(table_cfg: Any, reward: MnasReward, space: SearchSpace):
    """``(table, None)`` for an existing table, ``(None, build)`` for one to build first,
    ``(None, None)`` without one. Every problem raises :class:`SearchConfigError`."""
    if table_cfg is None:
        if reward.cost == 'latency':
            raise SearchConfigError(
                'search config "reward": cost=\'latency\' needs table: a latency table file '
                '(tools/analysis_tools/latency_table.py build) or dict(path=..., device=..., '
                'input_size=(H, W), batch=1, dtype=\'fp32\', mode=\'forward\') to build one '
                'on first use')
        return None, None
    if isinstance(table_cfg, str):
        table_cfg = dict(path=table_cfg)
    if not isinstance(table_cfg, Mapping) or not isinstance(table_cfg.get('path'), str):
        raise SearchConfigError(f'search config "reward": table must be a file path or a dict '
                                f'with path and the build settings, got {table_cfg!r}')
    table_cfg = dict(table_cfg)
    path = table_cfg.pop('path')
    build_keys = dict(warmup=table_cfg.pop('warmup', 1), repeats=table_cfg.pop('repeats', 6),
                      passes=table_cfg.pop('passes', 3),
                      statistic=table_cfg.pop('statistic', None))
    unknown = sorted(set(table_cfg) - set(SETTING_KEYS))
    if unknown:
        raise SearchConfigError(f'search config "reward.table" has unknown keys {unknown}; '
                                f'allowed: path, warmup, repeats, passes, statistic, '
                                f'{", ".join(SETTING_KEYS)}')
    if 'input_size' in table_cfg and not isinstance(table_cfg['input_size'], int):
        table_cfg['input_size'] = list(table_cfg['input_size'])
    try:
        if Path(path).is_file():
            table = LatencyTable.load(path, **table_cfg)
            if build_keys['statistic'] is not None:
                table.use_statistic(build_keys['statistic'])
        else:
            if 'input_size' not in table_cfg:
                raise SearchConfigError(
                    f'search config "reward.table": {path} does not exist; build it with '
                    f'tools/analysis_tools/latency_table.py build, or give the build settings '
                    f'(device, input_size, batch, dtype, mode, threads) to build it on first use')
            settings = check_settings(**table_cfg)
            check_statistic(build_keys['statistic'], settings['mode'])
            if settings['device'] == 'cuda' and not torch.cuda.is_available():
                raise SearchConfigError(
                    f'search config "reward.table": {path} does not exist and is to be built on '
                    f'cuda, but torch sees no CUDA device here; build it on the GPU it is for '
                    f'(tools/analysis_tools/latency_table.py build ... --device cuda --out '
                    f'{path}) or run the search there')
            return None, dict(path=path, settings=settings, **build_keys)
    except LatencyError as exc:
        raise SearchConfigError(f'search config "reward.table": {exc}') from None
    missing = table.missing_for(space)
    if missing:
        raise SearchConfigError(f'search config "reward.table": {path} does not cover this '
                                f'search space ({len(missing)} pieces missing, e.g. '
                                f'{missing[0]!r}); build a table for this config')
    return table, None


def prepare_latency_table(settings: SearchSettings, logger=None) -> Optional[LatencyTable]:
    """Build the reward's latency table if the config asks for one that does not exist yet
    (saying first how many pieces and about how long), continuing a stopped build."""
    from mmengine.logging import MMLogger

    if settings.latency is not None or settings.latency_build is None:
        return settings.latency
    logger = logger or MMLogger.get_current_instance()
    build = settings.latency_build
    path = build['path']
    table = LatencyTable.plan_build(settings.space, **build['settings'],
                                    warmup=build['warmup'], repeats=build['repeats'],
                                    passes=build['passes'], statistic=build['statistic'])
    partial = Path(path + '.partial')
    if partial.is_file():
        table = table.continue_from(LatencyTable.load(str(partial), complete=False))
    todo = table.todo()
    gmacs, overhead = table.calibrate()
    logger.info(f'building the latency table {path} first: {table.describe()}, '
                f'{len(table.data["pieces"])} pieces, {sum(todo.values())} timed runs left, '
                f'about {table.estimate_seconds(gmacs, overhead) / 60:.1f} min (a rough '
                f'estimate); progress is kept in {partial}')
    table.measure(path=str(partial), logger=logger)
    table.save(path)
    partial.unlink()
    settings.latency = table
    return table
