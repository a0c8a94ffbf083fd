# UniNet-B6 pre-trained on ImageNet-21K for 90 epochs at 224x224 (paper, Table 5), the first half
# of the 21K recipe; uninet_b6_in21k_ft448_in1k.py then fine-tunes it on ImageNet-1k at 448.
# Paper: 87.4 top-1 on ImageNet-1k after fine-tuning.
#
# The paper gives only the epochs; the rest follows Swin's ImageNet-22K pre-training (the peer
# Table 5 compares with): AdamW, lr 1e-3 for a total batch of 4096, weight decay 0.01, 5 linear
# warm-up epochs, then linear decay; the augmentation of the 1K run of the same model (large
# level, see _base_/uninet_in1k.py).
_base_ = ['./uninet_b6_in1k.py']

# mmpretrain's ImageNet21k dataset (data/imagenet21k/train/<wnid>/*.JPEG), 21842 classes.
num_classes = 21842
data_preprocessor = dict(num_classes=num_classes)
model = dict(head=dict(num_classes=num_classes))
train_dataloader = dict(
    dataset=dict(_delete_=True, type='ImageNet21k', data_root='data/imagenet21k', split='train',
                 pipeline=_base_.train_pipeline))
# No validation during pre-training (as mmpretrain's ImageNet-21K configs): the 1K
# fine-tuning run evaluates.
val_dataloader = None
val_evaluator = None
val_cfg = None
test_dataloader = None
test_evaluator = None
test_cfg = None

optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.01))
# 128 images per GPU as in the 1K run (needs --amp on 80 GB GPUs); lr 1e-3 is for 4096 images,
# scaled linearly to the real total batch (e.g. 2.5e-4 for 8 x 128).
auto_scale_lr = dict(base_batch_size=4096)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=5, convert_to_iter_based=True),
    dict(type='LinearLR', start_factor=1.0, end_factor=0.0, by_epoch=True, begin=5, end=90,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=90)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=5, max_keep_ckpts=3))
