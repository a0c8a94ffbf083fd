"""Smoke tests of the user-facing tools on the built-in synthetic data, each run as a user runs
it (a subprocess), checking the files it should write: valid JSON, images of the right size,
one drawing per image.

    tools/dataset_converters/make_synthetic_data.py   (coco, ade20k)
    tools/train.py -> TensorBoard and local scalar logs -> the summary picture (segmentation)
    tools/test.py --show-dir                          (segmentation, classification)
    tools/demo/image_demo.py                          (detection, segmentation)

test.py and the demo fold the UniNet backbone's BatchNorms by default (``--no-fuse``: the plain
model); tests/test_fast_defaults.py checks that both give the plain model's results.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')
pytest.importorskip('mmpretrain')

from PIL import Image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / 'tools'
QUICKSTART = REPO / 'configs' / 'quickstart'
# (H, W) of the generated images: the quickstart configs' 4:5 aspect, so the segmentation
# config's resize-then-crop never pads labels with 255 (which its class-weighted loss rejects)
SIZE = (128, 160)
#: What test.py (UniNetAccelerationHook) and the demo log when they fold the BatchNorms.
FOLDED_IN_TEST = 'testing with the BatchNorms of backbone folded'
FOLDED_IN_DEMO = 'running the UniNet backbone with its BatchNorms folded'


def run_tool(args, cwd, timeout=600) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          cwd=str(cwd), env=env, timeout=timeout)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-4000:])
    return proc


def image_size(path: Path):
    """(H, W) of a valid image file (PIL decodes the whole file)."""
    with Image.open(path) as img:
        img.load()
        return img.height, img.width


# ------------------------------------------------------------------- make_synthetic_data.py
@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('data')
    common = ['--num-train', '4', '--num-val', '2', '--size', *map(str, SIZE)]
    tool = TOOLS / 'dataset_converters' / 'make_synthetic_data.py'
    coco = run_tool([tool, 'coco', '--out', root / 'coco', *common], cwd=root)
    ade = run_tool([tool, 'ade20k', '--out', root / 'ade', *common], cwd=root)
    return dict(root=root, coco=root / 'coco', ade=root / 'ade' / 'ADEChallengeData2016',
                stdout=coco.stdout + ade.stdout)


def test_make_synthetic_data_coco(data):
    assert 'coco: 4 train + 2 val images' in data['stdout']
    for split, count in (('train2017', 4), ('val2017', 2)):
        ann = json.loads((data['coco'] / 'annotations' / f'instances_{split}.json').read_text())
        assert len(ann['images']) == count and ann['annotations']
        assert [c['name'] for c in ann['categories']] == ['circle', 'rectangle', 'triangle',
                                                           'star', 'ring']
        ids = {img['id'] for img in ann['images']}
        for img in ann['images']:
            assert image_size(data['coco'] / split / img['file_name']) == SIZE
            assert (img['height'], img['width']) == SIZE
        for obj in ann['annotations']:
            x, y, w, h = obj['bbox']
            assert obj['image_id'] in ids and w > 0 and h > 0 and obj['area'] > 0
            assert x + w <= SIZE[1] and y + h <= SIZE[0]
    manifest = json.loads((data['coco'] / 'synthetic_manifest.json').read_text())
    assert manifest
    # Asked again with the same parameters: nothing is rewritten.
    again = run_tool([TOOLS / 'dataset_converters' / 'make_synthetic_data.py', 'coco', '--out',
                      data['coco'], '--num-train', '4', '--num-val', '2', '--size',
                      *map(str, SIZE)], cwd=data['root'])
    assert 'already up to date' in again.stdout


def test_make_synthetic_data_ade20k(data):
    for split, count in (('training', 4), ('validation', 2)):
        images = sorted((data['ade'] / 'images' / split).glob('*.jpg'))
        labels = sorted((data['ade'] / 'annotations' / split).glob('*.png'))
        assert len(images) == len(labels) == count
        for image, label in zip(images, labels):
            assert image.stem == label.stem
            assert image_size(image) == image_size(label) == SIZE
            values = np.unique(np.array(Image.open(label)))
            assert set(values.tolist()) <= set(range(1, 7)) and 1 in values  # background = 1


# ------------------------------------------- segmentation: train, loss curve, test, demo
def _seg_options(data_root: Path) -> list:
    options = []
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        options += [f'{loader}.dataset.data_root={data_root}', f'{loader}.num_workers=0',
                    f'{loader}.persistent_workers=False', f'{loader}.batch_size=2']
    return options + ['train_cfg.max_iters=4', 'train_cfg.val_interval=100',
                      'default_hooks.checkpoint.interval=4', 'default_hooks.logger.interval=1']


@pytest.fixture(scope='module')
def seg_run(data, tmp_path_factory):
    """Four training iterations of the quickstart segmentation config (tools/train.py)."""
    work = tmp_path_factory.mktemp('seg_work')
    config = QUICKSTART / 'upernet_uninet_tiny_synthetic_ade.py'
    run_tool([TOOLS / 'train.py', config, '--work-dir', work, '--cfg-options',
              *_seg_options(data['ade'])], cwd=data['root'])
    checkpoint = work / 'iter_4.pth'
    assert checkpoint.is_file()
    return dict(work=work, config=config, checkpoint=checkpoint)


@pytest.mark.slow
def test_training_logs_reach_the_configured_visualizer_backends(seg_run, tmp_path):
    """The shipped configs log to LocalVisBackend and TensorBoard; the quickstart's summary
    picture is drawn from the local scalars."""
    from uninet_mm.utils.plotting import plot_training_summary

    (run_dir, ) = [p.parent for p in seg_run['work'].glob('*/vis_data')]
    assert list((run_dir / 'vis_data').glob('events.out.tfevents.*')), 'no TensorBoard log'
    out = plot_training_summary(run_dir / 'vis_data' / 'scalars.json', {'mIoU': 12.5},
                                tmp_path / 'summary.png')
    height, width = image_size(out)
    assert height > 100 and width > 100
    pixels = np.array(Image.open(out).convert('L'))
    assert pixels.std() > 5  # something is drawn, not a blank canvas


@pytest.mark.slow
def test_test_tool_show_dir_segmentation(seg_run, data, tmp_path):
    show = tmp_path / 'show'
    # every loader points at the generated data: the tool checks all data roots up front
    options = [o for o in _seg_options(data['ade']) if 'dataloader' in o]
    proc = run_tool([TOOLS / 'test.py', seg_run['config'], seg_run['checkpoint'],
                     '--work-dir', tmp_path / 'work', '--show-dir', show,
                     '--cfg-options', *options], cwd=tmp_path)
    assert 'mIoU:' in proc.stdout
    assert FOLDED_IN_TEST in proc.stdout + proc.stderr  # the default
    drawings = sorted(p for p in show.rglob('*') if p.suffix in ('.png', '.jpg'))
    assert len(drawings) == 2, drawings  # one per val image
    for path in drawings:
        height, width = image_size(path)
        assert height >= SIZE[0] and width >= SIZE[1]


@pytest.mark.slow
def test_image_demo_segmentation(seg_run, data, tmp_path):
    image = sorted((data['ade'] / 'images' / 'validation').glob('*.jpg'))[0]
    out = tmp_path / 'seg.jpg'
    proc = run_tool([TOOLS / 'demo' / 'image_demo.py', seg_run['config'],
                     seg_run['checkpoint'], image, '--out-file', out], cwd=tmp_path)
    assert f'prediction drawn to {out}' in proc.stdout
    assert FOLDED_IN_DEMO in proc.stdout + proc.stderr  # the default
    assert image_size(out) == SIZE
    drawn = np.array(Image.open(out).convert('RGB'), dtype=np.float32)
    original = np.array(Image.open(image).convert('RGB'), dtype=np.float32)
    assert np.abs(drawn - original).mean() > 1  # the classes are painted over the image


# ------------------------------------------------------------------------- detection demo
def _save_untrained(config: Path, scope: str, path: Path, dataset_meta: dict,
                    cfg_options: dict = None) -> None:
    """A checkpoint of the config's model as initialised (weights do not matter here)."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(str(config))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(scope)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    torch.save(dict(state_dict=model.state_dict(), meta=dict(dataset_meta=dataset_meta)), path)


