# Mask R-CNN with a tiny UniNet backbone on the built-in synthetic shapes (COCO format).
# Sized to train from scratch on a CPU in a few minutes: run it through tools/quickstart.py,
# which generates the data first, or directly with
#   python tools/dataset_converters/make_synthetic_data.py coco --out data/synthetic_coco
#   python -m mmengine ... / mmdet's tools/train.py with this file.
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py', './_base_/uninet_tiny.py']

custom_imports = dict(imports=['uninet_mm'], allow_failed_imports=False)

# The built-in synthetic data (uninet_mm.datasets.make_coco_instances).
data_root = 'data/synthetic_coco/'
classes = ('circle', 'rectangle', 'triangle', 'star', 'ring')
palette = [(220, 20, 60), (0, 130, 255), (255, 170, 0), (150, 60, 220), (0, 190, 110)]
metainfo = dict(classes=classes, palette=palette)
image_scale = (320, 256)  # (W, H): the generator's default image size

neck_channels = 64
num_classes = len(classes)

model = dict(
    backbone=dict(
        _delete_=True,
        type='UniNet',
        arch=_base_.uninet_tiny,
        out_indices=(1, 2, 4, 5),
        drop_path_rate=0.0,
        # From scratch; a checkpoint is loaded with mmdet's/mmseg's own tools too through
        # --cfg-options model.backbone.init_cfg.checkpoint=PATH.
        init_cfg=dict(type='Pretrained', checkpoint=None, prefix='backbone.')),
    neck=dict(in_channels=[32, 48, 64, 96], out_channels=neck_channels),
    rpn_head=dict(
        in_channels=neck_channels,
        feat_channels=neck_channels,
        # Objects are ~20-130 px: base anchor sizes 24, 48, 96, 192, 384.
        anchor_generator=dict(scales=[6])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=neck_channels),
        bbox_head=dict(in_channels=neck_channels, fc_out_channels=256,
                       num_classes=num_classes),
        mask_roi_extractor=dict(out_channels=neck_channels),
        mask_head=dict(num_convs=2, in_channels=neck_channels, conv_out_channels=64,
                       num_classes=num_classes)),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=128)),
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(
        rpn=dict(nms_pre=500, max_per_img=200),
        rcnn=dict(max_per_img=30)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomResize', scale=image_scale, ratio_range=(0.8, 1.2), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    batch_sampler=None,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=0),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=1,
    persistent_workers=True,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

# Iteration-based schedule from scratch: AdamW, linear warm-up, cosine decay.
max_iters = 600
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=dict(max_norm=10.0, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=40),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=40, end=max_iters,
         eta_min_ratio=0.05),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters,
                    max_keep_ckpts=1),
    visualization=dict(type='DetVisualizationHook', draw=False))
log_processor = dict(by_epoch=False)
visualizer = dict(type='DetLocalVisualizer', vis_backends=[dict(type='LocalVisBackend'),
                                dict(type='TensorboardVisBackend')],
                  name='visualizer')
randomness = dict(seed=0)

# The forms measured faster for this config on a CPU, with the plain model's losses
# (docs/speed.md): the backbone in channels_last and the RoI heads' RoIAlign as matrix
# products (mmcv's kernel on a GPU); tested with the BatchNorms folded. custom_hooks = []
# trains the plain model.
custom_hooks = [dict(type='UniNetAccelerationHook', channels_last=True, separable_roi_align=True,
                     fuse_for_test=True)]
auto_scale_lr = dict(enable=False, base_batch_size=4)
