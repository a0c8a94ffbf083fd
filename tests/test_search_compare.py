"""tools/analysis_tools/compare_searches.py on generated search logs."""
import csv
import json

import numpy as np
import pytest

from uninet_mm.search.compare import compare_searches, load_run
from uninet_mm.search.records import write_log

from .test_tools import load_tool

compare_main = load_tool('analysis_tools/compare_searches.py')['main']


def fake_log(work_dir, searcher, rewards, seconds=1.0, with_searcher=True):
    """A search_log.jsonl with the given rewards (None: failed, left out)."""
    records = []
    for trial, reward in enumerate(rewards):
        record = dict(trial=trial, reward=reward, accuracy=None if reward is None else reward,
                      flops=1e6 * (1 + trial % 7), cost='flops', seconds=seconds,
                      status='failed' if reward is None else 'ok')
        if with_searcher:
            record['searcher'] = searcher
        records.append(record)
    work_dir.mkdir(parents=True)
    write_log(str(work_dir), records)
    return str(work_dir)


def test_compare_groups_by_searcher_and_writes_the_table_and_picture(tmp_path):
    rng = np.random.default_rng(0)
    dirs = [fake_log(tmp_path / 'ppo0', 'ppo', list(np.linspace(0.1, 0.9, 40))),
            fake_log(tmp_path / 'ppo1', 'ppo', list(np.linspace(0.2, 0.7, 40))),
            fake_log(tmp_path / 'rand0', 'random', [float(v) for v in rng.uniform(0, 0.5, 38)]
                     + [None, 0.95], seconds=2.0)]
    result = compare_searches(dirs, str(tmp_path / 'out'), window=10)
    rows = {r['searcher']: r for r in result['rows']}
    assert list(rows) == ['ppo', 'random']
    assert rows['ppo']['runs'] == 2 and rows['ppo']['trials'] == '40'
    assert rows['ppo']['best_reward_mean'] == pytest.approx((0.9 + 0.7) / 2)
    assert rows['ppo']['best_reward_std'] == pytest.approx(0.1)
    last = [np.mean(np.linspace(0.1, 0.9, 40)[-10:]), np.mean(np.linspace(0.2, 0.7, 40)[-10:])]
    assert rows['ppo']['last_mean_reward_mean'] == pytest.approx(np.mean(last))
    assert rows['random']['best_reward_mean'] == pytest.approx(0.95)
    assert rows['random']['best_reward_std'] == 0.0
    assert rows['random']['trial_seconds_mean'] == pytest.approx(80.0)
    with open(tmp_path / 'out' / 'compare.csv') as f:
        table = list(csv.DictReader(f))
    assert [r['searcher'] for r in table] == ['ppo', 'random']
    markdown = (tmp_path / 'out' / 'compare.md').read_text()
    assert '| ppo | 2 | 40 | 0.8000 ± 0.1000 |' in markdown
    assert 'last 10 trials' in markdown
    from PIL import Image
    with Image.open(tmp_path / 'out' / 'compare.png') as image:
        assert image.size[0] > 1000
    run = result['runs'][2]
    best = run.best_so_far()
    assert np.all(np.diff(best) >= 0) and best[-1] == 0.95
    assert np.isfinite(run.running_mean(10)).all()


def test_old_logs_count_as_ppo_and_bad_input_is_refused(tmp_path, capsys):
    old = fake_log(tmp_path / 'old', 'ppo', [0.1, 0.2], with_searcher=False)
    assert load_run(old).searcher == 'ppo'
    assert compare_main([old, '--out', str(tmp_path / 'out')]) == 0
    assert '| ppo | 1 | 2 |' in capsys.readouterr().out
    assert compare_main([str(tmp_path / 'nothing'), '--out', str(tmp_path / 'o')]) == 2
    mixed = tmp_path / 'mixed'
    fake_log(mixed, 'ppo', [0.1])
    records = [json.loads(line) for line in (mixed / 'search_log.jsonl').read_text().splitlines()]
    write_log(str(mixed), records + [dict(records[0], trial=1, searcher='random')])
    assert compare_main([str(mixed), '--out', str(tmp_path / 'o')]) == 2
    assert 'several searchers' in capsys.readouterr().err