@pytest.mark.slow
def test_image_demo_detection(data, tmp_path):
    config = QUICKSTART / 'mask_rcnn_uninet_tiny_synthetic.py'
    checkpoint = tmp_path / 'det.pth'
    classes = ('circle', 'rectangle', 'triangle', 'star', 'ring')
    _save_untrained(config, 'mmdet', checkpoint, dict(classes=classes))
    image = sorted((data['coco'] / 'val2017').glob('*.jpg'))[0]
    out = tmp_path / 'det.jpg'
    proc = run_tool([TOOLS / 'demo' / 'image_demo.py', config, checkpoint, image,
                     '--out-file', out, '--score-thr', '0.0'], cwd=tmp_path)
    assert f'prediction drawn to {out}' in proc.stdout
    assert FOLDED_IN_DEMO in proc.stdout + proc.stderr  # the default, through DetInferencer
    assert image_size(out) == SIZE


# ------------------------------------------------------------------ classification show-dir
CLS_CONFIG = """
_base_ = [{base!r}]
data_preprocessor = dict(num_classes=2)
model = dict(
    backbone=dict(arch={arch!r}, drop_path_rate=0.0),
    head=dict(in_channels=64, num_classes=2, topk=(1, )))
__test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=64, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=64),
    dict(type='PackInputs'),
]
test_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, type='CustomDataset', data_root={data_root!r},
                 pipeline=__test_pipeline))
test_evaluator = dict(type='Accuracy', topk=(1, ))
"""


