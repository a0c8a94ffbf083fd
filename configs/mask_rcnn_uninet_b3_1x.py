# Mask R-CNN + FPN with a UniNet-B3 backbone, 1x schedule (12 epochs).
# Paper (Table 7): 45.2 box AP / 41.1 mask AP, 42M params, 270G FLOPs at 1280x800.
_base_ = ['./mask_rcnn_uninet_b1_1x.py']

# Path to an ImageNet-1k UniNet-B3 checkpoint (tools/model_converters/uninet_official_to_mm.py).
# None: the backbone trains from scratch (tools/train.py logs a warning saying so).
pretrained = None

model = dict(
    backbone=dict(_base_.uninet_det_backbones['b3'],
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=_base_.uninet_det_in_channels['b3']))
