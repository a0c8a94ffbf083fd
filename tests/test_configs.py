"""Every shipped config loads, states the paper's recipe, builds its model, trains one step and
predicts, on a small synthetic batch.

Inputs are shrunk by overriding the loaded config here (never in the config files): 64x64 images,
batch 2. The models are the real ones (B1..B6 backbones, full heads), so a step takes seconds.
"""
from pathlib import Path

import pytest
import torch

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')
pytest.importorskip('mmpretrain')

from mmengine.config import Config  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmengine.registry import MODELS, init_default_scope  # noqa: E402

from .test_distill import use_tiny_teacher  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / 'configs'

DET_CONFIGS = {
    'mask_rcnn_uninet_b1_1x.py': dict(arch='b1', epochs=12, milestones=[8, 11], ms=False),
    'mask_rcnn_uninet_b1_3x.py': dict(arch='b1', epochs=36, milestones=[27, 33], ms=True),
    'mask_rcnn_uninet_b3_1x.py': dict(arch='b3', epochs=12, milestones=[8, 11], ms=False),
    'mask_rcnn_uninet_b3_3x.py': dict(arch='b3', epochs=36, milestones=[27, 33], ms=True),
    'cascade_mask_rcnn_uninet_b3_3x.py': dict(arch='b3', epochs=36, milestones=[27, 33],
                                              ms=True),
    'atss_uninet_b3_3x.py': dict(arch='b3', epochs=36, milestones=[27, 33], ms=True),
    'sparse_rcnn_uninet_b3_3x.py': dict(arch='b3', epochs=36, milestones=[27, 33], ms=True),
}
SEG_CONFIGS = {
    'upernet_uninet_b1_160k_ade20k.py': dict(arch='b1', in_channels=[48, 80, 128, 256]),
    'upernet_uninet_b3_160k_ade20k.py': dict(arch='b3', in_channels=[56, 96, 160, 288]),
}
CLS_CONFIGS = {
    'uninet_b0_in1k.py': dict(arch='b0', size=160, epochs=300, aug='small'),
    # Table 6: B0 with knowledge distillation (model and teacher: tests/test_distill.py).
    'uninet_b0_in1k_distill.py': dict(arch='b0', size=160, epochs=300, aug='small'),
    'uninet_b1_in1k.py': dict(arch='b1', size=224, epochs=300, aug='small'),
    'uninet_b2_in1k.py': dict(arch='b2', size=256, epochs=300, aug='small'),
    'uninet_b3_in1k.py': dict(arch='b3', size=288, epochs=300, aug='medium'),
    'uninet_b4_in1k.py': dict(arch='b4', size=320, epochs=300, aug='medium'),
    'uninet_b5_in1k.py': dict(arch='b5', size=224, epochs=300, aug='large'),
    'uninet_b6_in1k.py': dict(arch='b6', size=224, epochs=300, aug='large'),
    'uninet_b5_in1k_ft384.py': dict(arch='b5', size=384, epochs=30, aug='large', batch=32),
    'uninet_b6_in1k_ft448.py': dict(arch='b6', size=448, epochs=30, aug='large', batch=16),
    # Table 5: ImageNet-21K pre-training (90 epochs), then 30 epochs of 1K fine-tuning.
    'uninet_b5_in21k.py': dict(arch='b5', size=224, epochs=90, aug='large', classes=21842,
                               base_batch=4096),
    'uninet_b6_in21k.py': dict(arch='b6', size=224, epochs=90, aug='large', classes=21842,
                               base_batch=4096),
    'uninet_b5_in21k_ft384_in1k.py': dict(arch='b5', size=384, epochs=30, aug='large',
                                          batch=32),
    'uninet_b6_in21k_ft448_in1k.py': dict(arch='b6', size=448, epochs=30, aug='large',
                                          batch=16),
}
ALL_CONFIGS = {**DET_CONFIGS, **SEG_CONFIGS, **CLS_CONFIGS}

IMG = 64


def load(name: str) -> Config:
    return Config.fromfile(str(CONFIG_DIR / name))


def test_every_config_is_listed():
    shipped = {p.name for p in CONFIG_DIR.glob('*.py')}
    assert set(ALL_CONFIGS) <= shipped
    assert not shipped - set(ALL_CONFIGS), f'untested configs: {shipped - set(ALL_CONFIGS)}'


def _custom_keys(paramwise_cfg):
    return paramwise_cfg.get('custom_keys', {})


