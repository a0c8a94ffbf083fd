"""The search loop with fast fake trials: logging, PPO updates, kill + resume, failing trials,
bad configs stopping before any work."""
import json
import math
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from uninet_mm.search.config import SearchConfigError, check_search_config
from uninet_mm.search.driver import STATE_NAME, SearchDriver
from uninet_mm.search.embedded import run_embedded
from uninet_mm.search.records import read_log
from uninet_mm.search.proxy import ProxyConfigError
from uninet_mm.search.runner import prepare_search, run_search

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC = REPO / 'configs' / 'search' / 'uninet_search_synthetic.py'
IN1K = REPO / 'configs' / 'search' / 'uninet_search_in1k.py'
LOG_FIELDS = ('arch', 'input_size', 'flops', 'params', 'accuracy', 'reward', 't', 'alpha',
              'seconds', 'status', 'error', 'trial', 'tokens')


pytestmark = pytest.mark.usefixtures('one_thread')


def synthetic_cfg(**search) -> Config:
    cfg = Config.fromfile(str(SYNTHETIC))
    cfg.search.update(search)
    return cfg


def fake_trial(tokens, index):
    """Deterministic score: accuracy falls with the token values, FLOPs grow with them."""
    return dict(accuracy=1.0 - 0.03 * sum(tokens) / len(tokens),
                flops=15e6 * (1 + 0.05 * sum(tokens[:5])), params=1e5 + index, seconds=0.0)


def make_driver(max_trials=12, archs_per_update=4, failure_reward=0.0):
    settings = check_search_config(synthetic_cfg(archs_per_update=archs_per_update,
                                                 failure_reward=failure_reward),
                                   max_trials=max_trials)
    return SearchDriver(**settings.driver_kwargs())


class Killed(BaseException):
    """Stands in for SIGKILL / Ctrl-C in the middle of a trial."""


def test_embedded_loop_logs_every_trial_and_updates(tmp_path):
    driver = run_embedded(make_driver(12, 4), fake_trial, str(tmp_path))
    log = read_log(str(tmp_path))
    assert [r['trial'] for r in log] == list(range(12))
    for record in log:
        assert set(LOG_FIELDS) <= set(record)
        assert record['status'] == 'ok' and record['error'] is None
        assert record['input_size'] == [32, 32]
        expected = record['accuracy'] * (record['t'] / record['flops']) ** 0.07
        assert record['reward'] == pytest.approx(expected)
    assert len(driver.updates) == 3
    assert [u['num_archs'] for u in driver.updates] == [4, 4, 4]
    assert driver.updates[0]['mean_reward'] == pytest.approx(
        sum(r['reward'] for r in log[:4]) / 4)
    assert (tmp_path / STATE_NAME).is_file()


def test_kill_mid_batch_and_resume_continues_the_same_search(tmp_path):
    """A search killed in the middle of a batch and resumed scores every architecture exactly
    once and ends exactly where the uninterrupted search ends (same architectures, same
    controller weights): weights, optimizer, baseline, RNG and pending archs were restored."""
    reference = run_embedded(make_driver(12, 4), fake_trial, str(tmp_path / 'ref'))

    calls = []

    def killed_at_6(tokens, index):
        calls.append(index)
        if index == 6:  # the third trial of the second batch (trials 4..7)
            raise Killed()
        return fake_trial(tokens, index)

    work = str(tmp_path / 'run')
    with pytest.raises(Killed):
        run_embedded(make_driver(12, 4), killed_at_6, work)
    assert [r['trial'] for r in read_log(work)] == [0, 1, 2, 3, 4, 5]
    # A log line written after the checkpoint, then the kill: the resume must not keep it twice.
    with open(Path(work) / 'search_log.jsonl', 'a') as f:
        f.write(json.dumps(read_log(work)[-1]) + '\n')

    resumed = make_driver(12, 4)
    resumed.load(work)
    assert resumed.pending_indices() == [6, 7]
    run_embedded(resumed, fake_trial, work)

    log = read_log(work)
    assert [r['trial'] for r in log] == list(range(12))
    assert [r['tokens'] for r in log] == [r['tokens'] for r in reference.history]
    assert ([u['mean_reward'] for u in resumed.updates]
            == [u['mean_reward'] for u in reference.updates])
    assert resumed.ppo.baseline == reference.ppo.baseline
    for name, value in reference.controller.state_dict().items():
        torch.testing.assert_close(resumed.controller.state_dict()[name], value, rtol=0, atol=0)


