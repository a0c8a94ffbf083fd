# Pieces shared by the UniNet detection configs (variables picked as ``_base_.uninet_...``,
# plus ``custom_imports``, which registers the UniNet backbone).
custom_imports = dict(imports=['uninet_mm'], allow_failed_imports=False)

# Stage outputs a detector uses: stages 1, 2, 4, 5 (strides 4, 8, 16, 32).
uninet_det_backbone = dict(
    _delete_=True,
    type='UniNet',
    arch='b1',
    out_indices=(1, 2, 4, 5),
    # Paper silent on how the backbone's BatchNorms are handled in detection. Choice: SyncBN,
    # trained and in train mode (norm_eval=False), as mmdet does for its BN-based ImageNet
    # backbones that are fine-tuned at batch 2 per GPU (e.g. EfficientNet); plain BN would
    # estimate statistics from 2 images. (The runner turns SyncBN into BN when not distributed.)
    norm_cfg=dict(type='SyncBN', requires_grad=True),
    norm_eval=False,
    frozen_stages=-1,
    # Paper silent on stochastic depth in detection; each config states its rate.
    drop_path_rate=0.1,
    with_cp=False,
    # No checkpoint: from scratch. Set one with pretrained=PATH (this project's tools) or
    # --cfg-options model.backbone.init_cfg.checkpoint=PATH (any OpenMMLab tool, mim).
    init_cfg=dict(type='Pretrained', checkpoint=None, prefix='backbone.'))
# The paper's detection backbones. Paper silent on stochastic depth: 0.1 for B1, 0.2 for B3 (as
# Swin-T, a backbone of similar size, uses).
uninet_det_backbones = dict(
    b1=dict(uninet_det_backbone, arch='b1', drop_path_rate=0.1),
    b3=dict(uninet_det_backbone, arch='b3', drop_path_rate=0.2))

# FPN input channels (outputs of stages 1, 2, 4, 5).
uninet_det_in_channels = dict(
    b1=[48, 80, 128, 256],
    b3=[56, 96, 160, 288],
)

# 1x schedule: 12 epochs, lr x0.1 after epochs 8 and 11. Warm-up: paper silent; 1000 linear
# iterations from lr x0.001 as in Swin's detection recipe.
uninet_param_scheduler_1x = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
# 3x schedule: 36 epochs, lr x0.1 after epochs 27 and 33, same warm-up.
uninet_param_scheduler_3x = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=36, by_epoch=True, milestones=[27, 33], gamma=0.1),
]

# 3x multi-scale training as in mmdet's Swin-T 3x config (DETR-style): random flip, then either
# a resize of the short side to one of 480..800 (step 32, long side <= 1333), or a resize to
# 400/500/600, a random 384..600 crop and the 480..800 resize.
__ms_scales = [(480, 1333), (512, 1333), (544, 1333), (576, 1333), (608, 1333), (640, 1333),
              (672, 1333), (704, 1333), (736, 1333), (768, 1333), (800, 1333)]
uninet_ms_crop_transforms = [
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', scales=__ms_scales, keep_ratio=True)],
            [
                dict(type='RandomChoiceResize', scales=[(400, 1333), (500, 1333), (600, 1333)],
                     keep_ratio=True),
                dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600),
                     allow_negative_crop=True),
                dict(type='RandomChoiceResize', scales=__ms_scales, keep_ratio=True),
            ],
        ]),
]
# backend_args=None: local files, as the inherited mmdet dataset configs default to.
uninet_ms_crop_train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    *uninet_ms_crop_transforms,
    dict(type='PackDetInputs'),
]
uninet_ms_crop_train_pipeline_bbox = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    *uninet_ms_crop_transforms,
    dict(type='PackDetInputs'),
]
