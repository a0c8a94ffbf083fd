"""Every way a user names the pretrained backbone checkpoint reaches the backbone.

``pretrained = PATH`` in a config file, ``--cfg-options pretrained=PATH`` and
``--cfg-options model.backbone.init_cfg...`` all end in the same ``init_cfg``; a detector and a
segmentor trained for one iteration from a converted reference checkpoint start with exactly the
checkpoint's backbone weights (with and without the head conv in the checkpoint), and a
checkpoint that does not fit stops training with an error that names the keys.
"""
from pathlib import Path

import pytest
import torch

from uninet_mm.converters import convert_official_state_dict
from uninet_mm.utils import CheckpointMismatchError, PretrainedConfigError

from .conftest import (TRAIN_ONLY_CONFIG, tiny_arch, tiny_coco_train_dataloader,
                       tiny_mask_rcnn_model)

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')

from mmengine.hooks import Hook  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402
from mmengine.registry import HOOKS  # noqa: E402

from uninet_mm.utils.tools_support import (build_runner, load_config,  # noqa: E402
                                           warn_if_training_from_scratch)

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / 'configs'
DET_SEG_CONFIGS = sorted(p.name for p in CONFIGS.glob('*.py')
                         if p.name.startswith(('mask_rcnn', 'cascade', 'atss', 'sparse',
                                               'upernet')))


# ----------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope='module')
def converted(official_fixtures):
    """The reference tiny_a checkpoint converted by the project's converter."""
    state_dict = torch.load(official_fixtures / 'tiny_a_official_state_dict.pth',
                            weights_only=True)
    return convert_official_state_dict(state_dict)


@pytest.fixture(scope='module')
def checkpoints(converted, tmp_path_factory):
    """``with_head``: the converter's output as is (head conv and classifier included);
    ``without_head``: only the backbone without its head conv."""
    root = tmp_path_factory.mktemp('ckpt')
    full = dict(meta=dict(arch=converted.arch), state_dict=converted.state_dict)
    torch.save(full, root / 'with_head.pth')
    backbone_only = {k: v for k, v in converted.state_dict.items()
                     if k.startswith('backbone.') and not k.startswith('backbone.head_conv.')}
    assert len(backbone_only) < len(converted.state_dict)
    torch.save(dict(meta=dict(arch=converted.arch), state_dict=backbone_only),
               root / 'without_head.pth')
    return dict(with_head=root / 'with_head.pth', without_head=root / 'without_head.pth')


def backbone_weights(converted) -> dict:
    return {k[len('backbone.'):]: v for k, v in converted.state_dict.items()
            if k.startswith('backbone.') and not k.startswith('backbone.head_conv.')}


# -------------------------------------------------------------------- config-level resolution
def _init(cfg):
    return cfg.model.backbone.init_cfg


def _logger():
    return MMLogger.get_instance('uninet_test_pretrained')


@pytest.mark.parametrize('name', DET_SEG_CONFIGS)
def test_cfg_options_pretrained_reaches_every_config(name):
    cfg = load_config(str(CONFIGS / name), 'none', {'pretrained': 'ckpt.pth'}, None)
    assert _init(cfg) == dict(type='Pretrained', checkpoint='ckpt.pth', prefix='backbone.')
    assert not warn_if_training_from_scratch(cfg, _logger())
    # Without it the shipped configs train from scratch and say so.
    cfg = load_config(str(CONFIGS / name), 'none', None, None)
    assert _init(cfg) is None and cfg.pretrained is None
    assert warn_if_training_from_scratch(cfg, _logger())


#: Every shipped config whose backbone may start from a checkpoint.
CHECKPOINT_CONFIGS = DET_SEG_CONFIGS + ['uninet_b5_in21k_ft384_in1k.py',
                                        'uninet_b6_in21k_ft448_in1k.py',
                                        'quickstart/mask_rcnn_uninet_tiny_synthetic.py',
                                        'quickstart/upernet_uninet_tiny_synthetic_ade.py']


