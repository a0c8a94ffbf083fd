"""The speed forms that are on by default, and the documented training switch, give the plain
model's results:

* ``tools/test.py`` (through :func:`uninet_mm.utils.tools_support.set_fuse_for_test`) tests
  the BN-folded backbone in channels_last: same predictions and metrics as with
  ``--no-fuse``, and the trainable backbone is back after the test;
* the demo's folding (:func:`uninet_mm.models.acceleration.fuse_backbones` after the
  checkpoint is loaded): same segmentation logits;
* the Mask R-CNN quickstart config's own ``UniNetAccelerationHook`` (channels_last backbone,
  separable RoIAlign), on by default for training: the same training losses as the plain
  model, iteration by iteration (it converts only the backbone: mmcv's CPU RoIAlign misreads
  channels_last maps). The separable RoIAlign itself is checked against mmcv's in
  tests/test_roi_align.py.

Run in-process on a tiny generated data set (the tools' subprocess smoke tests are in
tests/test_tool_smoke.py)."""
import copy

import pytest
import torch
from torch import nn

pytest.importorskip('mmseg')
pytest.importorskip('mmdet')

from mmengine.config import Config  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402

from uninet_mm.models.acceleration import fuse_backbones  # noqa: E402
from uninet_mm.utils.tools_support import set_fuse_for_test  # noqa: E402

from .conftest import REPO_ROOT  # noqa: E402

pytestmark = pytest.mark.usefixtures('one_thread')
QUICKSTART = REPO_ROOT / 'configs' / 'quickstart'
SIZE = (64, 80)  # (H, W) of the generated images; tested as they are


def _has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def _channels_last(module: nn.Module) -> bool:
    return all(p.is_contiguous(memory_format=torch.channels_last)
               for p in module.parameters() if p.ndim == 4)


@pytest.fixture(scope='module')
def seg_setup(tmp_path_factory):
    """The quickstart UperNet config on 2 generated val images, and a checkpoint whose backbone
    BatchNorms have statistics and affines far from the identity (folding them matters)."""
    from mmengine.registry import MODELS, init_default_scope

    from uninet_mm.datasets import make_ade20k_semantic
    root = tmp_path_factory.mktemp('fast_defaults')
    make_ade20k_semantic(root / 'ade', num_train=2, num_val=2, image_size=SIZE)
    cfg = Config.fromfile(str(QUICKSTART / 'upernet_uninet_tiny_synthetic_ade.py'))
    pipeline = [dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations', reduce_zero_label=True),
                dict(type='PackSegInputs')]
    loader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                  dataset=dict(data_root=str(root / 'ade' / 'ADEChallengeData2016'),
                               pipeline=pipeline))
    cfg.merge_from_dict(dict(test_dataloader=loader, val_dataloader=loader))
    cfg.train_dataloader = cfg.train_cfg = cfg.optim_wrapper = cfg.param_scheduler = None
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.backbone.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.3, generator=generator)
                module.running_var.uniform_(0.3, 2.0, generator=generator)
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0, 0.3, generator=generator)
    checkpoint = root / 'seg.pth'
    meta = dict(dataset_meta=dict(classes=cfg.classes, palette=cfg.palette))
    torch.save(dict(state_dict=model.state_dict(), meta=meta), checkpoint)
    return dict(cfg=cfg, checkpoint=checkpoint, root=root)


class Recorder(Hook):
    """Keeps the segmentation logits of every test image and whether the backbone that
    produced them has BatchNorms."""

    def __init__(self) -> None:
        self.logits, self.batch_norm, self.channels_last = [], [], []

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.logits += [sample.seg_logits.data.clone() for sample in outputs]
        self.batch_norm.append(_has_batch_norm(runner.model.backbone))
        self.channels_last.append(_channels_last(runner.model.backbone))


def test_test_tool_folds_by_default_with_the_plain_models_results(seg_setup, tmp_path):
    """``runner.test()`` as tools/test.py sets it up, then the plain backbone (put back after
    the test) on the same batches through the same evaluator."""
    from mmengine.runner import Runner
    cfg = copy.deepcopy(seg_setup['cfg'])
    cfg.load_from = str(seg_setup['checkpoint'])
    cfg.work_dir = str(tmp_path)
    assert 'folds' in set_fuse_for_test(cfg)
    runner = Runner.from_cfg(cfg)
    recorder = Recorder()
    runner.register_hook(recorder)
    fused = runner.test()
    assert recorder.batch_norm == [False] and recorder.channels_last == [True]
    assert not _channels_last(runner.model.decode_head)  # heads keep their layout
    assert _has_batch_norm(runner.model.backbone)  # the trainable backbone is back

    plain_logits = []
    evaluator = runner.test_loop.evaluator
    runner.model.eval()
    with torch.no_grad():
        for batch in runner.test_dataloader:
            outputs = runner.model.test_step(batch)
            evaluator.process(data_samples=outputs, data_batch=batch)
            plain_logits += [sample.seg_logits.data for sample in outputs]
    plain = evaluator.evaluate(len(runner.test_dataloader.dataset))
    assert len(recorder.logits) == len(plain_logits) == 2
    for a, b in zip(recorder.logits, plain_logits):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())
    assert fused.keys() == plain.keys() and 'mIoU' in fused
    for key in plain:
        assert fused[key] == pytest.approx(plain[key], abs=1e-6), key


