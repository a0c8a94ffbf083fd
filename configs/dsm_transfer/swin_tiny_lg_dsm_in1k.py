# Paper Table 11: Swin-T with LG-DSM at all four downsampling points (the patch embedding and
# the three patch mergings), trained with mmpretrain's Swin-T ImageNet-1k recipe (inherited).
# Paper: 33.4M params, 6.4G FLOPs at 224 (Swin-T: 29.0M, 4.5G, 81.2 top-1).
_base_ = ['mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py']
custom_imports = dict(imports=['uninet_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        type='SwinTransformerDSM',
        dsms=('LG', 'LG', 'LG', 'LG'),
        # Paper silent. The LG-DSM on the patch embedding maps the image (3 channels) to
        # 56x56 queries; with every pixel as a key its attention alone would cost
        # 2 * 3136 * 50176 * 96 = 30G. Its keys come from the image average-pooled by 4
        # (the query grid) instead; README "DSM transfer" has the numbers.
        dsm_kv_strides=(4, 1, 1, 1)))
