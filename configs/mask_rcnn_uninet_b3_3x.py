# Mask R-CNN + FPN with a UniNet-B3 backbone, 3x schedule with multi-scale training.
# Paper (Tables 7 and 8): 47.9 box AP / 42.9 mask AP.
# Recipe: the B3 1x config with the 3x schedule of mask_rcnn_uninet_b1_3x.py.
_base_ = ['./mask_rcnn_uninet_b3_1x.py']

train_dataloader = dict(dataset=dict(pipeline=_base_.uninet_ms_crop_train_pipeline))
param_scheduler = _base_.uninet_param_scheduler_3x
train_cfg = dict(max_epochs=36)
