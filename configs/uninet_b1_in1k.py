# UniNet-B1 on ImageNet-1k, DeiT recipe (see _base_/uninet_in1k.py), 224x224 input,
# small augmentation.
# Paper: 80.8 top-1.
_base_ = ['./_base_/uninet_in1k.py']

# Paper silent on stochastic depth; the rate grows with model size
# (B0-B2 0.1, B3-B4 0.2, B5 0.3, B6 0.4).
model = dict(backbone=dict(arch='b1', drop_path_rate=0.1))

aug_level = 'small'
train_pipeline = _base_.uninet_aug_pipelines[aug_level]
train_dataloader = dict(sampler=_base_.uninet_aug_samplers[aug_level],
                        dataset=dict(pipeline=train_pipeline))
