"""Knowledge distillation (paper Table 6, configs/uninet_b0_in1k_distill.py): the teacher is
frozen and out of checkpoints, the loss is the configured mix of the label and distillation
terms (checked against values computed by hand), hard and soft modes, the missing-teacher
error, and a few iterations of mmengine's Runner on the built-in shapes data."""
import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip('mmpretrain')

from mmengine.config import Config  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmengine.registry import MODELS, init_default_scope  # noqa: E402
from mmengine.runner import Runner, load_checkpoint  # noqa: E402
from mmpretrain.structures import DataSample  # noqa: E402

from uninet_mm.datasets.synthetic_cls import make_shapes_classification  # noqa: E402
from uninet_mm.models.classifiers import TeacherCheckpointError  # noqa: E402
from uninet_mm.utils.mmengine_private import forget_instances  # noqa: E402

from .conftest import tiny_arch  # noqa: E402
from .test_tools import load_tool  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / 'configs' / 'uninet_b0_in1k_distill.py'
NUM_CLASSES = 5
IMG = 32


pytestmark = pytest.mark.usefixtures('one_thread')


# ------------------------------------------------------------------------------ small models
def tiny_teacher(num_classes: int = NUM_CLASSES) -> dict:
    """An mmpretrain ResNet-18 with 8..64 channels (64 pooled features)."""
    return dict(type='ImageClassifier',
                backbone=dict(type='ResNet', depth=18, stem_channels=8, base_channels=8),
                neck=dict(type='GlobalAveragePooling'),
                head=dict(type='LinearClsHead', num_classes=num_classes, in_channels=64))


def write_teacher_checkpoint(path: Path, teacher: dict) -> Path:
    """Build ``teacher``, initialise it at random, give its BatchNorms non-trivial running
    statistics (so eval vs train mode shows) and save it as an mmengine checkpoint."""
    init_default_scope('mmpretrain')
    model = MODELS.build(copy.deepcopy(teacher))
    model.init_weights()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)
    return path


def use_tiny_teacher(cfg: Config, work: Path) -> None:
    """Replace the config's teacher with :func:`tiny_teacher` (as many classes as the student)
    and point ``teacher_checkpoint`` at a checkpoint of it written into ``work``."""
    teacher = tiny_teacher(cfg.model.head.num_classes)
    cfg.model.teacher = teacher
    cfg.model.teacher_checkpoint = str(write_teacher_checkpoint(work / 'teacher.pth', teacher))


