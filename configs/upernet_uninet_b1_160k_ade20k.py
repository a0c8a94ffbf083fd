# UperNet with a UniNet-B1 backbone on ADE20K, 160k iterations, 512x512 crops.
# Paper: 42.7 mIoU, 38M params, 877G FLOPs (at 2048x512).
# Recipe: Swin's ADE20K setting, inherited from mmseg's Swin-T UperNet config: AdamW lr 6e-5,
# weight decay 0.01, linear warm-up over 1500 iterations, then poly decay (power 1.0) to 0,
# 160k iterations, batch 16 (8 GPUs x 2), auxiliary FCN head (weight 0.4) on the stride-16 map.
_base_ = [
    'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',
    './_base_/uninet_adamw.py',
]
custom_imports = dict(imports=['uninet_mm'], allow_failed_imports=False)

# Path to an ImageNet-1k UniNet-B1 checkpoint made by
# tools/model_converters/uninet_official_to_mm.py (or one trained with uninet_b1_in1k.py).
# None: the backbone trains from scratch (tools/train.py logs a warning saying so).
pretrained = None
checkpoint_file = None  # the Swin checkpoint of the inherited config; unused here

model = dict(
    backbone=dict(
        _delete_=True,
        type='UniNet',
        arch='b1',
        out_indices=(1, 2, 4, 5),
        # Paper silent; SyncBN trained in train mode, like the heads of the mmseg recipe.
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        # Paper silent; 0.1 for B1 (Swin-T uses 0.3 here).
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    decode_head=dict(in_channels=[48, 80, 128, 256], num_classes=150),
    # The auxiliary head reads the third output (stage 4, stride 16), as Swin's reads its third.
    auxiliary_head=dict(in_channels=128, num_classes=150))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=_base_.uninet_paramwise_cfg)

# lr 6e-5 is for a total batch of 16 (8 GPUs x 2); with another total batch the runner scales it
# linearly (not in Swin's recipe, which always used 16).
auto_scale_lr = dict(enable=True, base_batch_size=16)

# Logs go to local json files (vis_data/scalars.json) and to TensorBoard (tensorboard --logdir).
visualizer = dict(vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
