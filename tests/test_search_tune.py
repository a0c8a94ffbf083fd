"""The Tune-native Ray backend on a local Ray instance (the proxy task run by Ray Tune trials,
end to end): Tune sees the reward after every proxy epoch, ASHA stops weak architectures early (and their records say so), the ResultGrid agrees
with top5.json, and results.csv / load_search hold the log's rows."""
import json

import pandas
import pytest

from uninet_mm.search.records import LOG_NAME, load_search, read_log
from uninet_mm.search.runner import run_search

from .test_search_proxy import tiny_cfg

pytestmark = pytest.mark.usefixtures('one_thread')

EPOCHS = 2


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp('search_data')


@pytest.mark.slow
def test_tune_sees_the_reward_every_epoch_and_asha_stops_weak_archs(tmp_path, data_root,
                                                                    local_ray):
    cfg = tiny_cfg(data_root, archs_per_update=2,
                   scheduler=dict(type='asha', grace_period=1, reduction_factor=2))
    cfg.proxy.runner.train_cfg.max_epochs = EPOCHS
    # 100 held-out images: with 20 of 20 classes an architecture can get every one wrong
    # after an epoch, and a zero reward would not show that a real one was reported.
    cfg.proxy.data.update(root=str(tmp_path / 'data'), num_val=100)
    # One trial at a time: the order in which trials reach ASHA's rung is fixed, and with the
    # fixed seeds so are the rewards: ASHA's decisions are the same on every run (here it
    # stops each trial that reaches the epoch-1 rung below the median of those before it).
    cfg.ray.update(max_concurrent=1, verbose=0)
    out = run_search(cfg, str(tmp_path), max_trials=4, backend='ray')
    log = read_log(str(tmp_path))
    by_trial = {r['trial']: r for r in log}
    assert sorted(by_trial) == [0, 1, 2, 3]
    assert all(r['status'] == 'ok' for r in log), [r['error'] for r in log]
    # The search's own outputs, as with the embedded backend: two PPO updates of two archs.
    assert len(out['driver'].updates) == 2
    assert (tmp_path / 'top5.json').is_file() and (tmp_path / 'search.png').is_file()
    assert (tmp_path / 'ray' / 'tune').is_dir()

    grid = out['result_grid']
    assert len(grid) == 4 and not grid.errors
    # Tune's own best result is the search's best architecture, with the same reward.
    best = grid.get_best_result(metric='reward', mode='max')
    top = json.loads((tmp_path / 'top5.json').read_text())[0]
    assert best.metrics['index'] == top['trial']
    assert best.config['tokens'] == top['tokens']
    assert best.metrics['reward'] == pytest.approx(top['reward'], rel=1e-9)

    # One Tune result per validated epoch, each with the reward; the record has the last.
    for result in grid:
        record = by_trial[result.metrics['index']]
        frame = result.metrics_dataframe
        assert list(frame['training_iteration']) == list(range(1, record['epochs'] + 1))
        assert list(frame['epochs']) == list(range(1, record['epochs'] + 1))
        assert frame['reward'].notna().all() and (frame['reward'] > 0).all()
        assert record['reward'] == pytest.approx(frame['reward'].iloc[-1], rel=1e-9)
        assert record['early_stopped'] == (record['epochs'] < EPOCHS)
    stopped = [r['trial'] for r in log if r['early_stopped']]
    assert stopped, 'ASHA stopped no trial'
    assert all(by_trial[i]['epochs'] == 1 for i in stopped)
    assert len(grid.get_dataframe(filter_metric='reward', filter_mode='max')) == 4

    # results.csv and load_search: the log's rows and fields.
    _assert_table_matches_log(tmp_path, log)


def _assert_table_matches_log(work, log):
    table = pandas.read_csv(work / 'results.csv')
    frame = load_search(str(work))
    assert list(table['trial']) == list(frame['trial']) == [r['trial'] for r in log]
    fields = set().union(*log)
    assert set(table.columns) == set(frame.columns) == fields
    assert list(table['reward']) == pytest.approx([r['reward'] for r in log])
    assert [json.loads(t) for t in table['tokens']] == [r['tokens'] for r in log]
    assert list(frame['arch']) == [r['arch'] for r in log]


def test_embedded_backend_writes_the_same_table(tmp_path, data_root):
    from .test_search_loop import fake_trial

    cfg = tiny_cfg(data_root, archs_per_update=2)
    run_search(cfg, str(tmp_path), max_trials=4, trial_fn=fake_trial)
    log = read_log(str(tmp_path))
    assert len(log) == 4
    _assert_table_matches_log(tmp_path, log)
    with pytest.raises(FileNotFoundError, match=LOG_NAME):
        load_search(str(tmp_path / 'nothing'))
