"""The Ray backend of the search on a multi-node Ray cluster (a head and two worker nodes on this
machine, ``ray.cluster_utils.Cluster``), driven by ``tools/search.py --backend ray
--ray-address ADDR`` in a process of its own, with failures in the middle of the work:

- a worker node is killed while it runs a trial: Tune starts the trial again on another node
  (``ray.max_failures``), the search finishes, every architecture is scored exactly once;
- the driver is killed (SIGKILL) in the middle of a search: the same command with ``--resume``
  finishes it (``Tuner.restore``), with the same guarantee.

The head node has no CPUs for trials, so every trial runs on a worker node.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Tuple

import pytest
import torch

from uninet_mm.search.driver import STATE_NAME
from uninet_mm.search.records import read_log
from uninet_mm.search.searchers.random_search import STATS_EVERY

from .test_dist_train import free_port
from .test_search_proxy import tiny_cfg
from .test_slurm import cluster_unavailable

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture(scope='module')
def ray_cluster():
    """A head node (no CPUs) and two worker nodes with one CPU each; torn down afterwards."""
    try:
        from ray import cluster_utils
    except ImportError as exc:
        cluster_unavailable(f'Ray cannot run here: {exc} (pip install -r requirements/search.txt)')
    # Ray's files, sockets and its note of "the current cluster on this machine" (which a
    # plain ray.init() would connect to) go to a folder of this fixture, not /tmp/ray; short,
    # since Ray's socket paths must stay under 108 characters.
    temp_dir = tempfile.mkdtemp(prefix='uray')
    (Path(temp_dir) / 'ray').mkdir()
    saved = os.environ.get('RAY_TMPDIR')
    os.environ['RAY_TMPDIR'] = temp_dir
    cluster = None
    try:
        cluster = cluster_utils.Cluster(initialize_head=True, head_node_args=dict(
            num_cpus=0, gcs_server_port=free_port(), include_dashboard=False))
        workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        yield cluster, workers
    finally:
        if cluster is not None:
            cluster.shutdown()
        if saved is None:
            os.environ.pop('RAY_TMPDIR', None)
        else:
            os.environ['RAY_TMPDIR'] = saved
        shutil.rmtree(temp_dir, ignore_errors=True)


def _search_cmd(cfg_path: Path, work: Path, address: str, max_trials: int) -> list:
    return [sys.executable, str(REPO / 'tools' / 'search.py'), str(cfg_path), '--work-dir',
            str(work), '--backend', 'ray', '--ray-address', address, '--max-trials',
            str(max_trials)]


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS='1')


#: Searcher settings small enough that six trials reach each searcher's second phase
#: (evolution's mutations, NSGA-II's generations after the first).
SEARCHERS = dict(ppo=dict(type='ppo'), random=dict(type='random'),
                 evolution=dict(type='evolution', population_size=3, sample_size=2),
                 nsga2=dict(type='nsga2', population_size=3))


def _write_cfg(tmp_path: Path, data_root: Path, epochs: int, searcher: str = 'ppo') -> Path:
    cfg = tiny_cfg(data_root, archs_per_update=2)
    cfg.searcher = dict(SEARCHERS[searcher])
    cfg.proxy.runner.train_cfg.max_epochs = epochs  # a few seconds per trial: time to kill
    cfg.ray.update(cpus_per_trial=1, max_concurrent=2, max_failures=2)
    path = tmp_path / 'search_cfg.py'
    cfg.dump(str(path))
    return path


def _assert_each_architecture_scored_once(work: Path, max_trials: int,
                                          searcher: str = 'ppo') -> Tuple[list, dict]:
    """Returns the log and the saved search state."""
    log = read_log(str(work))
    indices = [r['trial'] for r in log]
    assert sorted(indices) == list(range(max_trials)), indices  # none lost, none twice
    state = torch.load(work / STATE_NAME, map_location='cpu', weights_only=True)
    assert sorted(r['trial'] for r in state['history']) == list(range(max_trials))
    assert not state['batch']  # nothing sampled and left waiting
    assert state['searcher']['identity']['type'] == searcher
    # One statistics record per window of results, over the kill: PPO's per update (two
    # architectures), evolution's and NSGA-II's per population, random search's every
    # STATS_EVERY results.
    every = (dict(ppo=2, random=STATS_EVERY).get(searcher)
             or SEARCHERS[searcher]['population_size'])
    assert [u['num_archs'] for u in state['updates']] == [every] * (max_trials // every)
    if searcher != 'ppo':  # ... and the searcher itself was told every result once
        assert state['searcher']['state']['stats']['count'] == max_trials
    return log, state


def _start(cmd: list, log: Path) -> subprocess.Popen:
    """The driver in a process of its own, its output in ``log``."""
    with open(log, 'w') as out:
        proc = subprocess.Popen(cmd, env=_env(), stdout=out, stderr=subprocess.STDOUT)
    proc.log = log
    return proc


def _ray_log_problems(limit: int = 40) -> str:
    """The last warning and error lines of the cluster's own logs (raylets, GCS, workers,
    runtime-env agents), for a failure message: trials once stayed PENDING for 5 min with
    their CPUs reserved, under heavy load, and the driver's log does not say why."""
    logs = Path(os.environ.get('RAY_TMPDIR', '/tmp')) / 'ray' / 'session_latest' / 'logs'
    marks = (' E ', ' W ', 'ERROR', 'WARNING', 'Failed')
    lines = []
    for path in sorted(logs.glob('*')) if logs.is_dir() else []:
        if path.is_file():
            lines += [f'{path.name}: {line}' for line in
                      path.read_text(errors='replace').splitlines()
                      if any(mark in line for mark in marks)]
    return '\n'.join(lines[-limit:]) or f'(no warnings or errors in {logs})'


