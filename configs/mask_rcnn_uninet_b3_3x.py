# Mask R-CNN + FPN with a UniNet-B3 backbone, 3x schedule with multi-scale training.
# Paper (Tables 7 and 8): 47.9 box AP / 42.9 mask AP.
_base_ = ['./mask_rcnn_uninet_b1_3x.py']

# See mask_rcnn_uninet_b3_1x.py.
pretrained = None

model = dict(
    backbone=dict(
        arch='b3',
        # Paper silent; 0.2 for B3, as Swin-T (a backbone of similar size) uses.
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=_base_.uninet_det_in_channels['b3']))
