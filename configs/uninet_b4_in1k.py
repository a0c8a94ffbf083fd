# UniNet-B4 on ImageNet-1k, DeiT recipe (see _base_/uninet_in1k.py), 320x320 input,
# medium augmentation.
# Paper: 84.4 top-1.
_base_ = ['./_base_/uninet_in1k.py']

# Paper silent on stochastic depth; the rate grows with model size
# (B0-B2 0.1, B3-B4 0.2, B5 0.3, B6 0.4).
model = dict(backbone=dict(arch='b4', drop_path_rate=0.2))

aug_level = 'medium'
# Train with 320x320 random-resized crops. Test: paper silent; resize the short side to
# 365 and centre-crop 320 (the 0.875 crop ratio of the 224 recipe).
img_size = 320
train_pipeline = [
    dict(t, scale=img_size) if t['type'] == 'RandomResizedCrop' else t
    for t in _base_.uninet_aug_pipelines[aug_level]
]
test_pipeline = [
    dict(t, scale=int(img_size / 0.875)) if t['type'] == 'ResizeEdge' else
    dict(t, crop_size=img_size) if t['type'] == 'CenterCrop' else t
    for t in _base_.test_pipeline
]
train_dataloader = dict(sampler=_base_.uninet_aug_samplers[aug_level],
                        dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
