# UniNet-B3 on ImageNet-1k, DeiT recipe (see _base_/uninet_in1k.py), 288x288 input,
# medium augmentation.
# Paper: 83.5 top-1.
_base_ = ['./_base_/uninet_in1k.py']

# Paper silent on stochastic depth; the rate grows with model size
# (B0-B2 0.1, B3-B4 0.2, B5 0.3, B6 0.4).
model = dict(backbone=dict(arch='b3', drop_path_rate=0.2))

aug_level = 'medium'
# Train with 288x288 random-resized crops; test: resize the short side to 329 and centre-crop 288
# (see _base_/uninet_in1k.py).
img_size = 288
train_dataloader = dict(
    sampler=_base_.uninet_aug_samplers[aug_level],
    dataset=dict(pipeline=_base_.uninet_train_pipelines[aug_level][img_size]))
val_dataloader = dict(dataset=dict(pipeline=_base_.uninet_test_pipelines[img_size]))
test_dataloader = val_dataloader
