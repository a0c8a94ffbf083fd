# UperNet with a tiny UniNet backbone on the built-in synthetic shapes (ADE20K layout).
# Sized to train from scratch on a CPU in a few minutes: run it through
#   python tools/quickstart.py --task seg
# which generates the data first (data/synthetic_ade), or generate them with
#   python tools/dataset_converters/make_synthetic_data.py ade20k --out data/synthetic_ade
_base_ = ['mmseg::upernet/upernet_r50_4xb4-80k_ade20k-512x512.py', './_base_/uninet_tiny.py']

custom_imports = dict(imports=['uninet_mm'], allow_failed_imports=False)

# The built-in synthetic data (uninet_mm.datasets.make_ade20k_semantic): class 1 of the label
# pngs is the background, 2..6 the shapes, 0 unused (reduce_zero_label=True makes them 0..5).
# mmseg's ADE20KDataset only accepts (subsets of) its own 150 class names, so the same ADE20K
# folder layout is read with BaseSegDataset and the ADE20K conventions spelled out.
dataset_type = 'BaseSegDataset'
ade_conventions = dict(img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True)
data_root = 'data/synthetic_ade/ADEChallengeData2016'
classes = ('background', 'circle', 'rectangle', 'triangle', 'star', 'ring')
palette = [[120, 120, 120], [220, 20, 60], [0, 130, 255], [255, 170, 0], [150, 60, 220],
           [0, 190, 110]]
metainfo = dict(classes=classes, palette=palette)
image_scale = (320, 256)  # (W, H): the generator's default image size
crop_size = (256, 320)  # (H, W): training crops as large as the images, so nothing is padded

norm_cfg = dict(type='BN', requires_grad=True)
num_classes = len(classes)
# The background covers ~85% of the pixels; down-weighting it makes the shapes' classes learn
# several times faster. mmseg 1.2's class-weighted cross-entropy fails on ignored (255)
# labels, which is why the training crops are never padded and the data have a background
# class (label 0 never occurs).
class_weight = [0.2, 1.0, 1.0, 1.0, 1.0, 1.0]

model = dict(
    pretrained=None,
    data_preprocessor=dict(size=None, size_divisor=32),
    backbone=dict(
        _delete_=True,
        type='UniNet',
        arch=_base_.uninet_tiny,
        out_indices=(1, 2, 4, 5),
        drop_path_rate=0.0,
        norm_cfg=norm_cfg,
        # From scratch; a checkpoint is loaded with mmdet's/mmseg's own tools too through
        # --cfg-options model.backbone.init_cfg.checkpoint=PATH.
        init_cfg=dict(type='Pretrained', checkpoint=None, prefix='backbone.')),
    decode_head=dict(
        in_channels=[32, 48, 64, 96],
        pool_scales=(1, 2, 3, 6),
        channels=64,
        dropout_ratio=0.0,
        num_classes=num_classes,
        norm_cfg=norm_cfg,
        loss_decode=dict(class_weight=class_weight)),
    auxiliary_head=dict(
        in_channels=64,
        in_index=2,
        channels=32,
        dropout_ratio=0.0,
        num_classes=num_classes,
        norm_cfg=norm_cfg,
        loss_decode=dict(class_weight=class_weight)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=image_scale, ratio_range=(1.0, 1.3), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    persistent_workers=True,
    dataset=dict(type=dataset_type, data_root=data_root, metainfo=metainfo,
                 pipeline=train_pipeline, **ade_conventions))
val_dataloader = dict(
    batch_size=4,
    num_workers=1,
    persistent_workers=True,
    dataset=dict(type=dataset_type, data_root=data_root, metainfo=metainfo,
                 pipeline=test_pipeline, **ade_conventions))
test_dataloader = val_dataloader

max_iters = 800
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=3e-3, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=dict(max_norm=10.0, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', eta_min=1e-5, power=0.9, by_epoch=False, begin=50, end=max_iters),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters,
                    max_keep_ckpts=1),
    visualization=dict(type='SegVisualizationHook', draw=False))
visualizer = dict(type='SegLocalVisualizer', vis_backends=[dict(type='LocalVisBackend'),
                                dict(type='TensorboardVisBackend')],
                  name='visualizer', alpha=0.5)
randomness = dict(seed=0)
