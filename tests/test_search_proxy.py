"""The real proxy task on tiny synthetic data, the generated top-architecture configs, and the
Ray Tune backend on a local Ray cluster."""
import json
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from uninet_mm.search.config import check_search_config
from uninet_mm.search.records import read_log
from uninet_mm.search.proxy import count_model, prepare_proxy, run_proxy_trial
from uninet_mm.search.report import pareto_front, top_records, write_outputs

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC = REPO / 'configs' / 'search' / 'uninet_search_synthetic.py'


pytestmark = pytest.mark.usefixtures('one_thread')


def tiny_cfg(data_root: Path, **search) -> Config:
    """The built-in search shrunk further: 32 px, 40 + 20 images, one epoch."""
    cfg = Config.fromfile(str(SYNTHETIC))
    cfg.search_space.input_size = (32, 40)  # non-square on purpose
    cfg.proxy.data.update(root=str(data_root), num_train=40, num_val=20, image_size=(32, 40))
    cfg.proxy.runner.train_dataloader.batch_size = 20
    cfg.proxy.runner.train_cfg.max_epochs = 1
    cfg.proxy.runner.param_scheduler = []
    cfg.search.update(search)
    return cfg


@pytest.fixture(scope='module')
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp('search_data')


def test_one_real_proxy_trial(tmp_path, data_root):
    settings = check_search_config(tiny_cfg(data_root))
    proxy = prepare_proxy(settings.proxy, str(tmp_path))
    assert len(list((data_root / 'train').rglob('*.png'))) == 40
    tokens = settings.space.sample(__import__('random').Random(3))
    kwargs = settings.space.backbone_kwargs(tokens)
    result = run_proxy_trial(proxy, kwargs, str(tmp_path), 'one')
    assert result['status'] == 'ok', result['error']
    assert 0.0 <= result['accuracy'] <= 1.0
    assert result['seconds'] > 0
    # FLOPs and params are the project counter's numbers for this classifier at 32x40.
    from uninet_mm.search.proxy import build_proxy_model
    counted = count_model(build_proxy_model(proxy, kwargs), (32, 40))
    assert result['flops'] == counted['flops'] > 0
    assert result['params'] == counted['params'] > 0


def test_proxy_trial_reports_the_reward_after_every_epoch(tmp_path, data_root):
    """The trial function of both backends: with every_epoch, one result per epoch, each with
    the reward of its accuracy; without, one validation, at the end."""
    from uninet_mm.search.proxy import ProxyTrial

    cfg = tiny_cfg(data_root)
    cfg.proxy.runner.train_cfg.max_epochs = 2
    settings = check_search_config(cfg)
    proxy = prepare_proxy(settings.proxy, str(tmp_path))
    tokens = settings.space.sample(__import__('random').Random(3))
    seen = []
    trial = ProxyTrial(settings.space, proxy, str(tmp_path), reward=settings.reward,
                       every_epoch=True)
    result = trial(tokens, 7, on_epoch=seen.append)
    assert result['status'] == 'ok', result['error']
    assert [r['epochs'] for r in seen] == [1, 2] and result['epochs'] == 2
    for report in seen:
        assert report['reward'] == settings.reward(report['accuracy'], report['flops'])
    assert (result['accuracy'], result['reward']) == (seen[-1]['accuracy'], seen[-1]['reward'])
    assert (tmp_path / '00007').is_dir()

    seen.clear()
    once = ProxyTrial(settings.space, proxy, str(tmp_path))(tokens, 8, on_epoch=seen.append)
    assert [r['epochs'] for r in seen] == [2] and 'reward' not in once


def test_nan_loss_and_bad_arch_fail_the_trial_not_the_search(tmp_path, data_root):
    settings = check_search_config(tiny_cfg(data_root))
    proxy = prepare_proxy(settings.proxy, str(tmp_path))
    kwargs = settings.space.backbone_kwargs([0] * len(settings.space.decisions))
    proxy['runner']['model']['head']['loss']['loss_weight'] = float('nan')
    result = run_proxy_trial(proxy, kwargs, str(tmp_path), 'nan')
    assert result['status'] == 'failed'
    assert 'FloatingPointError: non-finite training loss' in result['error']
    assert result['flops'] > 0  # counted before training

    broken = dict(kwargs, arch=dict(kwargs['arch'], stem_channels=-1))
    result = run_proxy_trial(prepare_proxy(settings.proxy, str(tmp_path)), broken,
                             str(tmp_path), 'broken')
    assert result['status'] == 'failed' and 'stem_channels' in result['error']


def _history():
    cfg = Config.fromfile(str(SYNTHETIC))
    space = check_search_config(cfg).space
    import random
    rng = random.Random(0)
    history = []
    gop_at = {d.stage: i for i, d in enumerate(space.decisions) if d.name == 'gop'}
    mlp, conv = space.gops.index('MLP'), space.gops.index('Conv')
    for index in range(8):
        tokens = space.sample(rng)
        if index in (0, 1):
            for stage, position in gop_at.items():
                tokens[position] = conv
        if index == 0:  # MLP at stride 4: no detector possible at 800x1344
            tokens[gop_at[1]] = mlp
        if index == 1:  # MLP at stride 32 only: a detector with a fixed input size
            tokens[gop_at[5]] = mlp
        history.append(dict(trial=index, tokens=tokens, arch=space.decode(tokens),
                            input_size=[32, 32], flops=1e7 + index * 1e6, params=1e5,
                            accuracy=0.5 + 0.01 * index, reward=0.9 - 0.01 * index, t=15e6,
                            alpha=0.07, hard=False, seconds=1.0, status='ok', error=None))
    history.append(dict(history[1], trial=8, status='failed', error='boom', reward=0.0))
    return history


