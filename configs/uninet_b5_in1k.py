# UniNet-B5 on ImageNet-1k, DeiT recipe (see _base_/uninet_in1k.py), 224x224 input,
# large augmentation.
# Paper: 84.9 (after fine-tuning at 384) top-1.
# As in the paper, B5 is trained at 224 and then fine-tuned at 384 (uninet_b5_in1k_ft384.py).
_base_ = ['./_base_/uninet_in1k.py']

# Paper silent on stochastic depth; the rate grows with model size
# (B0-B2 0.1, B3-B4 0.2, B5 0.3, B6 0.4).
model = dict(backbone=dict(arch='b5', drop_path_rate=0.3))

aug_level = 'large'
train_pipeline = _base_.uninet_aug_pipelines[aug_level]
train_dataloader = dict(sampler=_base_.uninet_aug_samplers[aug_level],
                        dataset=dict(pipeline=train_pipeline))

# 128 images per GPU (x 8 = 1024) at 224 px need mixed precision on an 80 GB GPU, as the authors
# trained (their main.py always runs torch.cuda.amp): train with tools/train.py --amp.
