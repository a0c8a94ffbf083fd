"""Seed noise against architecture signal of the proxy task: the statistics on hand-made
numbers, the tool end to end on a tiny proxy, the proxy seed fixing the initial weights, and the
generated shape-and-quadrant and two-shape tasks."""
import json
import math
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config

from uninet_mm.datasets.synthetic_cls import (PAIR_CLASSES, QUADRANT_CLASSES, QUADRANTS,
                                              make_shapes_classification, quadrant_of)
from uninet_mm.search import proxy as proxy_module
from uninet_mm.search.config import check_search_config
from uninet_mm.search.proxy import prepare_proxy, run_proxy_trial
from uninet_mm.search.proxy_noise import (LOG_NAME, measure_proxy_noise, noise_statistics,
                                          rank_correlation)

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC = REPO / 'configs' / 'search' / 'uninet_search_synthetic.py'

pytestmark = pytest.mark.usefixtures('one_thread')


# ------------------------------------------------------------------ statistics
def test_statistics_of_a_proxy_that_ranks_architectures():
    acc = [[0.10, 0.12], [0.50, 0.52], [0.90, 0.88]]
    stats = noise_statistics(acc)
    assert stats['spearman'] == {'s0-s1': pytest.approx(1.0)}
    # Per architecture the two seeds differ by 0.02: std (ddof 1) 0.02 / sqrt(2).
    assert stats['seed_std'] == pytest.approx(0.02 / math.sqrt(2))
    # Means 0.11, 0.51, 0.89: std (ddof 1) = sqrt(((-.4)^2 + 0 + .38^2) / 2) around 0.5033...
    means = np.array([0.11, 0.51, 0.89])
    expected = math.sqrt(((means - means.mean()) ** 2).sum() / 2)
    assert stats['arch_std'] == pytest.approx(expected)
    assert stats['spread_ratio'] == pytest.approx(expected / (0.02 / math.sqrt(2)))
    assert (stats['accuracy_min'], stats['accuracy_max']) == (0.10, 0.90)
    assert stats['meets_target']


def test_statistics_of_a_proxy_that_ranks_seeds():
    """Seeds reverse the order and every architecture averages 0.5: no signal at all."""
    stats = noise_statistics([[0.1, 0.9], [0.9, 0.1], [0.5, 0.5]])
    assert stats['spearman']['s0-s1'] == pytest.approx(-1.0)
    assert stats['arch_std'] == pytest.approx(0.0)
    assert stats['spread_ratio'] == pytest.approx(0.0)
    assert not stats['meets_target']
    # Ranked alike but the seed noise as large as the spread: the ratio fails the target.
    stats = noise_statistics([[0.20, 0.30], [0.30, 0.40], [0.40, 0.50]])
    assert stats['spearman_min'] == pytest.approx(1.0)
    assert stats['spread_ratio'] == pytest.approx(0.1 / (0.1 / math.sqrt(2)))  # sqrt(2) < 2
    assert not stats['meets_target']
    # ... that noise is one offset of seed 1 for every architecture: none once centred.
    assert stats['seed_std_centred'] == pytest.approx(0.0, abs=1e-12)
    assert stats['spread_ratio_centred'] == math.inf