@pytest.mark.parametrize('name', CHECKPOINT_CONFIGS)
def test_stock_tools_option_merges_into_every_shipped_config(name):
    """What mmdet's / mmseg's own train.py and ``mim train`` do with ``--cfg-options
    model.backbone.init_cfg.checkpoint=PATH``: a plain merge, which fails on ``init_cfg=None``."""
    from mmengine.config import Config

    from uninet_mm.utils import pretrained_entry
    cfg = Config.fromfile(str(CONFIGS / name))
    assert pretrained_entry(cfg.model.backbone.init_cfg)['checkpoint'] is None  # from scratch
    cfg.merge_from_dict({'model.backbone.init_cfg.checkpoint': 'c.pth'})
    assert pretrained_entry(cfg.model.backbone.init_cfg.to_dict()) == dict(
        type='Pretrained', checkpoint='c.pth', prefix='backbone.')


def test_pretrained_in_a_child_config_file(tmp_path):
    """A config inheriting a shipped one and setting only ``pretrained`` (the parent computed
    its init_cfg from its own ``pretrained = None`` when it was parsed)."""
    child = tmp_path / 'child.py'
    child.write_text(f"_base_ = [{str(CONFIGS / 'mask_rcnn_uninet_b3_3x.py')!r}]\n"
                     "pretrained = 'b3.pth'\n")
    cfg = load_config(str(child), 'none', None, None)
    assert _init(cfg) == dict(type='Pretrained', checkpoint='b3.pth', prefix='backbone.')
    # The command line wins over the file.
    cfg = load_config(str(child), 'none', {'pretrained': 'other.pth'}, None)
    assert _init(cfg)['checkpoint'] == 'other.pth'
    cfg = load_config(str(child), 'none', {'pretrained': None}, None)
    assert _init(cfg) is None
    assert warn_if_training_from_scratch(cfg, _logger())


@pytest.mark.parametrize('options', [
    {'model.backbone.init_cfg.checkpoint': 'c.pth'},
    {'model.backbone.init_cfg.type': 'Pretrained', 'model.backbone.init_cfg.checkpoint': 'c.pth',
     'model.backbone.init_cfg.prefix': 'backbone.'},
    {'model.backbone.init_cfg.checkpoint': 'c.pth', 'pretrained': 'c.pth'},
])
def test_cfg_options_init_cfg(options):
    cfg = load_config(str(CONFIGS / 'upernet_uninet_b1_160k_ade20k.py'), 'none', options, None)
    assert _init(cfg) == dict(type='Pretrained', checkpoint='c.pth', prefix='backbone.')
    assert cfg.pretrained == 'c.pth'
    assert not warn_if_training_from_scratch(cfg, _logger())


def test_conflicting_command_line_is_refused():
    with pytest.raises(PretrainedConfigError, match=r"pretrained='a.pth'.*checkpoint='b.pth'"):
        load_config(str(CONFIGS / 'mask_rcnn_uninet_b1_1x.py'), 'none',
                    {'pretrained': 'a.pth', 'model.backbone.init_cfg.checkpoint': 'b.pth'}, None)


# ------------------------------------------------------------------ one training iteration
SNAPSHOTS = {}


@HOOKS.register_module(force=True)
class _BackboneSnapshotHook(Hook):
    """Test hook: the backbone's weights when training starts (after init_weights)."""

    def before_train(self, runner):
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        SNAPSHOTS['before'] = {k: v.detach().clone()
                               for k, v in model.backbone.state_dict().items()}

    def after_train(self, runner):
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        SNAPSHOTS['after'] = {k: v.detach().clone()
                              for k, v in model.backbone.state_dict().items()}


COMMON = TRAIN_ONLY_CONFIG + """
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=1, val_interval=100)
param_scheduler = []
auto_scale_lr = dict(enable=False)
optim_wrapper = dict(optimizer=dict(lr=1e-3))
default_hooks = dict(logger=dict(type='LoggerHook', interval=1),
                     checkpoint=dict(type='CheckpointHook', interval=100, by_epoch=False))
custom_hooks = [dict(type='_BackboneSnapshotHook')]
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
"""

TINY_DET = """
_base_ = [{base!r}]
model = {model!r}
train_dataloader = {train_dataloader!r}
""" + COMMON

