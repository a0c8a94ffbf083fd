# Paper Table 11: Swin-T with L-DSM at the first two downsampling points (the patch embedding
# and the first patch merging) and LG-DSM at the last two, trained with mmpretrain's Swin-T
# ImageNet-1k recipe (inherited). Paper: 30.0M params, 4.7G FLOPs at 224. Measured: 29.00M
# (-3.3%), 4.83G (+2.8%).
_base_ = ['mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py']
custom_imports = dict(imports=['uninet_mm'], allow_failed_imports=False)

model = dict(backbone=dict(type='SwinTransformerDSM', dsms=('L', 'L', 'LG', 'LG')))

# Logs go to local json files (vis_data/scalars.json) and to TensorBoard (tensorboard --logdir).
visualizer = dict(vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