def test_top_configs_load_and_build(tmp_path):
    from mmengine.registry import init_default_scope

    from uninet_mm import UniNet

    history = _history()
    updates = [dict(mean_reward=0.8, first_trial=0, last_trial=3),
               dict(mean_reward=0.85, first_trial=4, last_trial=7)]
    out = write_outputs(history, updates, str(tmp_path), k=5)
    top = json.loads((tmp_path / 'top5.json').read_text())
    assert [e['trial'] for e in top] == [0, 1, 2, 3, 4]
    assert (tmp_path / 'search.png').stat().st_size > 10000 and out['picture']
    for entry in top[:2]:  # entry 0 has an MLP stage
        has_mlp = any(s['gop'] == 'MLP' for s in entry['arch']['stages'])
        cls_cfg = Config.fromfile(entry['cls_config'])
        assert cls_cfg.model.backbone.arch == entry['arch']
        assert cls_cfg.train_cfg.max_epochs == 300  # the project's full ImageNet recipe
        init_default_scope('mmpretrain')
        from mmpretrain.registry import MODELS as CLS_MODELS
        classifier = CLS_MODELS.build(cls_cfg.model)
        logits = classifier(torch.randn(1, 3, 224, 224), mode='tensor')
        assert logits.shape == (1, 1000)

        if entry['rank'] == 1:
            assert entry['det_config'] is None
            assert 'token-mixing parameters' in entry['det_config_skipped']
            continue
        det_cfg = Config.fromfile(entry['det_config'])
        expected = [entry['arch']['stages'][i]['channels'] for i in (1, 2, 4, 5)]
        assert det_cfg.model.type == 'MaskRCNN'
        assert det_cfg.model.neck.in_channels == expected
        backbone_cfg = dict(det_cfg.model.backbone)
        backbone_cfg.pop('type')
        backbone_cfg['norm_cfg'] = dict(type='BN', requires_grad=True)
        backbone = UniNet(**backbone_cfg).eval()
        assert list(backbone.out_channels) == expected
        # the output shapes are what is checked: on the meta device, without the minute that
        # attention at 800x1344 takes on a CPU (the classifier above ran on real numbers)
        backbone = backbone.to('meta')
        if has_mlp:
            assert tuple(det_cfg.model.backbone.input_size) == (800, 1344)
            resizes = [t for t in det_cfg.train_dataloader.dataset.pipeline
                       if t['type'] == 'Resize']
            assert resizes and all(t['scale'] == (1344, 800) for t in resizes)
        size = (800, 1344) if has_mlp else (256, 320)
        with torch.no_grad():
            feats = backbone(torch.empty(1, 3, *size, device='meta'))
        assert [f.shape[1] for f in feats] == expected

        init_default_scope('mmdet')
        from mmdet.registry import MODELS as DET_MODELS
        detector = DET_MODELS.build(det_cfg.model)  # needs mmcv's compiled ops
        assert detector.backbone.out_channels == tuple(expected)


def test_pareto_front_and_top_records():
    assert pareto_front([(3, 0.5), (1, 0.2), (2, 0.6), (4, 0.55)]) == [(1, 0.2), (2, 0.6)]
    history = _history()
    dup = dict(history[3], trial=9, reward=0.95)  # the same architecture again, better
    top = top_records(history + [dup], 3)
    assert [r['trial'] for r in top] == [9, 0, 1]


@pytest.mark.slow
def test_search_tool_end_to_end(tmp_path, data_root):
    """tools/search.py on the tiny built-in search: 6 real trials, 3 updates, then a resume
    that adds 2 more trials."""
    import runpy
    import sys
    cfg_path = tmp_path / 'tiny_search.py'
    tiny_cfg(data_root, archs_per_update=2).dump(str(cfg_path))
    work = tmp_path / 'work'
    argv = sys.argv
    try:
        sys.argv = ['search.py', str(cfg_path), '--work-dir', str(work), '--max-trials', '6']
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(str(REPO / 'tools' / 'search.py'), run_name='__main__')
        assert exit_info.value.code == 0
        sys.argv = sys.argv[:-1] + ['8', '--resume']
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(str(REPO / 'tools' / 'search.py'), run_name='__main__')
        assert exit_info.value.code == 0
    finally:
        sys.argv = argv
    log = read_log(str(work))
    assert [r['trial'] for r in log] == list(range(8))
    assert sum(r['status'] == 'ok' for r in log) >= 6
    assert json.loads((work / 'top5.json').read_text())
    import re
    assert len(re.findall(r'PPO update \d+ on', (work / 'search.log').read_text())) == 4
