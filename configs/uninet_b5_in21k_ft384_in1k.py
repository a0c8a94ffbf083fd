# UniNet-B5 pre-trained on ImageNet-21K (uninet_b5_in21k.py), fine-tuned on ImageNet-1k for 30
# epochs at 384x384 (paper, Table 5: 87.0 top-1).
#
# The paper gives only the epochs; the rest follows Swin's fine-tuning of its ImageNet-22K models:
# AdamW, constant lr 1e-5 for a total batch of 1024, weight decay 1e-8, the 1K augmentation of this
# model (large level) at 384 px.
_base_ = ['./uninet_b5_in1k_ft384.py']

# The 21K run's checkpoint: its backbone is loaded (its 21842-class head does not fit the 1000
# classes here and is left out; the head starts from scratch). Set it here or with
# --cfg-options pretrained=PATH (this project's tools) or
# model.backbone.init_cfg.checkpoint=PATH (any OpenMMLab tool); None trains from scratch.
pretrained = None
model = dict(
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')))
# Not the whole-classifier load of the 224 -> 384 fine-tuning config this inherits from.
finetune_from = None
load_from = None

optim_wrapper = dict(optimizer=dict(lr=1e-5, weight_decay=1e-8))
# Constant lr after a short warm-up of the new head (Swin: constant; warm-up: our choice).
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, end=1, convert_to_iter_based=True),
    dict(type='ConstantLR', factor=1.0, by_epoch=True, begin=1),
]
train_cfg = dict(max_epochs=30)
# 32 images per GPU as in uninet_b5_in1k_ft384.py (fits one 80 GB GPU); auto_scale_lr
# (base 1024) scales the lr to the real total batch, e.g. 2.5e-6 for 8 x 32.
