# UniNet's architecture search as in the paper (section 3.4): an LSTM controller trained with
# PPO samples 2,000 architectures; each trains 5 epochs on ImageNet-1K's training set minus
# 50,000 images held out as the validation set, and is scored by r = a * (550M / f) ** 0.07;
# the top 5 are then fully trained with the generated configs (WORK_DIR/configs/).
#
# Needs ImageNet-1K at data/imagenet (train/<wnid>/*.JPEG; meta/train.txt is used when present)
# and is meant for a cluster:
#   python tools/search.py configs/search/uninet_search_in1k.py --work-dir work_dirs/search_in1k \
#       --backend ray            # ray start --head / ray start --address=... on the nodes first
# Its cost on paper is in docs/search.md.
custom_imports = dict(imports=['uninet_mm'], allow_failed_imports=False)

# Paper silent on the proxy resolution. Ours: 160 px, the input of UniNet-B0, the network the
# search found at the 550M target (0.555 GFLOPs at 160 px, 1.118 G at 224).
input_size = (160, 160)

# The full space (1,875 choices a stage, 5 searched stages) around the default base
# architecture of uninet_mm.search.space (UniNet-B0's layout; the paper derives its initial
# network from EfficientNetV2 without printing it).
search_space = dict(preset='full', input_size=input_size)

reward = dict(target=550e6, alpha=0.07, hard=False)

# NASNet / MnasNet: one-layer LSTM of 100 units, PPO with Adam lr 3.5e-4, entropy 1e-5,
# baseline decay 0.95, about 20 architectures per update. Clip and epochs: ours.
controller = dict(hidden_size=100, init_range=0.1)
ppo = dict(lr=3.5e-4, clip=0.2, entropy_weight=1e-5, baseline_decay=0.95, epochs=4,
           batch_size=20)

search = dict(max_trials=2000, archs_per_update=20, seed=0, failure_reward=0.0, top_k=5)

# One GPU per trial; as many trials at once as the cluster has GPUs.
# max_failures: a trial whose worker dies (lost node, killed process) starts again with the
# same architecture up to this many times, then counts as failed (docs/cluster.md).
ray = dict(cpus_per_trial=8, gpus_per_trial=1, max_concurrent=None,
           max_failures=3)

data_root = 'data/imagenet'
data_preprocessor = dict(
    num_classes=1000,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

proxy = dict(
    # 50,000 training images held out (fixed seed), the rest trained on.
    data=dict(type='imagenet_holdout', data_root=data_root, holdout=50000, seed=0),
    seed=0,
    runner=dict(
        model=dict(
            type='ImageClassifier',
            data_preprocessor=data_preprocessor,
            backbone=dict(type='UniNet', out_indices=(6, ), with_head_conv=True,
                          drop_path_rate=0.0),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=1000,
                      loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                                mode='original'))),
        train_dataloader=dict(
            batch_size=256, num_workers=8, persistent_workers=True,
            dataset=dict(type='CustomDataset', pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='RandomResizedCrop', scale=input_size[0], backend='pillow',
                     interpolation='bicubic'),
                dict(type='RandomFlip', prob=0.5, direction='horizontal'),
                dict(type='PackInputs')]),
            sampler=dict(type='DefaultSampler', shuffle=True)),
        val_dataloader=dict(
            batch_size=256, num_workers=8, persistent_workers=True,
            dataset=dict(type='CustomDataset', pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='ResizeEdge', scale=int(input_size[0] / 0.875), edge='short',
                     backend='pillow', interpolation='bicubic'),
                dict(type='CenterCrop', crop_size=input_size[0]),
                dict(type='PackInputs')]),
            sampler=dict(type='DefaultSampler', shuffle=False)),
        val_evaluator=dict(type='Accuracy', topk=(1, )),
        # Paper silent on the proxy recipe: the DeiT optimizer of the full training
        # (AdamW, lr 1e-3 per 1024 images -> 2.5e-4 at batch 256), one warm-up epoch, cosine.
        optim_wrapper=dict(
            optimizer=dict(type='AdamW', lr=2.5e-4, weight_decay=0.05),
            clip_grad=dict(max_norm=5.0)),
        param_scheduler=[
            dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=1,
                 convert_to_iter_based=True),
            dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=5, eta_min=1e-5,
                 convert_to_iter_based=True)],
        train_cfg=dict(by_epoch=True, max_epochs=5)))