@pytest.mark.slow
def test_test_tool_show_dir_classification(data, tmp_path):
    from .conftest import tiny_arch
    root = tmp_path / 'cls'
    images = sorted((data['coco'] / 'val2017').glob('*.jpg'))
    for index, image in enumerate(images):  # two classes, one image each
        (root / f'class{index}').mkdir(parents=True)
        shutil.copy(image, root / f'class{index}' / image.name)
    arch = dict(tiny_arch(), head_channels=64, _delete_=True)
    config = tmp_path / 'tiny_cls.py'
    config.write_text(CLS_CONFIG.format(base=str(REPO / 'configs' / 'uninet_b0_in1k.py'),
                                        arch=arch, data_root=str(root)))
    checkpoint = tmp_path / 'cls.pth'
    _save_untrained(config, 'mmpretrain', checkpoint, dict(classes=('class0', 'class1')))
    show = tmp_path / 'show'
    proc = run_tool([TOOLS / 'test.py', config, checkpoint, '--work-dir', tmp_path / 'work',
                     '--show-dir', show, '--no-fuse'], cwd=tmp_path)
    assert 'accuracy/top1:' in proc.stdout
    assert 'testing the plain model (--no-fuse)' in proc.stdout + proc.stderr
    assert FOLDED_IN_TEST not in proc.stdout + proc.stderr
    drawings = sorted(p for p in show.rglob('*') if p.suffix in ('.png', '.jpg'))
    assert len(drawings) == len(images), drawings
    for path in drawings:
        height, width = image_size(path)
        assert height >= 64 and width >= 64


# ------------------------------------- the OpenMMLab packages' own tools/train.py (mim's too)
def _own_train_tool(package: str) -> Path:
    """``tools/train.py`` as the installed package ships it (what ``mim train`` runs)."""
    import importlib
    return Path(importlib.import_module(package).__file__).parent / '.mim' / 'tools' / 'train.py'


