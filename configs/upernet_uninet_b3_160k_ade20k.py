# UperNet with a UniNet-B3 backbone on ADE20K, 160k iterations, 512x512 crops.
# Paper: 48.5 mIoU, 51M params, 940G FLOPs (at 2048x512). Same recipe as the B1 config.
_base_ = ['./upernet_uninet_b1_160k_ade20k.py']

# Path to an ImageNet-1k UniNet-B3 checkpoint (tools/model_converters/uninet_official_to_mm.py).
# None: the backbone trains from scratch (tools/train.py logs a warning saying so).
pretrained = None

model = dict(
    backbone=dict(
        arch='b3',
        # Paper silent; 0.2 for B3.
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    decode_head=dict(in_channels=[56, 96, 160, 288]),
    auxiliary_head=dict(in_channels=160))
