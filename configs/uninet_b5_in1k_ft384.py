# UniNet-B5 fine-tuned on ImageNet-1k at 384x384, starting from the 224-px run of
# uninet_b5_in1k.py (paper: trained at 224, then fine-tuned at 384).
_base_ = ['./uninet_b5_in1k.py']

# Checkpoint of the 224-px run (the whole classifier, head included), loaded with load_from.
# None: nothing is loaded and the model trains from scratch at 384 (tools/train.py logs a
# warning saying so).
finetune_from = None
load_from = finetune_from

# Paper silent on the fine-tuning recipe. Choice: DeiT's fine-tuning at higher resolution:
# 30 epochs, AdamW lr 5e-6 per 512 images (1e-5 for the total batch 1024 here, scaled linearly
# for other batches), weight decay 1e-8, 5 warm-up epochs from lr x0.2 (DeiT: 1e-6 up to 5e-6),
# cosine decay to half the lr (DeiT's minimum lr equals its base lr at batch 512), same
# augmentations as the 224 run.
optim_wrapper = dict(optimizer=dict(lr=1e-5, weight_decay=1e-8))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.2, by_epoch=True, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min_ratio=0.5, by_epoch=True, begin=5),
]
train_cfg = dict(max_epochs=30)

# 384x384 random-resized crops for training; test: resize to 384x384 without cropping, as DeiT and
# mmpretrain evaluate their 384-px models (pipelines in _base_/uninet_in1k.py).
img_size = 384
# 32 images per GPU (x 8 GPUs = 256), to fit one 80 GB GPU: training UniNet-B5 at 384 px keeps
# 1480 MiB of activations per image for backward in fp32 (autograd's saved tensors on the plain
# GPU code path, tools/analysis_tools/activation_memory.py), so 32 images hold 46 GB and leave
# room for backward's temporaries; with --amp twice as many fit. The lr above is for a total
# batch of 1024; auto_scale_lr (base_batch_size=1024, inherited) scales it linearly to the real
# total batch, e.g. 2.5e-06 for 8 x 32.
train_dataloader = dict(
    batch_size=32, dataset=dict(pipeline=_base_.uninet_train_pipelines['large'][img_size]))
val_dataloader = dict(dataset=dict(pipeline=_base_.uninet_finetune_test_pipelines[img_size]))
test_dataloader = val_dataloader
