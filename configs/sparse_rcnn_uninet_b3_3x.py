# Sparse R-CNN + FPN with a UniNet-B3 backbone, 3x schedule with multi-scale (+ crop) training.
# Paper (Table 8): 48.9 box AP (Swin-T: 47.9), with Swin's detection setting.
# Recipe: mmdet's Sparse R-CNN 300-proposal, crop + multi-scale 3x config (already the Swin-T 3x
# pipeline) with the backbone swapped.
_base_ = [
    'mmdet::sparse_rcnn/sparse-rcnn_r50_fpn_300-proposals_crop-ms-480-800-3x_coco.py',
    './_base_/uninet_adamw.py',
    './_base_/uninet_det.py',
]

# Path to an ImageNet-1k UniNet-B3 checkpoint (tools/model_converters/uninet_official_to_mm.py).
# None: the backbone trains from scratch (tools/train.py logs a warning saying so).
pretrained = None

model = dict(
    backbone=dict(_base_.uninet_det_backbones['b3'],
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=_base_.uninet_det_in_channels['b3']))

# Paper silent on the number of proposals: 300, the setting Swin's Sparse R-CNN result used
# (inherited). Optimizer: Swin's AdamW lr 1e-4 / weight decay 0.05 for all detectors, keeping
# Sparse R-CNN's own gradient clipping (max norm 1), which its recipe needs for stability.
optim_wrapper = dict(
    _base_.uninet_det_optim_wrapper,
    clip_grad=dict(max_norm=1, norm_type=2))
# Same warm-up and steps as the other 3x configs (mmdet's Sparse R-CNN warms up for 500 iters).
param_scheduler = _base_.uninet_param_scheduler_3x
train_cfg = dict(max_epochs=36)
auto_scale_lr = dict(enable=True, base_batch_size=16)

# Logs go to local json files (vis_data/scalars.json) and to TensorBoard (tensorboard --logdir).
visualizer = dict(vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