def test_set_fuse_for_test_keeps_the_configs_own_hook():
    own = dict(type='UniNetAccelerationHook', channels_last=True, fuse_for_test=True)
    cfg = Config(dict(custom_hooks=[dict(type='EMAHook'), own]))
    set_fuse_for_test(cfg, fuse=False)
    assert cfg.custom_hooks == [dict(type='EMAHook'),
                                dict(own, fuse_for_test=False, channels_last=False,
                                     separable_roi_align=False)]
    cfg = Config(dict())
    set_fuse_for_test(cfg, fuse=False)
    assert cfg.custom_hooks == []


def test_demo_folding_gives_the_plain_models_logits(seg_setup):
    from mmseg.apis import inference_model, init_model
    image = str(sorted((seg_setup['root'] / 'ade').rglob('validation/*.jpg'))[0])
    model = init_model(copy.deepcopy(seg_setup['cfg']), str(seg_setup['checkpoint']),
                       device='cpu')
    plain = inference_model(model, image).seg_logits.data
    assert list(fuse_backbones(model, channels_last=True)) == ['']  # as the demo calls it
    assert not _has_batch_norm(model.backbone) and _channels_last(model.backbone)
    fused = inference_model(model, image).seg_logits.data
    torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-4 * plain.abs().max().item())


def test_shipped_hook_trains_like_the_plain_model(tmp_path):
    """Three iterations of the quickstart Mask R-CNN, plain and as shipped (its hook: the
    backbone in channels_last, SeparableRoIAlign in the RoI heads): the same losses up to
    rounding (converting the neck too changes loss_cls by 2% in the first iteration: mmcv's
    CPU RoIAlign misreads channels_last maps)."""
    from uninet_mm.benchmark.training import run_training
    from uninet_mm.datasets import make_coco_instances
    make_coco_instances(tmp_path / 'coco', num_train=4, num_val=1, image_size=SIZE)
    pipeline = [dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
                dict(type='RandomFlip', prob=0.5), dict(type='PackDetInputs')]
    options = {'train_dataloader.dataset.data_root': str(tmp_path / 'coco') + '/',
               'train_dataloader.dataset.pipeline': pipeline,
               'train_dataloader.batch_size': 2, 'train_dataloader.num_workers': 0,
               'train_dataloader.persistent_workers': False}
    config = str(QUICKSTART / 'mask_rcnn_uninet_tiny_synthetic.py')
    runs = {variant: run_training(dict(config=config, cfg_options=options, variant=variant,
                                       iters=3, threads=1))
            for variant in ('plain', 'shipped')}
    assert runs['plain']['converted'] == dict(channels_last=False, separable_roi_align=0)
    assert runs['shipped']['converted'] == dict(channels_last=True, separable_roi_align=8)
    runs = {variant: run['records'] for variant, run in runs.items()}
    assert len(runs['plain']) == len(runs['shipped']) == 3
    for plain, fast in zip(runs['plain'], runs['shipped']):
        for key in ('loss_rpn_cls', 'loss_cls', 'loss_mask', 'loss'):
            assert fast[key] == pytest.approx(plain[key], rel=2e-3), (key, plain, fast)


def test_quickstart_ships_its_speed_forms_and_plain_drops_them():
    """README command 1 trains with the config's hook; ``tools/quickstart.py --plain`` (the
    side-by-side baseline of docs/speed.md) without it. The UperNet quickstart trains the
    plain model (channels_last measured no faster at its 2 threads)."""
    from .test_tools import load_tool
    build_config = load_tool('quickstart.py')['build_config']
    hooks = [h for h in build_config('det').custom_hooks
             if h['type'] == 'UniNetAccelerationHook']
    assert hooks == [dict(type='UniNetAccelerationHook', channels_last=True,
                          separable_roi_align=True, fuse_for_test=True)]
    assert build_config('det', plain=True).custom_hooks == []
    assert not build_config('seg').get('custom_hooks')