def _options(data_root: Path, iters: int) -> list:
    """Point every loader (and the COCO evaluators) at the generated data; ``iters``
    iterations with lr 0, so that the backbone's parameters stay what they were initialised
    with."""
    ann_file = data_root / 'annotations' / 'instances_val2017.json'
    options = ([f'{e}.ann_file={ann_file}' for e in ('val_evaluator', 'test_evaluator')]
               if ann_file.is_file() else [])
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        options += [f'{loader}.dataset.data_root={data_root}', f'{loader}.num_workers=0',
                    f'{loader}.persistent_workers=False', f'{loader}.batch_size=2']
    return options + [f'train_cfg.max_iters={iters}', 'train_cfg.val_interval=100',
                      f'default_hooks.checkpoint.interval={iters}',
                      'default_hooks.logger.interval=1', 'optim_wrapper.optimizer.lr=0.0']


def _write_backbone_checkpoint(config: Path, path: Path) -> dict:
    """A checkpoint of the config's backbone with weights no initialisation would give, saved
    as mmpretrain/mmdet save whole models (``state_dict`` with ``backbone.`` keys)."""
    from mmengine.config import Config

    from uninet_mm import UniNet
    kwargs = Config.fromfile(str(config)).model.backbone.to_dict()
    for key in ('type', '_delete_', 'init_cfg'):
        kwargs.pop(key, None)
    generator = torch.Generator().manual_seed(7)
    weights = {k: (v + torch.randn(v.shape, generator=generator) if v.is_floating_point()
                   else v) for k, v in UniNet(**kwargs).state_dict().items()}
    torch.save(dict(state_dict={f'backbone.{k}': v for k, v in weights.items()}), path)
    return weights


def _trained_backbone(work: Path, iters: int) -> dict:
    state = torch.load(work / f'iter_{iters}.pth', map_location='cpu')['state_dict']
    return {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}


def _parameters(weights: dict) -> dict:
    """Everything but the BatchNorm statistics, which a training step updates even at lr 0."""
    return {k: v for k, v in weights.items()
            if 'running_' not in k and 'num_batches_tracked' not in k}


@pytest.mark.slow
@pytest.mark.parametrize('task', ['det', 'seg'])
def test_own_train_tool_loads_the_checkpoint_named_in_init_cfg(task, data, tmp_path):
    """mmdet's / mmseg's own tools/train.py with the way they document for their backbones:
    ``--cfg-options model.backbone.init_cfg.checkpoint=PATH``."""
    package, config, root = dict(
        det=('mmdet', QUICKSTART / 'mask_rcnn_uninet_tiny_synthetic.py', data['coco']),
        seg=('mmseg', QUICKSTART / 'upernet_uninet_tiny_synthetic_ade.py', data['ade']))[task]
    checkpoint = tmp_path / 'backbone.pth'
    expected = _write_backbone_checkpoint(config, checkpoint)
    work = tmp_path / 'work'
    run_tool([_own_train_tool(package), config, '--work-dir', work, '--cfg-options',
              f'model.backbone.init_cfg.checkpoint={checkpoint}', *_options(root, 2)],
             cwd=tmp_path)
    trained = _parameters(_trained_backbone(work, 2))
    assert trained.keys() == _parameters(expected).keys()
    for key, value in trained.items():
        assert torch.equal(value, expected[key]), f'{key} did not come from the checkpoint'


@pytest.mark.slow
def test_own_train_tool_trains_from_scratch_without_a_checkpoint(data, tmp_path):
    config = QUICKSTART / 'mask_rcnn_uninet_tiny_synthetic.py'
    not_loaded = _write_backbone_checkpoint(config, tmp_path / 'unused.pth')
    work = tmp_path / 'work'
    run_tool([_own_train_tool('mmdet'), config, '--work-dir', work, '--cfg-options',
              *_options(data['coco'], 2)], cwd=tmp_path)
    log = '\n'.join(p.read_text() for p in work.glob('*/*.log'))
    assert 'starts from random weights' in log
    trained = _parameters(_trained_backbone(work, 2))
    assert not any(torch.equal(v, not_loaded[k]) for k, v in trained.items() if v.ndim == 4)
