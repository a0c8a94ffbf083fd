# Paper Table 11: PVT-Tiny with L-DSM at the first two patch embeddings and LG-DSM at the last
# two. Paper: 14.3M params, 2.0G FLOPs at 224.
_base_ = ['../_base_/pvt_tiny_in1k.py']

model = dict(backbone=dict(dsms=('L', 'L', 'LG', 'LG')))
