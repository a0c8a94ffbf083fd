# ATSS + FPN with a UniNet-B3 backbone, 3x schedule with multi-scale training.
# Paper (Table 8): 49.8 box AP (Swin-T: 47.2), with Swin's detection setting: AdamW lr 1e-4,
# weight decay 0.05, batch 16, 36 epochs, multi-scale (+ crop) training.
_base_ = [
    'mmdet::atss/atss_r50_fpn_1x_coco.py',
    './_base_/uninet_adamw.py',
    './_base_/uninet_det.py',
]

# Path to an ImageNet-1k UniNet-B3 checkpoint (tools/model_converters/uninet_official_to_mm.py).
# None: the backbone trains from scratch (tools/train.py logs a warning saying so).
pretrained = None

model = dict(
    backbone=dict(_base_.uninet_det_backbones['b3'],
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    # All four stage outputs go in; as in mmdet's ATSS the pyramid starts at stride 8
    # (start_level=1) with two extra levels computed from its own outputs.
    neck=dict(in_channels=_base_.uninet_det_in_channels['b3']))

train_pipeline = _base_.uninet_ms_crop_train_pipeline_bbox
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
optim_wrapper = _base_.uninet_det_optim_wrapper
param_scheduler = _base_.uninet_param_scheduler_3x
train_cfg = dict(max_epochs=36)
auto_scale_lr = dict(enable=True, base_batch_size=16)

# Logs go to local json files (vis_data/scalars.json) and to TensorBoard (tensorboard --logdir).
visualizer = dict(vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
