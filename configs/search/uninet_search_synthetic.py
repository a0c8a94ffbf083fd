# Built-in UniNet architecture search on generated data: 60 architectures, about 17 s of CPU
# each (measured on a loaded 2-core AMD EPYC; see docs/search.md):
#   python tools/search.py configs/search/uninet_search_synthetic.py --work-dir DIR
#
# Same method as the paper's search (configs/search/uninet_search_in1k.py), scaled down so one
# trial takes seconds: a tiny base network (UniNet-B0's layout at about 1/4 of its widths),
# 32x32 images of one large coloured shape on a textured background labelled with its class
# and the quadrant its centre lies in (20 classes, generated into data/search_shapes_cls on
# first use), 1,500 training and 3,000 held-out images, 3 epochs (141 steps of 32) per
# architecture, 60 architectures, 6 per PPO update, and a FLOPs target t near the middle of
# what this space spans at 32 px.
#
# How much the architecture, rather than the training seed, decides this proxy's accuracy is
# measured by tools/analysis_tools/proxy_noise.py: over 20 architectures x 3 seeds, Spearman
# between seeds 0.80 / 0.71 / 0.75 and a spread between architectures 2.14 x the spread over
# seeds (the aim: >= 0.7 and >= 2; the previous proxy, the shape alone: 0.69 / 0.67 / 0.58
# and 1.53). See docs/search.md.
custom_imports = dict(imports=['uninet_mm'], allow_failed_imports=False)

input_size = (32, 32)

# Search space: the paper's full per-stage choices over a tiny base architecture.
search_space = dict(
    base_arch=dict(
        stem_channels=8,
        head_channels=128,
        stages=[
            dict(gop='DWConv', dsm=None, expansion=1, channels=8, repeats=1, stride=1),
            dict(gop='DWConv', dsm='L', expansion=4, channels=16, repeats=1, stride=2),
            dict(gop='DWConv', dsm='L', expansion=6, channels=24, repeats=1, stride=2),
            dict(gop='DWConv', dsm='L', expansion=3, channels=32, repeats=2, stride=2),
            dict(gop='SA', dsm='LG', expansion=2, channels=32, repeats=2, stride=1),
            dict(gop='SA', dsm='LG', expansion=5, channels=64, repeats=2, stride=2),
        ]),
    gops=('SA', 'LSA', 'Conv', 'DWConv', 'MLP'),
    dsms=('L', 'LG', 'G'),
    expansions=(2, 3, 4, 5, 6),
    widths=(0.5, 0.75, 1.0, 1.25, 1.5),
    repeat_deltas=(-2, -1, 0, 1, 2),
    searched_stages=(1, 2, 3, 4, 5),
    input_size=input_size)

# Reward r = a * (t / f) ** alpha with f counted at 32x32 (multiply-adds, batch 1); over 200
# sampled architectures the space spans 1.5M-71M FLOPs there (5-95 %: 2.7M-31M, median 7.7M,
# geometric mean 8.1M), t sits near the middle.
reward = dict(target=10e6, alpha=0.07, hard=False)

# Controller and PPO: NASNet/MnasNet settings except the learning rate and the update size,
# scaled for a search of ~150 instead of ~8,000 architectures (see docs/search.md):
# with lr 3.5e-4 the policy would barely move in 15 updates.
controller = dict(hidden_size=100, init_range=0.1)
ppo = dict(lr=5e-3, clip=0.2, entropy_weight=1e-5, baseline_decay=0.95, epochs=4, batch_size=6)

# Searcher: 'ppo' (the paper's: the controller and ppo sections above), or 'random',
# dict(type='evolution', population_size=20, sample_size=5),
# dict(type='nsga2', population_size=20) (optuna); --searcher NAME overrides the type.
searcher = dict(type='ppo')

search = dict(
    max_trials=60,
    archs_per_update=6,
    seed=0,
    # Reward of a failed trial (exception, NaN loss, out of memory); None: left out of updates.
    failure_reward=0.0,
    top_k=5,
    # Ray backend: scheduler=dict(type='asha', grace_period=1, reduction_factor=2) (or
    # --cfg-options search.scheduler.type=asha) stops weak architectures early
    # (docs/search.md); it makes the proxy validate after every epoch (val_every_epoch
    # None: only with a scheduler).
    val_every_epoch=None)

# Ray Tune backend (--backend ray): resources of one trial, how many run at once.
# max_failures: a trial whose worker dies (lost node, killed process) starts again with the
# same architecture up to this many times, then counts as failed (docs/cluster.md).
ray = dict(cpus_per_trial=1, gpus_per_trial=0, max_concurrent=None,
           max_failures=3, verbose=1, reuse_actors=True)

data_preprocessor = dict(
    num_classes=20, mean=[127.5, 127.5, 127.5], std=[64.0, 64.0, 64.0], to_rgb=True)

proxy = dict(
    # One large shape per image (0.35-0.5 of the side), labelled with its class and the
    # quadrant its centre lies in (20 classes): the centres sit within a few pixels of the
    # image centre, so the label needs the shape and a fine position. Accuracy then grows with
    # what a network learns in 141 steps (the 5-class shape label alone saturated alike for
    # all; docs/search.md). 3,000 held-out images: one image is 0.03 % of accuracy.
    data=dict(type='synthetic_shapes', root='data/search_shapes_cls', num_train=1500,
              num_val=3000, image_size=input_size, seed=0, size_range=(0.35, 0.5),
              task='quadrant'),
    threads=1,
    seed=0,
    runner=dict(
        model=dict(
            type='ImageClassifier',
            data_preprocessor=data_preprocessor,
            backbone=dict(type='UniNet', out_indices=(6, ), with_head_conv=True,
                          drop_path_rate=0.0),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=20,
                      loss=dict(type='CrossEntropyLoss', loss_weight=1.0))),
        train_dataloader=dict(
            batch_size=32, num_workers=0,
            # No flips: they would move the shape to the other quadrant.
            dataset=dict(type='CustomDataset', pipeline=[
                dict(type='LoadImageFromFile'), dict(type='PackInputs')]),
            sampler=dict(type='DefaultSampler', shuffle=True)),
        val_dataloader=dict(
            batch_size=250, num_workers=0,
            dataset=dict(type='CustomDataset', pipeline=[
                dict(type='LoadImageFromFile'), dict(type='PackInputs')]),
            sampler=dict(type='DefaultSampler', shuffle=False)),
        val_evaluator=dict(type='Accuracy', topk=(1, )),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=6e-3, weight_decay=0.05)),
        # 10 warm-up steps, then cosine to 1e-4 over the 3 epochs.
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=10),
            dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=3, eta_min=1e-4,
                 convert_to_iter_based=True)],
        train_cfg=dict(by_epoch=True, max_epochs=3)))
