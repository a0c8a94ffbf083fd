# Paper Table 11: Swin-T with LG-DSM at all four downsampling points (the patch embedding and
# the three patch mergings), trained with mmpretrain's Swin-T ImageNet-1k recipe (inherited).
# Paper: 33.4M params, 6.4G FLOPs at 224 (Swin-T: 29.0M, 4.5G, 81.2 top-1).
#
# Paper silent: the LG-DSM on the patch embedding maps the image (3 channels, 224x224) to
# 56x56 queries; with every pixel as a key its attention alone would cost
# 2 * 3136 * 50176 * 96 = 30.2G. Its keys and values come from the image average-pooled by 8
# (28x28 tokens): 6.43G in all (+0.4%). Pooled by 4: 7.84G; patch embedding kept: 5.94G.
# The other three LG-DSMs attend over every input token, as UniNet's. Parameters: 29.08M, 13%
# below the paper's 33.4M whatever the keys; docs/dsm_ablations.md has the arithmetic.
_base_ = ['mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py']
custom_imports = dict(imports=['uninet_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        type='SwinTransformerDSM',
        dsms=('LG', 'LG', 'LG', 'LG'),
        dsm_kv_strides=(8, 1, 1, 1)))

# Logs go to local json files (vis_data/scalars.json) and to TensorBoard (tensorboard --logdir).
visualizer = dict(vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