@pytest.mark.parametrize('name', sorted(ALL_CONFIGS))
def test_config_recipe(name):
    cfg = load(name)
    assert 'uninet_mm' in cfg.custom_imports['imports']
    assert cfg.custom_imports['allow_failed_imports'] is False
    backbone = cfg.model.backbone
    assert backbone.type == 'UniNet'
    spec = ALL_CONFIGS[name]
    assert backbone.arch == spec['arch']

    optim = cfg.optim_wrapper
    assert optim.optimizer.type == 'AdamW'
    keys = _custom_keys(optim.paramwise_cfg)
    assert keys['layer_scale']['decay_mult'] == 0
    assert keys['pos_embed']['decay_mult'] == 0
    assert optim.paramwise_cfg['norm_decay_mult'] == 0
    assert cfg.auto_scale_lr['enable'] is True

    if name in DET_CONFIGS:
        assert backbone.out_indices == (1, 2, 4, 5)
        assert optim.optimizer.lr == 1e-4 and optim.optimizer.weight_decay == 0.05
        assert cfg.auto_scale_lr['base_batch_size'] == 16
        assert cfg.train_dataloader.batch_size == 2  # x 8 GPUs = 16
        assert cfg.train_cfg.max_epochs == spec['epochs']
        steps = [s for s in cfg.param_scheduler if s.type == 'MultiStepLR']
        assert steps[0].milestones == spec['milestones']
        assert steps[0].end == spec['epochs']
        pipeline_types = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
        assert ('RandomChoice' in pipeline_types) == spec['ms']
        assert 'pretrained' in cfg and cfg.pretrained is None
        # a Pretrained entry without checkpoint: from scratch, and stock tools can set one
        assert backbone.init_cfg == dict(type='Pretrained', checkpoint=None, prefix='backbone.')
    elif name in SEG_CONFIGS:
        assert backbone.out_indices == (1, 2, 4, 5)
        assert optim.optimizer.lr == 6e-5 and optim.optimizer.weight_decay == 0.01
        assert cfg.train_cfg.max_iters == 160000
        assert cfg.train_dataloader.batch_size == 2
        warmup, poly = cfg.param_scheduler
        assert warmup.type == 'LinearLR' and warmup.end == 1500
        assert poly.type == 'PolyLR' and poly.power == 1.0 and poly.end == 160000
        assert cfg.crop_size == (512, 512)
        assert cfg.model.decode_head.in_channels == spec['in_channels']
        assert cfg.model.decode_head.num_classes == 150
        assert 'pretrained' in cfg and cfg.pretrained is None
    else:
        assert backbone.out_indices == (6, ) and backbone.with_head_conv is True
        classes = spec.get('classes', 1000)
        assert cfg.model.head.in_channels == 1280 and cfg.model.head.num_classes == classes
        assert cfg.data_preprocessor.num_classes == classes
        assert cfg.auto_scale_lr['base_batch_size'] == spec.get('base_batch', 1024)
        # x 8 GPUs; fine-tuning at 384/448 px: what fits one 80 GB GPU
        assert cfg.train_dataloader.batch_size == spec.get('batch', 128)
        assert cfg.train_cfg.max_epochs == spec['epochs']
        pipeline = cfg.train_dataloader.dataset.pipeline
        crop = [t for t in pipeline if t['type'] == 'RandomResizedCrop']
        assert crop[0]['scale'] == spec['size']
        _check_aug_level(cfg, spec['aug'])
        if spec['epochs'] == 300:
            assert optim.optimizer.lr == 1e-3 and optim.optimizer.weight_decay == 0.05
            warmup, cosine = cfg.param_scheduler
            assert warmup.type == 'LinearLR' and warmup.end == 5 and warmup.by_epoch
            assert cosine.type == 'CosineAnnealingLR' and cosine.begin == 5
        elif spec['epochs'] == 90:  # 21K pre-training
            assert cfg.train_dataloader.dataset.type == 'ImageNet21k'
            assert optim.optimizer.lr == 1e-3 and optim.optimizer.weight_decay == 0.01
            assert cfg.param_scheduler[-1].end == 90 and cfg.val_dataloader is None
        elif 'in21k' in name:  # 1K fine-tuning of the 21K model: backbone from `pretrained`
            assert 'pretrained' in cfg and cfg.pretrained is None and cfg.load_from is None
            assert optim.optimizer.lr == 1e-5 and optim.optimizer.weight_decay == 1e-8
        else:
            assert 'finetune_from' in cfg and cfg.load_from is None


def _check_aug_level(cfg: Config, level: str) -> None:
    """small: the authors' B1 recipe (no random erasing); medium: + random erasing 0.25
    (DeiT); large: + repeated augmentation. RandAugment m9 and Mixup/CutMix at every level."""
    types = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
    rand_augment = [t for t in cfg.train_dataloader.dataset.pipeline
                    if t['type'] == 'RandAugment']
    assert rand_augment[0]['magnitude_level'] == 9
    assert [a['type'] for a in cfg.model.train_cfg.augments] == ['Mixup', 'CutMix']
    assert ('RandomErasing' in types) == (level != 'small')
    sampler = cfg.train_dataloader.sampler
    assert (sampler.type == 'RepeatAugSampler') == (level == 'large')


# ------------------------------------------------------------------------ synthetic batches
def _det_batch(num_classes: int, with_mask: bool):
    from mmdet.testing import demo_mm_inputs
    return demo_mm_inputs(batch_size=2, image_shapes=[(3, IMG, IMG)] * 2, num_items=[3, 2],
                          num_classes=num_classes, with_mask=with_mask)


