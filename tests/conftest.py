"""Shared test fixtures: the reference-code fixtures in tests/data and small helpers."""
import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

# Property tests: a fixed, derandomized set of examples (the same cases on every run and in
# CI); HYPOTHESIS_PROFILE=explore draws fresh random cases, and more of them.
settings.register_profile('ci', derandomize=True, deadline=None, max_examples=30,
                          database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile('explore', deadline=None, max_examples=300,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get('HYPOTHESIS_PROFILE', 'ci'))

# Under pytest-xdist, each worker (and the tools it starts) takes its share of the cores:
# two workers with torch's default of one thread per core would oversubscribe them.
if os.environ.get('PYTEST_XDIST_WORKER_COUNT'):
    _share = max(1, (os.cpu_count() or 1) // int(os.environ['PYTEST_XDIST_WORKER_COUNT']))
    os.environ.setdefault('OMP_NUM_THREADS', str(_share))
    torch.set_num_threads(_share)

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Outputs of the authors' reference implementation (see its README.md for how they were made).
OFFICIAL_FIXTURES = REPO_ROOT / 'tests' / 'data' / 'official_uninet'


@pytest.fixture(scope='session')
def official_fixtures() -> Path:
    """Folder with the authors' reference outputs; part of the repository, so every clone runs
    the parity tests (a missing file is a failure, never a skip)."""
    missing = [name for name in ('tiny_a_official_state_dict.pth', 'tiny_a_official_io.pth',
                                 'tiny_a_arch.json', 'uninetb1_official_keys.json',
                                 'uninetb3_official_keys.json')
               if not (OFFICIAL_FIXTURES / name).is_file()]
    if missing:
        pytest.fail(f'reference fixtures missing from {OFFICIAL_FIXTURES}: {missing}')
    return OFFICIAL_FIXTURES


@pytest.fixture
def one_thread():
    """torch on one thread for the test (small models on a shared 2-core machine: more
    threads only thrash); ``pytestmark = pytest.mark.usefixtures('one_thread')`` per file."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='session')
def local_ray():
    """One local Ray instance (2 CPUs) for every test of the session that runs a search on Ray
    in this process (starting Ray takes 10-20 s); shut down at the end."""
    import ray  # installed by tools/setup_env.sh: no skip
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


# First: pytest-xdist's worker turns xdist_group marks into node-id suffixes in its own
# pytest_collection_modifyitems, which pluggy would otherwise call before this one (it is
# registered later), so marks added here would never group anything.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """With pytest-xdist (``-n``), the tests that start services (a Slurm or multi-node Ray
    cluster, the session's local Ray) run one after another on one worker: one Ray instance per
    session, and no two clusters competing for the cores at once. The slow tests go first (in
    their files' order), so the workers end together instead of one finishing a long test
    alone."""
    for item in items:
        if item.get_closest_marker('cluster') or 'local_ray' in item.fixturenames:
            item.add_marker(pytest.mark.xdist_group('services'))
    items.sort(key=lambda item: item.get_closest_marker('slow') is None)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


def tiny_arch(stage_overrides=None) -> dict:
    """A 6-stage arch small enough for fast tests; ``stage_overrides`` maps index -> fields."""
    arch = dict(stem_channels=16, head_channels=64, stages=[
        dict(gop='DWConv', dsm=None, expansion=1, channels=16, repeats=1, stride=1),
        dict(gop='DWConv', dsm='L', expansion=2, channels=32, repeats=1, stride=2),
        dict(gop='DWConv', dsm='L', expansion=2, channels=32, repeats=1, stride=2),
        dict(gop='DWConv', dsm='L', expansion=2, channels=64, repeats=1, stride=2),
        dict(gop='SA', dsm='LG', expansion=2, channels=64, repeats=1, stride=1),
        dict(gop='SA', dsm='LG', expansion=2, channels=96, repeats=1, stride=2)])
    for index, fields in (stage_overrides or {}).items():
        arch['stages'][index].update(fields)
    return arch


def tiny_mask_rcnn_model(arch: dict, num_classes: int, **backbone) -> dict:
    """``model`` overrides that shrink configs/mask_rcnn_uninet_b1_1x.py to a tiny Mask R-CNN
    on ``arch`` (which has :func:`tiny_arch`'s widths), for configs written by tests."""
    return dict(
        backbone=dict(arch=dict(arch, _delete_=True), drop_path_rate=0.0, **backbone),
        neck=dict(in_channels=[32, 32, 64, 96], out_channels=32),
        rpn_head=dict(in_channels=32, feat_channels=32),
        roi_head=dict(
            bbox_roi_extractor=dict(out_channels=32),
            bbox_head=dict(in_channels=32, fc_out_channels=64, num_classes=num_classes),
            mask_roi_extractor=dict(out_channels=32),
            mask_head=dict(num_convs=1, in_channels=32, conv_out_channels=32,
                           num_classes=num_classes)))


#: Config lines for the tiny training runs that tests write: no validation or test loop.
TRAIN_ONLY_CONFIG = """
val_dataloader = None
val_evaluator = None
val_cfg = None
test_dataloader = None
test_evaluator = None
test_cfg = None
"""


def tiny_coco_train_dataloader(data_root: str, classes, flip: bool = False,
                               infinite: bool = False) -> dict:
    """``train_dataloader`` of a tiny Mask R-CNN run on :func:`make_coco_instances` data:
    batch 2, no workers, images resized to fit 96x64."""
    pipeline = [dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
                dict(type='Resize', scale=(96, 64), keep_ratio=True)]
    pipeline += [dict(type='RandomFlip', prob=0.5)] if flip else []
    pipeline += [dict(type='PackDetInputs')]
    loader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                  dataset=dict(data_root=str(data_root), metainfo=dict(classes=tuple(classes)),
                               ann_file='annotations/instances_train2017.json',
                               data_prefix=dict(img='train2017/'), pipeline=pipeline))
    if infinite:
        loader.update(sampler=dict(type='InfiniteSampler', shuffle=False), batch_sampler=None)
    return loader

