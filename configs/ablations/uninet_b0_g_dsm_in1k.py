# Paper Table 10: UniNet-B0 with G-DSM before every stage (stages 1-5), B0's ImageNet recipe
# otherwise (160 px, DeiT recipe; see ../uninet_b0_in1k.py). Paper: 76.8 top-1, 12.7M params,
# 0.77G FLOPs.
#
# G-DSM: LG-DSM whose queries come from a strided 1D convolution over the flattened tokens
# (uninet_mm/models/layers/downsample.py). Same two choices as uninet_b0_lg_dsm_in1k.py: heads
# of 16, keys and values from the input average-pooled to stride 8 of the image. Measured
# 11.65M, 0.688G (-8% / -11% against the paper), see docs/dsm_ablations.md.
_base_ = ['../uninet_b0_in1k.py']

model = dict(
    backbone=dict(
        type='UniNetDSMAblation', dsm='G', dsm_head_dim=16, dsm_kv_strides=(4, 2, 1, 1, 1)))
