# Mask R-CNN + FPN with a UniNet-B1 backbone, 1x schedule (12 epochs), COCO instance segmentation.
# Paper (Table 7): 40.5 box AP / 37.5 mask AP, 28M params, 211G FLOPs at 1280x800.
# Recipe: mmdet's Mask R-CNN R50-FPN 1x (single-scale 1333x800, batch 2 x 8 GPUs = 16) with the
# backbone swapped and Swin's optimizer: AdamW lr 1e-4, weight decay 0.05.
_base_ = [
    'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
    './_base_/uninet_adamw.py',
    './_base_/uninet_det.py',
]

# Path to an ImageNet-1k UniNet-B1 checkpoint made by
# tools/model_converters/uninet_official_to_mm.py (or one trained with uninet_b1_in1k.py).
# None: the backbone trains from scratch (tools/train.py logs a warning saying so).
pretrained = None

model = dict(
    backbone=dict(_base_.uninet_det_backbones['b1'],
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=_base_.uninet_det_in_channels['b1']))

optim_wrapper = _base_.uninet_det_optim_wrapper
param_scheduler = _base_.uninet_param_scheduler_1x
train_cfg = dict(max_epochs=12)

# The learning rate above is for a total batch of 16 (8 GPUs x 2 images); with another total
# batch the runner scales it linearly.
auto_scale_lr = dict(enable=True, base_batch_size=16)

# Logs go to local json files (vis_data/scalars.json) and to TensorBoard (tensorboard --logdir).
visualizer = dict(vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