def test_failing_trials_are_recorded_and_the_search_goes_on(tmp_path):
    def flaky(tokens, index):
        if index == 1:
            raise RuntimeError('injected failure')
        if index == 2:
            return dict(status='failed', error='out of memory: injected')
        if index == 5:
            return dict(accuracy=float('nan'), flops=1e7, params=1)
        return fake_trial(tokens, index)

    driver = run_embedded(make_driver(8, 4, failure_reward=0.0), flaky, str(tmp_path / 'a'))
    log = read_log(str(tmp_path / 'a'))
    assert [r['trial'] for r in log] == list(range(8))
    failed = {r['trial']: r for r in log if r['status'] == 'failed'}
    assert sorted(failed) == [1, 2, 5]
    assert 'RuntimeError: injected failure' in failed[1]['error']
    assert 'out of memory' in failed[2]['error']
    assert 'accuracy' in failed[5]['error']
    assert all(r['reward'] == 0.0 for r in failed.values())
    assert [u['num_archs'] for u in driver.updates] == [4, 4]

    # failure_reward=None: failed trials are logged but left out of the update.
    driver = run_embedded(make_driver(8, 4, failure_reward=None), flaky, str(tmp_path / 'b'))
    assert [u['num_archs'] for u in driver.updates] == [2, 3]
    assert all(math.isfinite(u['mean_reward']) for u in driver.updates)


@pytest.mark.parametrize('section, change, words', [
    ('search_space', dict(gops=('SA', 'Attention')), ['gops', 'Attention']),
    ('search_space', dict(expansions=()), ['expansions']),
    ('search_space', dict(widths=[]), ['widths']),
    ('reward', dict(target=0), ['t', 'positive']),
    ('reward', dict(target=-5e6), ['t', 'positive']),
    ('search', dict(max_trials=0), ['max_trials']),
    ('search', dict(archs_per_update=2.5), ['archs_per_update']),
    ('ppo', dict(clip=-1), ['clip']),
])
def test_bad_search_configs_stop_with_a_message(tmp_path, section, change, words):
    cfg = synthetic_cfg()
    cfg[section].update(change)
    with pytest.raises(SearchConfigError) as info:
        run_search(cfg, str(tmp_path), trial_fn=fake_trial)
    for word in words:
        assert word in str(info.value)
    assert not (tmp_path / STATE_NAME).exists() and not (tmp_path / 'trials').exists()


def test_missing_imagenet_stops_before_any_work(tmp_path):
    cfg = Config.fromfile(str(IN1K))
    cfg.proxy.data.data_root = str(tmp_path / 'no_imagenet')
    with pytest.raises(ProxyConfigError) as info:
        run_search(cfg, str(tmp_path / 'work'), trial_fn=fake_trial)
    assert 'ImageNet-1K not found' in str(info.value)
    assert 'data_root' in str(info.value)
    assert not (tmp_path / 'work' / STATE_NAME).exists()


def test_in1k_config_holds_the_paper_setting():
    settings = check_search_config(Config.fromfile(str(IN1K)))
    assert settings.search['max_trials'] == 2000 and settings.search['top_k'] == 5
    assert settings.reward.target == 550e6 and settings.reward.alpha == 0.07
    assert settings.proxy['data']['holdout'] == 50000
    assert settings.proxy['runner']['train_cfg']['max_epochs'] == 5
    assert settings.space.size == 1875 ** 5


def test_resume_refuses_another_search_and_fresh_start_refuses_old_state(tmp_path):
    run_embedded(make_driver(4, 4), fake_trial, str(tmp_path))
    with pytest.raises(FileExistsError, match='--resume'):
        prepare_search(synthetic_cfg(), str(tmp_path))
    other = synthetic_cfg(archs_per_update=4)
    other.reward.target = 30e6
    other.proxy.data.update(root=str(tmp_path / 'data'), num_train=5, num_val=5)
    with pytest.raises(ValueError, match='reward'):
        prepare_search(other, str(tmp_path), resume=True)


