# ImageNet-1k classification with UniNet: the DeiT recipe, built on mmpretrain's DeiT/Swin
# ImageNet configs (which reproduce DeiT's training). Variant configs (uninet_b*_in1k.py) set the
# architecture, stochastic depth, image size and augmentation level (below).
#
# DeiT recipe (paper): AdamW, lr 1e-3 for a total batch of 1024 (5e-4 x 1024 / 512), weight
# decay 0.05, 300 epochs, cosine decay, 5 warm-up epochs. From mmpretrain's DeiT config:
# RandAugment (rand-m9-mstd0.5-inc1), random erasing 0.25, Mixup 0.8, CutMix 1.0, label
# smoothing 0.1, bicubic resizing, warm-up from lr x0.001, cosine down to 1e-5.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
    './uninet_adamw.py',
]
custom_imports = dict(imports=['uninet_mm'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='UniNet',
        arch='b1',
        # Index 6: output of the head conv (1x1 conv to 1280, BN, GELU).
        out_indices=(6, ),
        with_head_conv=True,
        drop_path_rate=0.1),
    neck=dict(type='GlobalAveragePooling'),
    # Paper silent on dropout before the classifier: none (the reference code's dropout is
    # optional; DeiT uses none).
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=1280,
        init_cfg=None,  # initialised by the model's init_cfg below, as in the reference code
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        cal_acc=False),
    # Reference initialisation: Linear weights truncated normal (std 0.02), zero bias;
    # LayerNorm weight 1, bias 0.
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
    ],
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))

# Total batch 1024 = 8 GPUs x 128. With another total batch the runner scales the lr linearly
# (DeiT's own rule).
train_dataloader = dict(batch_size=128)
auto_scale_lr = dict(enable=True, base_batch_size=1024)

optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    # No decay on norms, biases, 1-D parameters (DeiT/timm exempt all of them), the layer scales
    # and the position-encoding convs.
    paramwise_cfg=dict(
        _delete_=True,
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys=_base_.uninet_paramwise_cfg['custom_keys']),
    # Paper silent; gradient clipping at norm 5 as mmpretrain's DeiT configs do (DeiT: none).
    clip_grad=dict(max_norm=5.0))

# 5 warm-up epochs (linear, per iteration, from lr x0.001), then cosine to 1e-5 at epoch 300.
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5),
]
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)

# Augmentation strength grows with model size: the paper (section 4) trains small models with
# small augmentation and large ones with heavy augmentation, as EfficientNetV2 (Tan & Le, 2021,
# Table 6: regularisation -- RandAugment magnitude, Mixup -- set per size class S/M/L) does.
# The paper does not list the settings per size; the split is our choice, and each level adds one
# component of DeiT's recipe to the one below:
#   small  (B0, B1, B2): the authors' published B1 run (Sense-X/UniNet exp/b1/run.sh):
#                        RandAugment rand-m9-mstd0.5-inc1, Mixup 0.8, CutMix 1.0, label
#                        smoothing 0.1, no random erasing (--reprob 0.0);
#   medium (B3, B4):     + random erasing 0.25 (DeiT's default, also the reference main.py's);
#   large  (B5, B6):     + repeated augmentation (DeiT: each image 3 times per epoch under
#                        different augmentations; the reference main.py's --repeated-aug).
# Mixup/CutMix and label smoothing (model.train_cfg above) are the same at every level.
uninet_aug_pipelines = dict(
    small=[t for t in _base_.train_pipeline if t['type'] != 'RandomErasing'],
    medium=_base_.train_pipeline,
    large=_base_.train_pipeline,
)
uninet_aug_samplers = dict(
    small=dict(type='DefaultSampler', shuffle=True),
    medium=dict(type='DefaultSampler', shuffle=True),
    large=dict(type='RepeatAugSampler', num_repeats=3, shuffle=True),
)

# Pipelines at the family's other input sizes (B0 160, B2 256, B3 288, B4 320; fine-tuning at
# 384 and 448), built here once for every variant config (picked as
# ``_base_.uninet_train_pipelines[aug_level][img_size]`` and ``_base_.uninet_test_pipelines[...]``):
#   train: random-resized crops of that size, at each augmentation level;
#   test (paper silent): resize the short side to size / 0.875 and centre-crop the size (the
#   0.875 crop ratio of the 224 recipe), e.g. 182 -> 160 for B0;
#   test at the fine-tuning sizes: resize to size x size without cropping, as DeiT and
#   mmpretrain evaluate their 384-px models.
uninet_sizes = (160, 256, 288, 320, 384, 448)
uninet_train_pipelines = {
    level: {size: [dict(t, scale=size) if t['type'] == 'RandomResizedCrop' else t
                   for t in pipeline]
            for size in uninet_sizes}
    for level, pipeline in uninet_aug_pipelines.items()
}
uninet_test_pipelines = {
    size: [dict(t, scale=int(size / 0.875)) if t['type'] == 'ResizeEdge' else
           dict(t, crop_size=size) if t['type'] == 'CenterCrop' else t
           for t in _base_.test_pipeline]
    for size in uninet_sizes
}
uninet_finetune_test_pipelines = {
    size: [dict(type='LoadImageFromFile'),
           dict(type='Resize', scale=size, backend='pillow', interpolation='bicubic'),
           dict(type='PackInputs')]
    for size in (384, 448)
}

# Paper silent: no model EMA and no repeated augmentation (mmpretrain's DeiT configs use neither
# for the small models).

# Logs go to local json files (vis_data/scalars.json) and to TensorBoard (tensorboard --logdir).
visualizer = dict(vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