TINY_SEG = """
_base_ = [{base!r}]
data_root = {data_root!r}
metainfo = dict(classes={classes!r})
crop_size = (64, 64)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch={arch!r}, drop_path_rate=0.0),
    decode_head=dict(in_channels=[32, 32, 64, 96], channels=32, num_classes={num_classes}),
    auxiliary_head=dict(in_channels=64, channels=16, num_classes={num_classes}))
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=False),
    dataset=dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo,
                 img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True,
                 data_prefix=dict(img_path='images/training',
                                  seg_map_path='annotations/training'),
                 pipeline=[
                     dict(type='LoadImageFromFile'),
                     dict(type='LoadAnnotations', reduce_zero_label=True),
                     dict(type='Resize', scale=(80, 64), keep_ratio=True),
                     dict(type='RandomCrop', crop_size=crop_size),
                     dict(type='PackSegInputs'),
                 ]))
""" + COMMON


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    from uninet_mm.datasets import make_coco_instances
    return make_coco_instances(tmp_path_factory.mktemp('coco'), num_train=4, num_val=2,
                               image_size=(64, 80), seed=0)


@pytest.fixture(scope='module')
def ade(tmp_path_factory):
    from uninet_mm.datasets import make_ade20k_semantic
    return make_ade20k_semantic(tmp_path_factory.mktemp('ade'), num_train=4, num_val=2,
                                image_size=(64, 80), seed=0)


def tiny_config(tmp_path, task, data, arch) -> Path:
    if task == 'det':
        text = TINY_DET.format(base=str(CONFIGS / 'mask_rcnn_uninet_b1_1x.py'),
                               train_dataloader=tiny_coco_train_dataloader(
                                   data['root'], data['classes'], infinite=True),
                               model=tiny_mask_rcnn_model(arch, len(data['classes'])))
    else:
        text = TINY_SEG.format(base=str(CONFIGS / 'upernet_uninet_b1_160k_ade20k.py'),
                               data_root=str(data['data_root']), classes=tuple(data['classes']),
                               num_classes=len(data['classes']), arch=dict(arch, _delete_=True))
    path = tmp_path / f'tiny_{task}.py'
    path.write_text(text)
    return path


def train_one_iteration(config: Path, tmp_path: Path, cfg_options: dict):
    SNAPSHOTS.clear()
    cfg = load_config(str(config), 'none', cfg_options, str(tmp_path / 'work'))
    runner = build_runner(cfg)
    assert not warn_if_training_from_scratch(cfg, runner.logger)
    runner.train()
    return SNAPSHOTS['before'], SNAPSHOTS['after']


@pytest.mark.slow
@pytest.mark.parametrize('task,ckpt,options', [
    ('det', 'with_head', 'pretrained'),
    ('det', 'without_head', 'init_cfg'),
    ('seg', 'without_head', 'pretrained'),
    ('seg', 'with_head', 'init_cfg'),
])
def test_one_iteration_starts_from_the_checkpoint(tmp_path, converted, checkpoints, coco, ade,
                                                  task, ckpt, options):
    config = tiny_config(tmp_path, task, coco if task == 'det' else ade, converted.arch)
    path = str(checkpoints[ckpt])
    cfg_options = ({'pretrained': path} if options == 'pretrained'
                   else {'model.backbone.init_cfg.checkpoint': path})
    before, after = train_one_iteration(config, tmp_path, cfg_options)
    expected = backbone_weights(converted)
    assert before.keys() == expected.keys()
    differing = [k for k in expected if not torch.equal(before[k], expected[k])]
    assert not differing, differing[:10]
    # ... and the iteration trained: the weights moved away from the checkpoint.
    assert any(not torch.equal(after[k], expected[k]) for k in expected
               if k.endswith('weight'))


def test_checkpoint_that_does_not_fit_stops_training(tmp_path, checkpoints, coco):
    """A detector whose arch differs from the checkpoint's: the error names the keys and
    what to check, before any iteration runs."""
    config = tiny_config(tmp_path, 'det', coco, tiny_arch())
    SNAPSHOTS.clear()
    cfg = load_config(str(config), 'none', {'pretrained': str(checkpoints['with_head'])},
                      str(tmp_path / 'work'))
    runner = build_runner(cfg)
    with pytest.raises(CheckpointMismatchError,
                       match=r'(?s)does not fit UniNet \(the checkpoint was made for arch.*'
                             r'stem\.conv\.weight: checkpoint \(24, 3, 3, 3\) vs model '
                             r'\(16, 3, 3, 3\).*Check that the config arch matches'):
        runner.train()
    assert 'before' not in SNAPSHOTS  # no training started
