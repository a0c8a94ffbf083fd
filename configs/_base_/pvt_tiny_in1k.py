# PVT-Tiny (v1) as an ImageNet-1k classifier, for the Table 11 DSM configs in
# configs/dsm_transfer/. mmpretrain has no PVT, so the backbone is mmdet's
# PyramidVisionTransformer (through PyramidVisionTransformerDSM, which the configs set to use
# DSMs), and the recipe is the closest one mmpretrain ships: its DeiT-small config
# (mmpretrain::deit/deit-small_4xb256_in1k.py), whose data pipeline, optimizer and schedule files
# are inherited here. PVT trained with DeiT's recipe (AdamW, lr 1e-3 for batch 1024, weight decay
# 0.05, 300 epochs, cosine, RandAugment, Mixup, CutMix, label smoothing, random erasing).
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['uninet_mm'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='PyramidVisionTransformerDSM',
        # PVT-Tiny: mmdet's defaults (64-dim heads, heads 1/2/5/8, SR ratios 8/4/2/1, MLP ratios
        # 8/8/4/4) with two layers per stage, as mmdet's retinanet_pvt-t config.
        num_layers=[2, 2, 2, 2],
        out_indices=(3, ),
        # PVT's drop path for Tiny.
        drop_path_rate=0.1),
    # mmdet's PVT drops the official model's class token and final LayerNorm; the classifier
    # averages the last stage's tokens instead (GAP, as Swin's classifier).
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=512,
        init_cfg=None,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        cal_acc=False),
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=.02, bias=0.),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
    ],
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))

# Total batch 1024 = 8 GPUs x 128 (PVT's setting); the runner scales the lr for other batches.
train_dataloader = dict(batch_size=128)
auto_scale_lr = dict(enable=True, base_batch_size=1024)

# DeiT-small's optimizer settings in mmpretrain: no decay on norms, biases and position
# embeddings, gradient clipping at 5.
optim_wrapper = dict(
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={'.pos_embed': dict(decay_mult=0.0)}),
    clip_grad=dict(max_norm=5.0))

# Logs go to local json files (vis_data/scalars.json) and to TensorBoard (tensorboard --logdir).
visualizer = dict(vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