def tiny_model_cfg(checkpoint, distill=None, loss_weights=None, distill_head=True) -> dict:
    """The distillation model on a tiny UniNet student (64 pooled features), 5 classes."""
    head = dict(type='LinearClsHead', num_classes=NUM_CLASSES, in_channels=64,
                loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'))
    return dict(
        type='DistillImageClassifier',
        backbone=dict(type='UniNet', arch=tiny_arch(), out_indices=(6, ), with_head_conv=True),
        neck=dict(type='GlobalAveragePooling'),
        head=head,
        distill_head=dict(type='LinearClsHead', num_classes=NUM_CLASSES, in_channels=64)
        if distill_head else None,
        teacher=tiny_teacher(),
        teacher_checkpoint=str(checkpoint),
        distill=distill,
        loss_weights=loss_weights)


def build(model_cfg: dict, init: bool = True):
    init_default_scope('mmpretrain')
    model = MODELS.build(copy.deepcopy(model_cfg))
    if init:
        model.init_weights()
    return model


@pytest.fixture(scope='module')
def teacher_ckpt(tmp_path_factory) -> Path:
    return write_teacher_checkpoint(tmp_path_factory.mktemp('teacher') / 'teacher.pth',
                                    tiny_teacher())


def mixed_batch(n: int = 4):
    """Inputs ``(n, 3, 32, 32)`` and samples with soft (Mixup-like) ``gt_score`` targets."""
    inputs = torch.randn(n, 3, IMG, IMG)
    samples = []
    for i in range(n):
        score = torch.zeros(NUM_CLASSES)
        score[i % NUM_CLASSES] += 0.7
        score[(i + 2) % NUM_CLASSES] += 0.3
        samples.append(DataSample().set_gt_label(i % NUM_CLASSES).set_gt_score(score))
    return inputs, samples


def _state(module: torch.nn.Module) -> dict:
    return {k: v.clone() for k, v in module.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------ config
def test_config_states_the_reading():
    cfg = Config.fromfile(str(CONFIG))
    model = cfg.model
    assert model.type == 'DistillImageClassifier'
    assert model.backbone.arch == 'b0'  # the paper's B0 setting, inherited
    assert model.distill == dict(type='hard')
    assert model.loss_weights == dict(cls=0.5, distill=0.5)
    assert model.distill_head.in_channels == model.head.in_channels == 1280
    assert model.distill_head.num_classes == model.head.num_classes == 1000
    assert [a['type'] for a in model.train_cfg.augments] == ['Mixup', 'CutMix']
    # The teacher: mmpretrain's ConvNeXt-B (see the config for why not RegNetY-16GF), whose
    # checkpoint users download; the placeholder path is not in the repository.
    assert model.teacher.backbone == dict(type='ConvNeXt', arch='base', drop_path_rate=0.0)
    assert not (REPO / model.teacher_checkpoint).exists()
    init_default_scope('mmpretrain')
    teacher = MODELS.build(model.teacher).eval()
    with torch.no_grad():
        assert teacher(torch.randn(1, 3, IMG, IMG), mode='tensor').shape == (1, 1000)


# ---------------------------------------------------------------------------------- teacher
def test_teacher_is_frozen(teacher_ckpt):
    # Soft distillation: its loss has a gradient w.r.t. the teacher's logits (argmax has none).
    model = build(tiny_model_cfg(teacher_ckpt, distill=dict(type='soft', tau=2.0)))
    saved = torch.load(teacher_ckpt, map_location='cpu')['state_dict']
    assert _same(_state(model.teacher), saved), 'teacher not loaded from teacher_checkpoint'

    model.train()
    assert model.training and model.backbone.training and model.distill_head.training
    assert not any(m.training for m in model.teacher.modules()), 'teacher left eval mode'

    optim = build_optim_wrapper(model, dict(optimizer=dict(type='AdamW', lr=0.1,
                                                           weight_decay=0.5)))
    student_before = _state(model.backbone)
    inputs, samples = mixed_batch()
    optim.update_params(model.parse_losses(model.loss(inputs, samples))[0])
    assert _same(_state(model.teacher), saved), 'the teacher changed in a training step'
    assert not _same(_state(model.backbone), student_before), 'the student did not train'
    assert all(p.grad is None for p in model.teacher.parameters())
    assert not any(p.requires_grad for p in model.teacher.parameters())


def test_checkpoints_hold_the_student_only(teacher_ckpt, tmp_path):
    model = build(tiny_model_cfg(teacher_ckpt))
    state = model.state_dict()
    assert not [k for k in state if k.startswith('teacher.')]
    assert any(k.startswith('distill_head.') for k in state)
    # The student's keys are a plain ImageClassifier's plus distill_head.*.
    student_cfg = tiny_model_cfg(teacher_ckpt)
    init_default_scope('mmpretrain')
    plain = MODELS.build(dict(type='ImageClassifier', backbone=student_cfg['backbone'],
                              neck=student_cfg['neck'], head=student_cfg['head']))
    assert {k for k in state if not k.startswith('distill_head.')} == set(plain.state_dict())

    # Loading a student checkpoint (strictly) keeps the teacher; no teacher file needed.
    path = tmp_path / 'student.pth'
    torch.save(dict(state_dict=state), path)
    fresh = build(tiny_model_cfg(tmp_path / 'absent.pth'), init=False)
    teacher_before = _state(fresh.teacher)
    load_checkpoint(fresh, str(path), strict=True)
    assert _same(_state(fresh.backbone), _state(model.backbone))
    assert _same(_state(fresh.teacher), teacher_before)


# -------------------------------------------------------------------------------------- loss
def _by_hand(model, inputs, samples, kind: str, tau: float = 1.0):
    """The two loss terms computed here from logits, without mmpretrain's losses: (label term
    with label smoothing 0.1 on the soft targets, distillation term), both unweighted."""
    with torch.no_grad():
        feats = model.extract_feat(inputs)
        cls_logits, dist_logits = model.head(feats), model.distill_head(feats)
        teacher = model.teacher(inputs, mode='tensor')
    target = torch.stack([s.gt_score for s in samples]) * 0.9 + 0.1 / NUM_CLASSES
    label_term = -(target * torch.log_softmax(cls_logits, dim=1)).sum(1).mean()
    if kind == 'hard':
        picked = torch.log_softmax(dist_logits, dim=1).gather(1, teacher.argmax(1, keepdim=True))
        return label_term, -picked.mean()
    p_teacher = torch.softmax(teacher / tau, dim=1)
    log_student = torch.log_softmax(dist_logits / tau, dim=1)
    kl = (p_teacher * (torch.log(p_teacher) - log_student)).sum(1).mean()
    return label_term, tau * tau * kl


@pytest.mark.parametrize('distill', [dict(type='hard'), dict(type='soft', tau=3.0)],
                         ids=['hard', 'soft'])
def test_loss_is_the_weighted_sum_of_both_terms(teacher_ckpt, distill):
    weights = dict(cls=0.3, distill=0.7)
    model = build(tiny_model_cfg(teacher_ckpt, distill=distill, loss_weights=weights))
    model.eval()  # no drop path: the same forward as _by_hand's
    inputs, samples = mixed_batch()
    losses = model.loss(inputs, samples)
    label_term, distill_term = _by_hand(model, inputs, samples, distill['type'],
                                        distill.get('tau', 1.0))
    assert label_term > 0 and distill_term > 0
    torch.testing.assert_close(losses['loss_cls'], weights['cls'] * label_term)
    torch.testing.assert_close(losses['loss_distill'], weights['distill'] * distill_term)
    total, _ = model.parse_losses(losses)
    torch.testing.assert_close(total, weights['cls'] * label_term
                               + weights['distill'] * distill_term)


def test_hard_follows_the_teacher_argmax_and_soft_its_distribution(teacher_ckpt):
    """Scaling the teacher's logits keeps its argmax: the hard term stays, the soft one moves."""
    inputs, samples = mixed_batch()
    values = {}
    for kind in ('hard', 'soft'):
        distill = dict(type=kind, tau=2.0) if kind == 'soft' else dict(type=kind)
        model = build(tiny_model_cfg(teacher_ckpt, distill=distill)).eval()
        before = model.loss(inputs, samples)['loss_distill']
        with torch.no_grad():
            model.teacher.head.fc.weight.mul_(5.0)
            model.teacher.head.fc.bias.mul_(5.0)
        values[kind] = (before, model.loss(inputs, samples)['loss_distill'])
    torch.testing.assert_close(*values['hard'])
    assert not torch.allclose(*values['soft'])


def test_one_head_and_test_time_prediction(teacher_ckpt):
    """Two heads: the prediction averages their logits. One head (distill_head=None): it takes
    both terms and predicts alone."""
    inputs, samples = mixed_batch()
    model = build(tiny_model_cfg(teacher_ckpt)).eval()
    with torch.no_grad():
        feats = model.extract_feat(inputs)
        mean = (model.head(feats) + model.distill_head(feats)) / 2
        preds = model.predict(inputs)
    torch.testing.assert_close(torch.stack([p.pred_score for p in preds]), mean.softmax(1))
    torch.testing.assert_close(model(inputs), mean)

    single = build(tiny_model_cfg(teacher_ckpt, distill_head=False)).eval()
    assert single.distill_head is None
    with torch.no_grad():
        feats = single.extract_feat(inputs)
        logits, teacher = single.head(feats), single.teacher(inputs, mode='tensor')
        losses = single.loss(inputs, samples)
    torch.testing.assert_close(losses['loss_distill'],
                               0.5 * F.cross_entropy(logits, teacher.argmax(1)))
    torch.testing.assert_close(single(inputs), logits)


def test_bad_distill_settings():
    cfg = tiny_model_cfg('unused.pth')
    with pytest.raises(ValueError, match='distill.type'):
        build(dict(cfg, distill=dict(type='feature')), init=False)
    with pytest.raises(ValueError, match='tau'):
        build(dict(cfg, distill=dict(type='hard', tau=2.0)), init=False)
    with pytest.raises(ValueError, match='loss_weights'):
        build(dict(cfg, loss_weights=dict(cls=1.0)), init=False)


# ------------------------------------------------------------------------ missing checkpoint
@pytest.mark.parametrize('path', [None, 'no/such/teacher.pth'])
def test_missing_teacher_checkpoint_fails_before_any_weight_moves(path):
    model = build(tiny_model_cfg(path), init=False)
    before = _state(model)
    with pytest.raises(TeacherCheckpointError, match='model.teacher_checkpoint'):
        model.init_weights()
    assert _same(_state(model), before)
    # Without init_weights the teacher has random weights: training refuses to start.
    with pytest.raises(RuntimeError, match='teacher_checkpoint'):
        model.loss(*mixed_batch())


# ------------------------------------------------------------------------------- end to end
def shrink_for_shapes(cfg: Config, data: dict, work_dir: Path, teacher_checkpoint,
                      iters: int = 4) -> Config:
    """The shipped distillation config on the built-in 5-class shapes data: tiny student and
    teacher, 32x32 images, ``iters`` iterations of batch 8, one validation at the end; the
    recipe's pipeline (RandAugment), Mixup/CutMix and loss stay."""
    model = cfg.model
    model.backbone.update(arch=tiny_arch(), drop_path_rate=0.0)
    model.head.update(in_channels=64, num_classes=NUM_CLASSES)
    model.distill_head.update(in_channels=64, num_classes=NUM_CLASSES)
    model.teacher = tiny_teacher()
    model.teacher_checkpoint = None if teacher_checkpoint is None else str(teacher_checkpoint)
    cfg.data_preprocessor.num_classes = NUM_CLASSES
    train_pipeline = [dict(t, scale=IMG) if t['type'] == 'RandomResizedCrop' else t
                      for t in cfg.train_dataloader.dataset.pipeline]
    test_pipeline = [dict(t, scale=IMG + 4) if t['type'] == 'ResizeEdge' else
                     dict(t, crop_size=IMG) if t['type'] == 'CenterCrop' else t
                     for t in cfg.val_dataloader.dataset.pipeline]

    def loader(prefix, pipeline, shuffle):
        return dict(batch_size=8, num_workers=0, persistent_workers=False,
                    sampler=dict(type='DefaultSampler', shuffle=shuffle),
                    dataset=dict(type='CustomDataset', data_root=data['root'],
                                 data_prefix=data[prefix], pipeline=pipeline))

    cfg.train_dataloader = loader('train_prefix', train_pipeline, True)
    cfg.val_dataloader = cfg.test_dataloader = loader('val_prefix', test_pipeline, False)
    cfg.val_evaluator = cfg.test_evaluator = dict(type='Accuracy', topk=(1, ))
    cfg.train_cfg = dict(by_epoch=False, max_iters=iters, val_interval=iters)
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
    cfg.auto_scale_lr.enable = False
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=iters, by_epoch=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]
    cfg.work_dir = str(work_dir)
    cfg.launcher = 'none'
    return cfg


@pytest.fixture(scope='module')
def shapes(tmp_path_factory) -> dict:
    return make_shapes_classification(tmp_path_factory.mktemp('shapes'), num_train=32,
                                      num_val=8, image_size=(IMG, IMG))


def _run(cfg: Config, action: str) -> Runner:
    runner = Runner.from_cfg(cfg)
    try:
        getattr(runner, action)()
    finally:
        forget_instances(runner.experiment_name)
    return runner


def test_train_tool_refuses_before_building_anything(tmp_path):
    """tools/train.py checks the teacher checkpoint first (before the data and the Runner)."""
    train = load_tool('train.py')
    with pytest.raises(SystemExit, match='model.teacher_checkpoint names no file'):
        train['main']([str(CONFIG), '--work-dir', str(tmp_path)])
    assert not any(tmp_path.iterdir()), 'the Runner started'


def test_runner_refuses_to_train_without_the_teacher(shapes, tmp_path):
    cfg = shrink_for_shapes(Config.fromfile(str(CONFIG)), shapes, tmp_path,
                            tmp_path / 'missing.pth')
    runner = Runner.from_cfg(cfg)
    try:
        with pytest.raises(TeacherCheckpointError, match='model.teacher_checkpoint'):
            runner.train()
        assert runner.iter == 0
    finally:
        forget_instances(runner.experiment_name)


def test_runner_trains_with_the_shipped_config(shapes, tmp_path, teacher_ckpt):
    cfg = shrink_for_shapes(Config.fromfile(str(CONFIG)), shapes, tmp_path / 'train',
                            teacher_ckpt)
    runner = _run(cfg, 'train')
    assert runner.iter == 4
    hub = runner.message_hub
    for key in ('train/loss_cls', 'train/loss_distill'):
        assert torch.isfinite(torch.tensor(hub.get_scalar(key).current())), key
    assert 0 <= hub.get_scalar('val/accuracy/top1').current() <= 100
    saved = torch.load(teacher_ckpt, map_location='cpu')['state_dict']
    assert _same(_state(runner.model.teacher), saved), 'the teacher changed in training'

    # The checkpoint holds the student only, and tests without any teacher file.
    ckpt = tmp_path / 'train' / 'iter_4.pth'
    state = torch.load(ckpt, map_location='cpu', weights_only=False)['state_dict']
    assert any(k.startswith('distill_head.') for k in state)
    assert not [k for k in state if k.startswith('teacher.')]
    test_cfg = shrink_for_shapes(Config.fromfile(str(CONFIG)), shapes, tmp_path / 'test', None)
    test_cfg.load_from = str(ckpt)
    tester = _run(test_cfg, 'test')
    assert tester.message_hub.get_scalar('test/accuracy/top1').current() == \
        hub.get_scalar('val/accuracy/top1').current()