def _seg_batch(num_classes: int):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    inputs, samples = [], []
    for _ in range(2):
        inputs.append(torch.randint(0, 256, (3, IMG, IMG), dtype=torch.uint8))
        sample = SegDataSample(metainfo=dict(img_shape=(IMG, IMG), ori_shape=(IMG, IMG),
                                             pad_shape=(IMG, IMG)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, IMG, IMG)))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def _cls_batch(num_classes: int):
    from mmpretrain.structures import DataSample
    inputs = [torch.randint(0, 256, (3, IMG, IMG), dtype=torch.uint8) for _ in range(2)]
    samples = [DataSample().set_gt_label(i % num_classes) for i in range(2)]
    return dict(inputs=inputs, data_samples=samples)


def build_model(cfg: Config):
    init_default_scope(cfg.default_scope)
    model_cfg = cfg.model.copy()
    # As mmengine's Runner does: a top-level data_preprocessor goes into the model.
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(model_cfg)
    model.init_weights()
    return model


def shrink(cfg: Config) -> None:
    """Test-only overrides that keep every layer but cut the work: small inputs (the segmentor
    pads every batch to its crop size) and fewer proposals / sampled RoIs in the detectors."""
    model = cfg.model
    if cfg.default_scope == 'mmseg':
        model.data_preprocessor.size = (IMG, IMG)
    if cfg.default_scope != 'mmdet':
        return
    if model.type == 'SparseRCNN':
        model.rpn_head.num_proposals = 16
        model.test_cfg.rcnn.max_per_img = 16
        return
    train_cfg, test_cfg = model.train_cfg, model.test_cfg
    if 'rpn_proposal' in train_cfg:
        train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=64)
        rcnn = train_cfg.rcnn if isinstance(train_cfg.rcnn, list) else [train_cfg.rcnn]
        for stage in rcnn:
            stage.sampler.num = 32
        test_cfg.rpn.update(nms_pre=200, max_per_img=64)
        test_cfg.rcnn.max_per_img = 10
    else:  # single stage
        test_cfg.update(nms_pre=200, max_per_img=10)


def synthetic_batch(cfg: Config, model):
    scope = cfg.default_scope
    if scope == 'mmdet':
        with_mask = 'mask_head' in cfg.model.get('roi_head', {})
        head = cfg.model.get('roi_head', cfg.model).get('bbox_head')
        head = head[0] if isinstance(head, list) else head
        return _det_batch(head['num_classes'], with_mask)
    if scope == 'mmseg':
        return _seg_batch(cfg.model.decode_head.num_classes)
    return _cls_batch(cfg.model.head.num_classes)


def _grad_norm(params) -> float:
    return sum(float(p.grad.abs().sum()) for p in params if p.grad is not None)


@pytest.mark.parametrize('name', sorted(ALL_CONFIGS))
def test_config_train_step_and_inference(name, tmp_path):
    torch.manual_seed(0)
    cfg = load(name)
    shrink(cfg)
    if 'teacher' in cfg.model:  # distillation: a small teacher with a checkpoint to load
        use_tiny_teacher(cfg, tmp_path)
    model = build_model(cfg)
    model.train()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)

    # The optimizer groups follow the recipe: no decay on layer scales / pos-encoding / norms.
    groups = optim_wrapper.optimizer.param_groups
    by_param = {id(p): g for g in groups for p in g['params']}
    named = dict(model.backbone.named_parameters())
    for key in ('layer_scale1', 'pos_embed.weight', 'stem.norm.weight'):
        param = next(p for n, p in named.items() if n.endswith(key))
        assert by_param[id(param)]['weight_decay'] == 0, key
    conv = named['stem.conv.weight']
    assert by_param[id(conv)]['weight_decay'] > 0

    data = synthetic_batch(cfg, model)
    backward_of_one_batch(model, data, optim_wrapper)
    backbone = model.backbone
    assert _grad_norm(backbone.stem.parameters()) > 0, 'no gradient reaches the stem'
    assert _grad_norm(backbone.stages[-1].parameters()) > 0, 'no gradient in the last stage'
    optim_wrapper.step()
    optim_wrapper.zero_grad()
    assert_predictions(model, data, cfg)


def backward_of_one_batch(model, data, optim_wrapper) -> None:
    """Preprocess ``data``, compute the losses (finite) and backpropagate them."""
    batch = model.data_preprocessor(data, True)
    loss, log_vars = model.parse_losses(model(**batch, mode='loss'))
    assert torch.isfinite(loss), log_vars
    optim_wrapper.backward(loss)


def assert_predictions(model, data, cfg) -> None:
    """The model in eval mode predicts one finite result of the right shape per image."""
    model.eval()
    with torch.no_grad():
        outputs = model.test_step(data)
    assert len(outputs) == 2
    scope = cfg.default_scope
    for out in outputs:
        if scope == 'mmdet':
            assert 'bboxes' in out.pred_instances
            assert torch.isfinite(out.pred_instances.bboxes).all()
        elif scope == 'mmseg':
            assert out.pred_sem_seg.data.shape[-2:] == (IMG, IMG)
        else:
            assert out.pred_score.shape == (cfg.model.head.num_classes, )
            assert torch.isfinite(out.pred_score).all()
