# Cascade Mask R-CNN + FPN with a UniNet-B3 backbone, 3x schedule with multi-scale training.
# Paper (Table 8): 51.3 box AP (Swin-T: 50.5), with Swin's detection setting: AdamW lr 1e-4,
# weight decay 0.05, batch 16, 36 epochs, multi-scale (+ crop) training.
_base_ = [
    'mmdet::cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py',
    './_base_/uninet_adamw.py',
    './_base_/uninet_det.py',
]

# Path to an ImageNet-1k UniNet-B3 checkpoint (tools/model_converters/uninet_official_to_mm.py).
# None: the backbone trains from scratch (tools/train.py logs a warning saying so).
pretrained = None

# Paper silent on the box heads. Choice: the heads behind Swin-T's 50.5 that the paper compares
# with (Swin's Cascade Mask R-CNN 3x recipe): per stage 4 shared 3x3 convs (SyncBN) + 1 fc,
# class-specific regression of decoded boxes with a GIoU loss (weight 10), instead of mmdet's
# default 2-fc heads with smooth-L1.
__stage_stds = [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]]
__bbox_heads = [
    dict(
        type='Shared4Conv1FCBBoxHead',
        in_channels=256,
        conv_out_channels=256,
        fc_out_channels=1024,
        roi_feat_size=7,
        num_classes=80,
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                        target_stds=stds),
        reg_class_agnostic=False,
        reg_decoded_bbox=True,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=10.0)) for stds in __stage_stds
]

model = dict(
    backbone=dict(_base_.uninet_det_backbones['b3'],
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=_base_.uninet_det_in_channels['b3']),
    roi_head=dict(bbox_head=__bbox_heads))

train_pipeline = _base_.uninet_ms_crop_train_pipeline
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
optim_wrapper = _base_.uninet_det_optim_wrapper
param_scheduler = _base_.uninet_param_scheduler_3x
train_cfg = dict(max_epochs=36)
auto_scale_lr = dict(enable=True, base_batch_size=16)

# Logs go to local json files (vis_data/scalars.json) and to TensorBoard (tensorboard --logdir).
visualizer = dict(vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
