"""Run a search on a Ray cluster with Ray Tune (optional: ``pip install -e .[search]``).

Tune sees the objective: the Tuner runs with ``metric='reward', mode='max'``, and every trial
reports its ``reward`` (with ``accuracy``, ``flops``, ``params``, ``latency_ms`` when the
reward's cost is latency, ``epochs``, ``status``) after every proxy epoch it validates
(``search.val_every_epoch``, on by default with a scheduler; otherwise once, at the end). So
Tune's schedulers (``search.scheduler``: ASHA, median stopping), ``ResultGrid.get_best_result``,
``get_dataframe``, its loggers and its progress table work.

:class:`DriverSearcher` is a Ray Tune ``Searcher`` around the same
:class:`~uninet_mm.search.driver.SearchDriver` the embedded backend uses (whatever its
strategy): ``suggest`` hands out the driver's proposals (None while the driver waits for
results), ``on_trial_complete`` gets every trial's final result (the last one it reported,
for a trial a scheduler stopped) and scores it with the driver, which writes
``search_state.pth``; the log line follows.

One persistence path: the driver's state lives only in ``search_state.pth`` (written after
every scored trial). The searcher's own Tune checkpoint and its pickle in ``tuner.pkl`` hold
just which Tune trial runs which architecture; on ``--resume`` the driver that
:func:`~uninet_mm.search.runner.prepare_search` loaded and checked is the one the restored
searcher drives (:func:`run_ray` hands it over), so trials scored after Tune's last experiment
checkpoint keep their results and nothing is scored twice.

A trial stopped early by a scheduler enters the log (and the driver's update) with the reward
of its last report, ``early_stopped=True`` and the ``epochs`` it trained (see docs/search.md
for why).

Failures: an error inside a trial (exception, NaN loss, out of memory) is a result with
``status='failed'``, scored with ``search.failure_reward``. A trial whose worker dies (its node
is lost, the process is killed) is started again by Tune with the same architecture, on any
node with free resources, up to ``ray.max_failures`` times (Tune's ``FailureConfig``); after
that it is recorded once as failed. Either way every architecture is scored exactly once.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

from mmengine.logging import MMLogger

from .config import SearchSettings
from .driver import SearchDriver
from .proxy import ProxyTrial
from .records import record_trial, search_logger, write_log

if TYPE_CHECKING:
    from ray.tune.schedulers import TrialScheduler

try:
    from ray import tune
    from ray.tune.search import Searcher
except ImportError as exc:  # pragma: no cover - depends on the optional extra
    raise ImportError('the Ray backend needs Ray Tune: pip install -e ".[search]" (or '
                      f'pip install "ray[tune]"); import failed with: {exc}') from None

EXPERIMENT_NAME = 'tune'
#: What Tune optimizes.
METRIC, MODE = 'reward', 'max'
#: The keys of a reported result the driver takes.
RESULT_KEYS = ('status', 'error', 'accuracy', 'flops', 'params', 'seconds', 'cpu_seconds',
               'epochs')

#: The driver of each search this process runs, by work dir: what a searcher unpickled by
#: ``Tuner.restore`` drives (its own pickle does not hold one).
_DRIVERS: Dict[str, SearchDriver] = {}


def _key(work_dir: str) -> str:
    return str(Path(work_dir).resolve())


class DriverSearcher(Searcher):
    """Ray Tune searcher whose suggestions come from a :class:`SearchDriver`.

    Args:
        driver: the search driver (any strategy); it saves its state after every result.
        work_dir: the search's work dir (state, log).
    """

    def __init__(self, driver: Optional[SearchDriver], work_dir: str):
        super().__init__(metric=METRIC, mode=MODE)
        self.work_dir = _key(work_dir)
        self.driver = driver
        #: Tune trial id -> architecture index: this searcher's whole own state.
        self.trials: Dict[str, int] = {}

    # Tune pickles the searcher into tuner.pkl: without the driver (search_state.pth has it).
    def __getstate__(self) -> Dict[str, Any]:
        return dict(self.__dict__, driver=None)

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_text(json.dumps(dict(trials=self.trials)))

    def restore(self, checkpoint_path: str) -> None:
        """Tune's checkpoint says which trial held which architecture; the driver is the one
        :func:`run_ray` registered for this work dir (loaded from ``search_state.pth``)."""
        self.trials = {k: int(v) for k, v in
                       json.loads(Path(checkpoint_path).read_text())['trials'].items()}
        self.driver = None
        self._driver()

    def _driver(self) -> SearchDriver:
        if self.driver is None:
            driver = _DRIVERS.get(self.work_dir)
            if driver is None:
                raise RuntimeError(f'no search driver for {self.work_dir} in this process: '
                                   f'resume a Ray search with tools/search.py --resume (or '
                                   f'run_search(..., resume=True)), not Tuner.restore alone')
            self._hold(driver)
        return self.driver

    def _hold(self, driver: SearchDriver) -> None:
        """Take ``driver``: its unscored architectures that a restored Tune trial holds are
        out (Tune runs that trial again); the others are handed out again by :meth:`suggest`."""
        driver.release_assignments()
        held = {index: trial_id for trial_id, index in self.trials.items()}
        for entry in driver.batch:
            if not entry['scored'] and entry['index'] in held:
                entry['assigned'] = held[entry['index']]
        self.driver = driver

    def _logger(self) -> MMLogger:
        return search_logger(self.work_dir)

    def suggest(self, trial_id: str) -> Optional[Dict[str, Any]]:
        driver = self._driver()
        proposal = driver.propose(trial_id)
        if proposal is None:
            if driver.num_sampled >= driver.max_trials and not any(
                    e['assigned'] is None for e in driver.batch if not e['scored']):
                return Searcher.FINISHED
            return None
        self.trials[trial_id] = proposal['index']
        config = dict(index=proposal['index'], tokens=proposal['tokens'])
        reason = driver.infeasible_reason(proposal['tokens'])
        if reason is not None:
            config['infeasible'] = reason
        else:
            latency_ms, _ = driver.predict_latency(driver.space.decode(proposal['tokens']))
            if latency_ms is not None:
                config['latency_ms'] = latency_ms
        return config

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None,
                          error: bool = False) -> None:
        driver = self._driver()
        index = self.trials.get(trial_id)
        if index is None or index not in driver.pending_indices():
            return  # not ours, or scored before a restore (Tune ran it again)
        if error or not result:
            outcome = dict(status='failed', error=f'Ray Tune trial {trial_id} errored (see its '
                           f'error.txt in the Tune experiment folder)', early_stopped=False)
        else:
            outcome = {k: result.get(k) for k in RESULT_KEYS}
            outcome['status'] = outcome['status'] or 'ok'
            outcome['error'] = outcome['error'] or None
            epochs, max_epochs = result.get('epochs'), result.get('max_epochs')
            outcome['early_stopped'] = bool(outcome['status'] == 'ok' and epochs is not None
                                            and max_epochs is not None and epochs < max_epochs)
        record = driver.complete(index, outcome)
        record_trial(self.work_dir, driver, record, self._logger())


#: The name this searcher had while the driver was PPO only.
ControllerSearcher = DriverSearcher


def _tune_result(result: Dict[str, Any], config: Dict[str, Any]) -> Dict[str, Any]:
    """What a trial reports to Tune: flat, no None error (Tune's loggers want values)."""
    out = dict(result, index=config['index'], error=result.get('error') or '')
    if config.get('latency_ms') is not None:
        out['latency_ms'] = config['latency_ms']
    return out


def proxy_trainable(config: Dict[str, Any], trial: ProxyTrial) -> None:
    """A Tune function trainable: one proxy trial (the embedded backend's trial function),
    reporting its result, ``reward`` included, after every validation; a failure is reported
    once more at the end."""
    import uninet_mm  # noqa: F401  (registers UniNet in this worker)

    def report(result: Dict[str, Any]) -> None:
        tune.report(_tune_result(result, config))

    if config.get('infeasible'):
        result = dict(status='failed', error=config['infeasible'], seconds=0.0, epochs=0)
        result['reward'] = trial.score(result)
    else:
        result = trial(config['tokens'], config['index'], on_epoch=report,
                       latency_ms=config.get('latency_ms'))
        if result['status'] == 'ok':
            return  # its last validation was the last report
    # Shown in the driver's console (ray.init(log_to_driver=True)); search.log has it too.
    logging.getLogger('uninet_search').warning(f'trial {config["index"]} failed: '
                                               f'{result["error"]}')
    report(result)


def build_scheduler(settings: SearchSettings) -> Optional['TrialScheduler']:
    """The Ray Tune trial scheduler of ``search.scheduler`` (None: Tune's FIFO), counting
    time in proxy epochs (``training_iteration``: one report per validated epoch)."""
    cfg = settings.search.get('scheduler')
    if cfg is None:
        return None
    from ray.tune.schedulers import ASHAScheduler, MedianStoppingRule

    kwargs = dict(cfg)
    kind = kwargs.pop('type')
    if kind == 'asha':
        return ASHAScheduler(time_attr='training_iteration', **kwargs)
    return MedianStoppingRule(time_attr='training_iteration', **kwargs)


def _trainable(settings: SearchSettings, proxy: Dict[str, Any], work_dir: str) -> Any:
    resources = dict(cpu=settings.ray['cpus_per_trial'], gpu=settings.ray['gpus_per_trial'])
    trial = ProxyTrial(settings.space, proxy, str(Path(work_dir).resolve() / 'trials'),
                       reward=settings.reward, failure_reward=settings.search['failure_reward'],
                       every_epoch=settings.search['val_every_epoch'])
    return tune.with_resources(tune.with_parameters(proxy_trainable, trial=trial), resources)


def run_ray(settings: SearchSettings, proxy: Dict[str, Any], driver: SearchDriver,
            work_dir: str, resume: bool = False, logger: Optional[MMLogger] = None,
            address: Optional[str] = None) -> Tuple[SearchDriver, Any]:
    """Run the remaining trials of ``driver`` with Ray Tune.

    With ``resume`` and a Tune experiment in ``work_dir/ray``, the experiment is restored with
    ``Tuner.restore`` and its searcher drives ``driver`` (the state ``prepare_search`` loaded
    and checked); otherwise a new Tune experiment starts from ``driver``.

    Returns:
        ``(driver, result_grid)``: the driver after the search, and Tune's ``ResultGrid``
        (None when nothing was left to run).
    """
    import ray

    logger = logger or MMLogger.get_current_instance()
    work_dir = _key(work_dir)
    if not ray.is_initialized():
        # log_to_driver: the workers' warnings and errors reach this console
        ray.init(address=address, include_dashboard=False, log_to_driver=True)
    storage = Path(work_dir) / 'ray'
    experiment = storage / EXPERIMENT_NAME
    trainable = _trainable(settings, proxy, work_dir)
    driver.release_assignments()
    write_log(work_dir, driver.history)
    _DRIVERS[work_dir] = driver
    try:
        if resume and tune.Tuner.can_restore(str(experiment)):
            logger.info(f'restoring the Ray Tune experiment in {experiment}')
            tuner = tune.Tuner.restore(str(experiment), trainable=trainable,
                                       resume_unfinished=True, resume_errored=True)
        else:
            remaining = driver.max_trials - len(driver.history)
            if remaining <= 0:
                return driver, None
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    metric=METRIC, mode=MODE, search_alg=DriverSearcher(driver, work_dir),
                    scheduler=build_scheduler(settings), num_samples=remaining,
                    max_concurrent_trials=settings.ray['max_concurrent'],
                    reuse_actors=settings.ray['reuse_actors']),
                run_config=tune.RunConfig(
                    name=EXPERIMENT_NAME, storage_path=str(storage),
                    verbose=settings.ray['verbose'],
                    failure_config=tune.FailureConfig(
                        max_failures=settings.ray['max_failures'])))
        grid = tuner.fit()
    finally:
        _DRIVERS.pop(work_dir, None)
    return driver, grid