def _wait(predicate, proc: subprocess.Popen, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f'the search ended (rc {proc.returncode}) before {what}:\n'
                                 f'{proc.log.read_text()[-3000:]}')
        if time.monotonic() > deadline:
            raise AssertionError(f'{what}: not within {timeout} s; the driver:\n'
                                 f'{proc.log.read_text()[-1500:]}\nthe cluster\'s logs:\n'
                                 f'{_ray_log_problems()}')
        time.sleep(0.1)


def _started_trials(work: Path) -> dict:
    """trial folder -> number of runs started in it (mmengine makes one timestamped log folder
    per run; a trial started again after a failure has two)."""
    trials = work / 'trials'
    if not trials.is_dir():
        return {}
    return {d.name: len([r for r in d.iterdir() if r.is_dir()]) for d in trials.iterdir()}


@pytest.fixture(scope='module')
def search_data(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp('search_data')


def test_worker_node_killed_mid_trial_is_retried_and_search_finishes(ray_cluster, tmp_path,
                                                                     search_data):
    cluster, workers = ray_cluster
    max_trials = 4
    cfg_path = _write_cfg(tmp_path, search_data, epochs=4)
    work = tmp_path / 'work'
    driver_log = tmp_path / 'driver.out'
    proc = _start(_search_cmd(cfg_path, work, cluster.address, max_trials), driver_log)
    try:
        # Both worker nodes run a trial (one CPU each: two trials started and not scored):
        # kill one of the nodes.
        def two_running() -> bool:
            scored = {f'{r["trial"]:05d}' for r in read_log(str(work))}
            return len(set(_started_trials(work)) - scored) == 2

        _wait(two_running, proc, 'two trials running at once')
        victim = workers.pop(0)
        cluster.remove_node(victim, allow_graceful=False)
        # A replacement node joins, as an autoscaler would start one.
        workers.append(cluster.add_node(num_cpus=1))
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, driver_log.read_text()[-5000:]
    log, _ = _assert_each_architecture_scored_once(work, max_trials)
    # The trial that lost its node was started again (same architecture, same folder) and
    # scored from the second run: Tune's FailureConfig, ray.max_failures = 2.
    restarted = [name for name, runs in _started_trials(work).items() if runs >= 2]
    assert restarted, _started_trials(work)
    assert all(r['status'] == 'ok' for r in log), [(r['trial'], r['error']) for r in log]


@pytest.mark.parametrize('searcher', list(SEARCHERS))
def test_driver_killed_mid_search_resumes_with_the_same_command(ray_cluster, tmp_path,
                                                                search_data, searcher):
    cluster, _ = ray_cluster
    max_trials = 6
    cfg_path = _write_cfg(tmp_path, search_data, epochs=2, searcher=searcher)
    work = tmp_path / 'work'
    cmd = _search_cmd(cfg_path, work, cluster.address, max_trials)
    proc = _start(cmd, tmp_path / 'driver.out')
    try:
        _wait(lambda: len(read_log(str(work))) >= 3, proc, 'three trials scored')
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    scored_before = {r['trial']: r for r in read_log(str(work))}
    assert 3 <= len(scored_before) < max_trials, sorted(scored_before)

    resumed = subprocess.run(cmd + ['--resume'], env=_env(), capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-5000:]
    log, state = _assert_each_architecture_scored_once(work, max_trials, searcher)
    # The architectures scored before the kill keep their index and their result (even those
    # Tune's own experiment checkpoint had not seen finish): none sampled or scored anew.
    final = {r['trial']: r for r in log}
    for index, before in scored_before.items():
        for key in ('tokens', 'accuracy', 'reward'):
            assert final[index][key] == before[key], (index, key, before, final[index])
    # ... and the resumed run kept their work: some of them were not trained again.
    runs = _started_trials(work)
    assert any(runs[f'{i:05d}'] == 1 for i in scored_before), runs
    # The same outputs as any finished search, from this searcher.
    assert all(r['status'] == 'ok' and r['searcher'] == searcher for r in log), log
    assert (work / 'top5.json').is_file() and (work / 'pareto.json').is_file()
    if searcher == 'evolution':  # six results in, the population is full
        population = state['searcher']['state']['population']
        assert len(population) == SEARCHERS['evolution']['population_size'], population
    if searcher == 'nsga2':  # optuna's study was told each result once, over the restore
        trials = state['searcher']['state']['trials']
        assert [t['state'] for t in trials] == ['COMPLETE'] * max_trials, trials