def test_statistics_every_pair_of_seeds_and_ties():
    acc = np.array([[0.1, 0.2, 0.4], [0.2, 0.1, 0.3], [0.3, 0.3, 0.2], [0.4, 0.4, 0.1]])
    stats = noise_statistics(acc, seeds=[3, 5, 7])
    assert set(stats['spearman']) == {'s3-s5', 's3-s7', 's5-s7'}
    # Ranks by hand: s3 = 1 2 3 4, s5 = 2 1 3 4, s7 = 4 3 2 1.
    d = np.array([1, 2, 3, 4]) - np.array([2, 1, 3, 4])
    assert stats['spearman']['s3-s5'] == pytest.approx(1 - 6 * (d ** 2).sum() / (4 * 15))
    assert stats['spearman']['s3-s7'] == pytest.approx(-1.0)
    assert stats['spearman_min'] == pytest.approx(-1.0)
    # Ties take mean ranks: (1, 2, 2, 4) against (1, 2, 3, 4) -> Pearson of the ranks.
    ranks = np.array([1, 2.5, 2.5, 4])
    assert rank_correlation([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(
        np.corrcoef(ranks, [1, 2, 3, 4])[0, 1])
    assert math.isnan(rank_correlation([0.5, 0.5, 0.5], [0.1, 0.2, 0.3]))
    assert not noise_statistics([[0.5, 0.1], [0.5, 0.2]])['meets_target']  # NaN fails
    with pytest.raises(ValueError, match='2 x 2'):
        noise_statistics([[0.1, 0.2]])


# ------------------------------------------------------------------ tool and library, tiny
def tiny_cfg(data_root: Path) -> Config:
    cfg = Config.fromfile(str(SYNTHETIC))
    cfg.proxy.data.update(root=str(data_root), num_train=20, num_val=10, image_size=(32, 32))
    cfg.proxy.runner.train_dataloader.batch_size = 10
    cfg.proxy.runner.val_dataloader.batch_size = 10
    cfg.proxy.runner.train_cfg.max_epochs = 1
    cfg.proxy.runner.param_scheduler = []
    return cfg


def test_tool_tiny_run_resume_and_fields(tmp_path, capsys):
    tool = runpy.run_path(str(REPO / 'tools' / 'analysis_tools' / 'proxy_noise.py'),
                          run_name='uninet_tool')
    cfg_file = tmp_path / 'tiny.py'
    cfg_file.write_text(f"_base_ = [{str(SYNTHETIC)!r}]\n")
    out = tmp_path / 'result.json'
    args = [str(cfg_file), '--num-archs', '2', '--seeds', '2', '--work-dir',
            str(tmp_path / 'work'), '--out', str(out), '--cfg-options',
            f'proxy.data.root={tmp_path / "data"}', 'proxy.data.num_train=20',
            'proxy.data.num_val=10', 'proxy.runner.train_dataloader.batch_size=10',
            'proxy.runner.val_dataloader.batch_size=10', 'proxy.runner.train_cfg.max_epochs=1',
            'proxy.runner.param_scheduler=[]']
    # Half of the trials (every second one), as one of two processes would run them.
    assert tool['main'](args + ['--shard', '1/2']) == 0
    log = tmp_path / 'work' / LOG_NAME
    assert [json.loads(line)['seed'] for line in log.read_text().splitlines()] == [1, 1]
    assert json.loads(out.read_text())['num_scored'] == 0
    capsys.readouterr()
    # The whole: only the other two trials are run.
    assert tool['main'](args) == 0
    text = capsys.readouterr().out
    assert 'Spearman between seeds: s0-s1' in text and 'ratio' in text and 's CPU' in text
    result = json.loads(out.read_text())
    for key in ('archs', 'seeds', 'spearman', 'spearman_min', 'seed_std', 'arch_std',
                'spread_ratio', 'seconds_per_trial', 'cpu_seconds_per_trial', 'failures',
                'accuracy_min', 'accuracy_max', 'meets_target', 'num_scored'):
        assert key in result, key
    assert result['seeds'] == [0, 1] and len(result['archs']) == 2
    assert result['failures'] == [] and result['num_scored'] == 2
    assert result['cpu_seconds_per_trial'] > 0
    acc = [[a['accuracy'][str(s)] for s in (0, 1)] for a in result['archs']]
    expected = noise_statistics(acc)
    if math.isnan(expected['spearman_min']):  # two archs: ties are likely on 10 images
        assert result['spearman_min'] is None or math.isnan(result['spearman_min'])
    else:
        assert result['spearman'] == pytest.approx(expected['spearman'])
    assert result['spread_ratio'] == pytest.approx(expected['spread_ratio'])
    assert len(log.read_text().splitlines()) == 4
    # A second run reads the four trials back instead of training again.
    assert tool['main'](args) == 0
    assert len(log.read_text().splitlines()) == 4
    assert json.loads(out.read_text())['archs'] == result['archs']


def test_trial_accuracy_depends_on_arch_and_seed_not_on_history(tmp_path):
    cfg = tiny_cfg(tmp_path / 'data')
    result = measure_proxy_noise(cfg, 2, [0, 1], str(tmp_path / 'work'), arch_seed=4)
    settings = check_search_config(cfg)
    proxy = dict(prepare_proxy(settings.proxy, str(tmp_path / 'again')), seed=1)
    torch.manual_seed(12345)  # another history than the measurement's
    again = run_proxy_trial(proxy, settings.space.backbone_kwargs(result['archs'][1]['tokens']),
                            str(tmp_path / 'again'), 'again')
    assert again['accuracy'] == result['archs'][1]['accuracy'][1]


def test_proxy_seed_is_set_before_the_model_is_built(tmp_path, monkeypatch):
    """The backbone draws its initial weights when built: the proxy seed must be in force."""
    seen = []

    def fake_build(proxy, kwargs):
        seen.append(torch.initial_seed())
        raise RuntimeError('stop here')

    monkeypatch.setattr(proxy_module, 'build_proxy_model', fake_build)
    for seed in (3, 8):
        torch.manual_seed(99)
        proxy = dict(seed=seed, runner=dict(train_cfg=dict(max_epochs=1)))
        result = run_proxy_trial(proxy, dict(input_size=(32, 32)), str(tmp_path))
        assert result['status'] == 'failed' and 'stop here' in result['error']
    assert seen == [3, 8]


# ------------------------------------------------------------------ the generated tasks
def test_quadrant_of_a_mask():
    mask = np.zeros((6, 8), dtype=bool)
    mask[0:2, 0:3] = True  # mean (0.5, 1.0): above and left of the centre (2.5, 3.5)
    assert QUADRANTS[quadrant_of(mask)] == 'top_left'
    mask[:] = False
    mask[1:5, 3:6] = True  # mean (2.5, 4.0): on the middle row counts as top, right of centre
    assert QUADRANTS[quadrant_of(mask)] == 'top_right'
    mask[:] = False
    mask[5, 0] = True
    assert QUADRANTS[quadrant_of(mask)] == 'bottom_left'
    mask[:] = False
    mask[3:, 4:] = True
    assert QUADRANTS[quadrant_of(mask)] == 'bottom_right'


def test_quadrant_task_labels_the_shape_task_images(tmp_path):
    """Same seed, the one-shape task's images byte for byte; each label is that task's class
    plus a quadrant, and the quadrants vary."""
    kwargs = dict(num_train=40, num_val=4, size_range=(0.35, 0.5))
    make_shapes_classification(tmp_path / 'shape', **kwargs)
    quad = make_shapes_classification(tmp_path / 'quad', task='quadrant', **kwargs)
    assert quad['classes'] == QUADRANT_CLASSES and len(QUADRANT_CLASSES) == 20
    assert sorted(p.name for p in (tmp_path / 'quad' / 'train').iterdir()) == sorted(
        QUADRANT_CLASSES)
    by_index = {}
    for path in (tmp_path / 'shape' / 'train').rglob('*.png'):
        by_index[path.name] = (path.parent.name, path.read_bytes())
    quadrants = set()
    for path in (tmp_path / 'quad' / 'train').rglob('*.png'):
        shape_name, data = by_index[path.name]
        assert path.read_bytes() == data
        cls, quadrant = path.parent.name.split('_', 1)
        assert cls == shape_name and quadrant in QUADRANTS
        quadrants.add(quadrant)
    assert len(quadrants) >= 3  # 40 large shapes near the centre still fall on several sides


def test_pair_task_data(tmp_path):
    info = make_shapes_classification(tmp_path, num_train=12, num_val=6, task='pair',
                                      size_range=(0.15, 0.3))
    assert info['classes'] == PAIR_CLASSES and len(PAIR_CLASSES) == 15
    assert sum(info['train_per_class'].values()) == 12
    assert len(list((tmp_path / 'val').rglob('*.png'))) == 6
    assert not (tmp_path / 'train' / 'circle').exists()
    again = make_shapes_classification(tmp_path, num_train=12, num_val=6, task='pair',
                                       size_range=(0.15, 0.3))
    assert again['generated'] is False
    # Back to the one-shape task in the same folder: the pair folders go.
    info = make_shapes_classification(tmp_path, num_train=5, num_val=5)
    assert sorted(p.name for p in (tmp_path / 'train').iterdir()) == sorted(info['classes'])
    with pytest.raises(ValueError, match='task'):
        make_shapes_classification(tmp_path, task='count')