def test_ray_searcher_hands_out_each_arch_once_and_survives_save_restore(tmp_path):
    """DriverSearcher as Tune drives it: suggestions wait for the batch, results update the
    controller, and a pickled + restored searcher (Tuner.restore) drives the driver resumed
    from search_state.pth: it keeps the trials that were running and samples nothing twice."""
    import pickle

    from uninet_mm.search import ray_tune
    from uninet_mm.search.ray_tune import DriverSearcher

    settings = check_search_config(synthetic_cfg(archs_per_update=3), max_trials=6)
    searcher = DriverSearcher(SearchDriver(**settings.driver_kwargs()), str(tmp_path))
    assert (searcher.metric, searcher.mode) == ('reward', 'max')
    first = [searcher.suggest(f't{i}') for i in range(3)]
    assert [c['index'] for c in first] == [0, 1, 2]
    assert searcher.suggest('t3') is None  # the update waits for the batch
    assert 'latency_ms' not in first[0] and 'infeasible' not in first[0]
    searcher.on_trial_complete('t1', fake_trial(first[1]['tokens'], 1))
    searcher.on_trial_complete('t0', None, error=True)

    searcher.save(str(tmp_path / 'searcher.json'))
    pickled = pickle.dumps(searcher)  # what Tune keeps in tuner.pkl
    assert b'controller' not in pickled  # no driver state in it: search_state.pth has that
    restored = pickle.loads(pickled)
    resumed = SearchDriver(**settings.driver_kwargs())
    resumed.load(str(tmp_path))  # what prepare_search(resume=True) checks and hands on
    ray_tune._DRIVERS[str(tmp_path.resolve())] = resumed
    try:
        restored.restore(str(tmp_path / 'searcher.json'))
    finally:
        ray_tune._DRIVERS.clear()
    assert restored.driver is resumed
    assert restored.suggest('t9') is None  # t2 is still running: not handed out again
    restored.on_trial_complete('t2', fake_trial(first[2]['tokens'], 2))
    assert len(restored.driver.updates) == 1
    second = [restored.suggest(f'u{i}') for i in range(3)]
    assert [c['index'] for c in second] == [3, 4, 5]
    for i, config in enumerate(second):
        result = dict(fake_trial(config['tokens'], config['index']), epochs=1, max_epochs=2)
        restored.on_trial_complete(f'u{i}', result)
    restored.on_trial_complete('u0', fake_trial(second[0]['tokens'], 3))  # a rerun: ignored
    assert restored.suggest('u9') == restored.FINISHED
    log = read_log(str(tmp_path))
    assert sorted(r['trial'] for r in log) == list(range(6))
    assert [r['status'] for r in log][:2] == ['ok', 'failed']
    assert [r.get('early_stopped') for r in log] == [False] * 3 + [True] * 3
    assert [r.get('epochs') for r in log][3:] == [1, 1, 1]


def test_scheduler_settings_are_checked():
    cfg = synthetic_cfg(scheduler=dict(type='asha', grace_period=1))
    settings = check_search_config(cfg)
    epochs = cfg.proxy.runner.train_cfg.max_epochs  # max_t's default
    assert settings.search['scheduler'] == dict(type='asha', max_t=epochs, grace_period=1,
                                                reduction_factor=2, brackets=1)
    assert settings.search['val_every_epoch'] is True  # a scheduler needs a result per epoch
    assert check_search_config(synthetic_cfg()).search['val_every_epoch'] is False
    median = check_search_config(synthetic_cfg(scheduler=dict(type='median')))
    assert median.search['scheduler']['type'] == 'median'
    for bad, match in ((dict(type='hyperband'), "type 'hyperband' is unknown"),
                       ('asha', "type 'asha' is unknown"),
                       (dict(type='asha', rungs=3), r"unknown keys \['rungs'\]"),
                       (dict(type='asha', max_t=epochs + 1),
                        f'more than the {epochs} proxy epochs'),
                       (dict(type='asha', grace_period=0), 'grace_period = 0')):
        with pytest.raises(SearchConfigError, match=match):
            check_search_config(synthetic_cfg(scheduler=bad))
    with pytest.raises(SearchConfigError, match='needs search.val_every_epoch'):
        check_search_config(synthetic_cfg(scheduler=dict(type='asha'), val_every_epoch=False))

    from ray.tune.schedulers import ASHAScheduler, MedianStoppingRule

    from uninet_mm.search.ray_tune import build_scheduler
    asha = build_scheduler(settings)
    assert isinstance(asha, ASHAScheduler) and asha._time_attr == 'training_iteration'
    assert isinstance(build_scheduler(median), MedianStoppingRule)
    assert build_scheduler(check_search_config(synthetic_cfg())) is None
