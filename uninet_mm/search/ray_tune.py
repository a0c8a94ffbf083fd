"""Run a search on a Ray cluster with Ray Tune (optional: ``pip install -e .[search]``).

:class:`ControllerSearcher` is a Ray Tune ``Searcher`` around the same
:class:`~uninet_mm.search.driver.SearchDriver` the embedded loop uses: ``suggest`` hands out the
architectures of the current batch (None while the batch waits for results, so PPO stays
on-policy), ``on_trial_complete`` scores a result, updates the controller when the batch is
complete, and writes ``search_state.pth`` and the log line; ``save`` / ``restore`` carry the
driver's whole state (which trial holds which architecture included) through Tune's
experiment checkpoints, so ``Tuner.restore`` continues an interrupted cluster run: trials that
were running are started again by Tune with the same architecture, none is sampled twice.

Each trial runs :func:`~uninet_mm.search.proxy.run_proxy_trial` in a Tune worker with
``ray.cpus_per_trial`` CPUs and ``ray.gpus_per_trial`` GPUs.

Failures: an error inside a trial (exception, NaN loss, out of memory) is a result with
``status='failed'``, scored with ``search.failure_reward``. A trial whose worker dies (its node
is lost, the process is killed) is started again by Tune with the same architecture, on any
node with free resources, up to ``ray.max_failures`` times (Tune's ``FailureConfig``); after
that it is recorded once as failed. Either way every architecture is scored exactly once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

from mmengine.logging import MMLogger

from .config import SearchSettings
from .driver import STATE_NAME, SearchDriver
from .records import record_trial, search_logger, write_log
from .proxy import run_proxy_trial

try:
    from ray import tune
    from ray.tune.search import Searcher
except ImportError as exc:  # pragma: no cover - depends on the optional extra
    raise ImportError('the Ray backend needs Ray Tune: pip install -e ".[search]" (or '
                      f'pip install "ray[tune]"); import failed with: {exc}') from None

EXPERIMENT_NAME = 'tune'
RESULT_KEYS = ('status', 'error', 'accuracy', 'flops', 'params', 'seconds', 'cpu_seconds')


class ControllerSearcher(Searcher):
    """Ray Tune searcher whose suggestions come from the UniNet search controller.

    Args:
        driver_kwargs: keyword arguments of :class:`SearchDriver` (rebuilt after unpickling).
        work_dir: the search's work dir (state, log).
        state: a :meth:`SearchDriver.state_dict` to continue from (None: a new search).
    """

    def __init__(self, driver_kwargs: Dict[str, Any], work_dir: str,
                 state: Optional[Dict[str, Any]] = None):
        super().__init__(metric=None, mode=None)
        self._driver_kwargs = driver_kwargs
        self.work_dir = str(work_dir)
        self.driver = SearchDriver(**driver_kwargs)
        if state is not None:
            self.driver.load_state_dict(state)

    # Tune pickles the searcher (tuner.pkl); the driver travels as its state dict.
    def __getstate__(self) -> Dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k != 'driver'}
        state['_driver_state'] = self.driver.state_dict()
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        driver_state = state.pop('_driver_state')
        self.__dict__.update(state)
        self.driver = SearchDriver(**self._driver_kwargs)
        self.driver.load_state_dict(driver_state)

    def _logger(self) -> MMLogger:
        return search_logger(self.work_dir)

    def suggest(self, trial_id: str) -> Optional[Dict[str, Any]]:
        proposal = self.driver.propose(trial_id)
        if proposal is None:
            if self.driver.num_sampled >= self.driver.max_trials and not any(
                    e['assigned'] is None for e in self.driver.batch if not e['scored']):
                return Searcher.FINISHED
            return None
        kwargs = self.driver.space.backbone_kwargs(proposal['tokens'])
        return dict(index=proposal['index'], tokens=proposal['tokens'],
                    backbone_kwargs=kwargs)

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None,
                          error: bool = False) -> None:
        entry = next((e for e in self.driver.batch
                      if e['assigned'] == trial_id and not e['scored']), None)
        if entry is None:
            return  # not ours (or already scored before a restore)
        if error or not result:
            outcome = dict(status='failed', error=f'Ray Tune trial {trial_id} errored (see its '
                           f'error.txt in the Tune experiment folder)')
        else:
            outcome = {k: result.get(k) for k in RESULT_KEYS}
            outcome['status'] = outcome['status'] or 'ok'
            outcome['error'] = outcome['error'] or None
        record = self.driver.complete(entry['index'], outcome)
        record_trial(self.work_dir, self.driver, record, self._logger())

    def save(self, checkpoint_path: str) -> None:
        import torch
        torch.save(dict(driver=self.driver.state_dict(), work_dir=self.work_dir),
                   checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        import torch
        saved = torch.load(checkpoint_path, map_location='cpu', weights_only=True)
        self.driver.load_state_dict(saved['driver'])
        self.work_dir = saved['work_dir']
        self._catch_up_with_state_file()
        write_log(self.work_dir, self.driver.history)

    def _catch_up_with_state_file(self) -> None:
        """Continue from ``search_state.pth`` when it is newer than Tune's checkpoint.

        Tune checkpoints the experiment (and this searcher) every 10 s or more;
        ``search_state.pth`` is written after every scored trial. After a killed driver, the
        trials scored since Tune's last checkpoint keep their results: the driver continues
        from the state file, the trials Tune runs again for them are ignored when they end
        (:meth:`on_trial_complete` finds no unscored architecture for them), and an
        architecture of the state file's batch that no restored Tune trial holds is handed out
        again by :meth:`suggest`.
        """
        import torch
        path = Path(self.work_dir) / STATE_NAME
        if not path.is_file():
            return
        newer = torch.load(path, map_location='cpu', weights_only=True)
        if len(newer['history']) <= len(self.driver.history):
            return
        # The trial ids Tune restored, by architecture index.
        held = {e['index']: e['assigned'] for e in self.driver.batch
                if not e['scored'] and e['assigned'] is not None}
        self.driver.load_state_dict(newer)
        for entry in self.driver.batch:
            if not entry['scored']:
                entry['assigned'] = held.get(entry['index'])
        self._logger().info(
            f'{path} is newer than Ray Tune\'s checkpoint: continuing from its '
            f'{len(self.driver.history)} scored trials')


def proxy_trainable(config: Dict[str, Any], proxy: Dict[str, Any], trial_dir: str) -> None:
    """A Tune function trainable: one proxy trial, one reported result."""
    import uninet_mm  # noqa: F401  (registers UniNet in this worker)
    result = run_proxy_trial(proxy, config['backbone_kwargs'], trial_dir,
                             trial_name=f'{config["index"]:05d}')
    result['error'] = result['error'] or ''
    tune.report(result)


def _trainable(settings: SearchSettings, proxy: Dict[str, Any], work_dir: str):
    resources = dict(cpu=settings.ray['cpus_per_trial'], gpu=settings.ray['gpus_per_trial'])
    trainable = tune.with_parameters(proxy_trainable, proxy=proxy,
                                     trial_dir=str(Path(work_dir).resolve() / 'trials'))
    return tune.with_resources(trainable, resources)


def run_ray(settings: SearchSettings, proxy: Dict[str, Any], driver: SearchDriver,
            work_dir: str, resume: bool = False, logger: Optional[MMLogger] = None,
            address: Optional[str] = None) -> SearchDriver:
    """Run the remaining trials of ``driver`` with Ray Tune; returns the final driver.

    With ``resume`` and a Tune experiment in ``work_dir/ray``, the experiment is restored with
    ``Tuner.restore`` (the searcher's state comes from Tune's own checkpoint); otherwise a new
    Tune experiment starts from ``driver`` (e.g. one resumed from ``search_state.pth``).
    """
    import ray

    logger = logger or MMLogger.get_current_instance()
    work_dir = str(Path(work_dir).resolve())
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    storage = Path(work_dir) / 'ray'
    experiment = storage / EXPERIMENT_NAME
    trainable = _trainable(settings, proxy, work_dir)
    if resume and tune.Tuner.can_restore(str(experiment)):
        logger.info(f'restoring the Ray Tune experiment in {experiment}')
        tuner = tune.Tuner.restore(str(experiment), trainable=trainable, resume_unfinished=True,
                                   resume_errored=True)
    else:
        driver.release_assignments()
        write_log(work_dir, driver.history)
        searcher = ControllerSearcher(settings.driver_kwargs(), work_dir,
                                      state=driver.state_dict())
        remaining = driver.max_trials - len(driver.history)
        if remaining <= 0:
            return driver
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=remaining,
                                        max_concurrent_trials=settings.ray['max_concurrent']),
            run_config=tune.RunConfig(
                name=EXPERIMENT_NAME, storage_path=str(storage), verbose=0,
                failure_config=tune.FailureConfig(max_failures=settings.ray['max_failures'])))
    tuner.fit()
    final = SearchDriver(**settings.driver_kwargs())
    final.load(work_dir, max_trials=driver.max_trials)
    return final
