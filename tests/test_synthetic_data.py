"""The built-in synthetic datasets: determinism, exact masks, and loading by mmdet / mmseg."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from uninet_mm.datasets import (SEMANTIC_CLASSES, SHAPE_CLASSES, make_ade20k_semantic,
                                make_coco_instances, mask_to_bbox, mask_to_rle, render_scene,
                                rle_to_mask, scene_rng)
from uninet_mm.datasets.synthetic import MANIFEST_NAME, polygon_mask

SIZE = (96, 128)


def _files(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*'))
            if p.is_file()}


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('coco')
    make_coco_instances(root, num_train=6, num_val=3, image_size=SIZE, seed=3,
                        img_format='png')
    return root


@pytest.fixture(scope='module')
def ade_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('ade')
    make_ade20k_semantic(root, num_train=4, num_val=2, image_size=SIZE, seed=3)
    return root


def test_polygon_mask_square():
    mask = polygon_mask(np.array([[2, 3], [12, 3], [12, 9], [2, 9]]), 16, 16)
    assert mask.sum() == 10 * 6
    assert mask[3:9, 2:12].all()


def test_rle_roundtrip():
    rng = np.random.default_rng(0)
    for first in (False, True):
        mask = rng.random((7, 5)) > 0.5
        mask[0, 0] = first
        assert np.array_equal(rle_to_mask(mask_to_rle(mask)), mask)
    mask = np.zeros((4, 6), bool)
    mask[1:3, 2:5] = True
    assert mask_to_bbox(mask) == [2.0, 1.0, 3.0, 2.0]


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path, coco_root):
    again = tmp_path / 'again'
    make_coco_instances(again, num_train=6, num_val=3, image_size=SIZE, seed=3,
                        img_format='png')
    assert _files(again) == _files(coco_root)
    other = tmp_path / 'other'
    make_coco_instances(other, num_train=6, num_val=3, image_size=SIZE, seed=4,
                        img_format='png')
    a = json.loads((coco_root / 'annotations/instances_train2017.json').read_text())
    b = json.loads((other / 'annotations/instances_train2017.json').read_text())
    assert a['annotations'] != b['annotations']
    assert (coco_root / 'train2017/000000000001.png').read_bytes() != \
        (other / 'train2017/000000000001.png').read_bytes()


def test_ade_same_seed_same_bytes(tmp_path, ade_root):
    again = tmp_path / 'again'
    make_ade20k_semantic(again, num_train=4, num_val=2, image_size=SIZE, seed=3)
    assert _files(again) == _files(ade_root)


def test_idempotent_and_regenerates_on_new_params(tmp_path):
    root = tmp_path / 'd'
    first = make_coco_instances(root, num_train=3, num_val=2, image_size=SIZE, seed=0)
    assert first['generated']
    stamp = (root / MANIFEST_NAME).stat().st_mtime_ns
    second = make_coco_instances(root, num_train=3, num_val=2, image_size=SIZE, seed=0)
    assert not second['generated']
    assert (root / MANIFEST_NAME).stat().st_mtime_ns == stamp
    third = make_coco_instances(root, num_train=2, num_val=2, image_size=SIZE, seed=0)
    assert third['generated']
    assert sorted(p.name for p in (root / 'train2017').iterdir()) == \
        ['000000000001.jpg', '000000000002.jpg']


def test_masks_match_rendered_pixels(coco_root):
    """Images on disk are the rendered scenes, and each mask is exactly the visible object."""
    data = json.loads((coco_root / 'annotations/instances_train2017.json').read_text())
    for image in data['images']:
        pixels = np.asarray(Image.open(coco_root / 'train2017' / image['file_name']))
        rendered, inst_map, labels = render_scene(scene_rng(3, 'train', image['id'] - 1),
                                                  SIZE)
        assert np.array_equal(pixels, rendered)
        anns = [a for a in data['annotations'] if a['image_id'] == image['id']]
        assert [a['category_id'] - 1 for a in anns] == labels
        union = np.zeros(SIZE, bool)
        for k, ann in enumerate(anns, start=1):
            mask = rle_to_mask(ann['segmentation'])
            assert np.array_equal(mask, inst_map == k)
            assert not (union & mask).any(), 'visible masks must not overlap'
            union |= mask
            # An object's pixels differ from the background just outside its box.
            assert mask.sum() >= 20


def test_occlusion_keeps_visible_part_only():
    occluded = 0
    for index in range(10):
        full = []
        _, inst_map, labels = render_scene(scene_rng(0, 'train', index), (128, 160),
                                           num_objects=(6, 8), full_masks=full)
        assert len(full) == len(labels)
        for k in range(len(labels)):
            above = np.zeros(inst_map.shape, bool)
            for mask in full[k + 1:]:
                above |= mask
            visible = full[k] & ~above
            assert np.array_equal(inst_map == k + 1, visible)
            assert visible.sum() >= 0.6 * full[k].sum()
            occluded += int(visible.sum() < full[k].sum())
    assert occluded > 0


def test_pycocotools_agrees(coco_root):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    coco = COCO(str(coco_root / 'annotations/instances_val2017.json'))
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(SHAPE_CLASSES)
    assert len(coco.getImgIds()) == 3
    for ann in coco.loadAnns(coco.getAnnIds()):
        rle = coco.annToRLE(ann)
        assert float(mask_utils.area(rle)) == ann['area']
        assert np.allclose(mask_utils.toBbox(rle), ann['bbox'])
        assert np.array_equal(coco.annToMask(ann).astype(bool), rle_to_mask(ann['segmentation']))


def test_mmdet_coco_dataset_loads(coco_root):
    from mmdet.datasets import CocoDataset
    from mmdet.utils import register_all_modules
    from mmengine.registry import DefaultScope
    register_all_modules(init_default_scope=False)
    # as an mmdet config runs (its scope, type names without prefix), whatever scope an earlier
    # test left in this process
    with DefaultScope.overwrite_default_scope('mmdet'):
        _check_coco_dataset(coco_root, CocoDataset)


def _check_coco_dataset(coco_root, CocoDataset):
    data = json.loads((coco_root / 'annotations/instances_train2017.json').read_text())
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
        dict(type='PackDetInputs'),
    ]
    ds = CocoDataset(data_root=str(coco_root), ann_file='annotations/instances_train2017.json',
                     data_prefix=dict(img='train2017/'), metainfo=dict(classes=SHAPE_CLASSES),
                     pipeline=pipeline, filter_cfg=dict(filter_empty_gt=True, min_size=0))
    assert len(ds) == 6
    for idx in range(len(ds)):
        sample = ds[idx]
        image_id = sample['data_samples'].img_id
        anns = [a for a in data['annotations'] if a['image_id'] == image_id]
        gt = sample['data_samples'].gt_instances
        assert len(gt) == len(anns)
        assert tuple(sample['inputs'].shape) == (3, ) + SIZE
        masks = gt.masks.to_ndarray().astype(bool)
        for mask, ann in zip(masks, anns):
            assert np.array_equal(mask, rle_to_mask(ann['segmentation']))
        assert sorted(gt.labels.tolist()) == sorted(a['category_id'] - 1 for a in anns)


@pytest.mark.parametrize('background_class', [True, False])
@pytest.mark.parametrize('dataset_type', ['ADE20KDataset', 'BaseSegDataset'])
def test_mmseg_dataset_loads(tmp_path, ade_root, background_class, dataset_type):
    """mmseg reads the ADE20K layout: ADE20KDataset as is (its 150 class names, which cannot
    be replaced), BaseSegDataset with the synthetic class names (what the configs use)."""
    from mmseg.registry import DATASETS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)

    root = ade_root
    if not background_class:
        root = tmp_path / 'ade_nobg'
        make_ade20k_semantic(root, num_train=4, num_val=2, image_size=SIZE, seed=3,
                             background_class=False)
    classes = SEMANTIC_CLASSES if background_class else SHAPE_CLASSES
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', reduce_zero_label=True),
        dict(type='PackSegInputs'),
    ]
    cfg = dict(type=dataset_type, data_root=str(root / 'ADEChallengeData2016'),
               data_prefix=dict(img_path='images/validation',
                                seg_map_path='annotations/validation'),
               pipeline=pipeline)
    if dataset_type == 'BaseSegDataset':
        cfg.update(img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True,
                   metainfo=dict(classes=classes))
    from mmengine.registry import DefaultScope

    # Build as mmseg does, under its own default scope: an earlier test may have left another
    # package's scope current (seen after an mmpretrain config), under which scoped transform
    # names did not resolve.
    with DefaultScope.overwrite_default_scope('mmseg'):
        ds = DATASETS.build(cfg)
        assert len(ds) == 2
        samples = [ds[idx] for idx in range(len(ds))]
    if dataset_type == 'BaseSegDataset':
        assert tuple(ds.metainfo['classes']) == classes
    for idx, sample in enumerate(samples):
        seg = sample['data_samples'].gt_sem_seg.data.numpy()[0]
        raw = np.asarray(Image.open(ds.get_data_info(idx)['seg_map_path']))
        assert seg.shape == SIZE
        values = set(np.unique(seg).tolist())
        assert values <= set(range(len(classes))) | {255}
        # reduce_zero_label: stored label k is class k-1; stored 0 is ignored (255).
        assert np.array_equal(seg[raw > 0], raw[raw > 0].astype(np.int64) - 1)
        assert (seg[raw == 0] == 255).all()
        assert (255 in values) == (not background_class)
