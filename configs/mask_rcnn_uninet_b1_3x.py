# Mask R-CNN + FPN with a UniNet-B1 backbone, 3x schedule (36 epochs) with multi-scale training.
# Paper (Table 7): 44.4 box AP / 40.1 mask AP.
# Recipe: the 1x config plus mmdet's Swin-T 3x multi-scale (+ random crop) training pipeline and
# lr steps after epochs 27 and 33.
_base_ = ['./mask_rcnn_uninet_b1_1x.py']

# See mask_rcnn_uninet_b1_1x.py.
pretrained = None

model = dict(
    backbone=dict(
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')))

train_pipeline = _base_.uninet_ms_crop_train_pipeline
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
param_scheduler = _base_.uninet_param_scheduler_3x
train_cfg = dict(max_epochs=36)
