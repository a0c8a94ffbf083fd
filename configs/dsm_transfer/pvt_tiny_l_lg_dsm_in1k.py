# Paper Table 11: PVT-Tiny with L-DSM at the first two patch embeddings and LG-DSM at the last
# two (keys and values from every input token, as UniNet's). Paper: 14.3M params, 2.0G FLOPs
# at 224. Measured: 13.58M (-5.0%), 2.16G (+7.7%); docs/dsm_ablations.md has the arithmetic.
_base_ = ['../_base_/pvt_tiny_in1k.py']

model = dict(backbone=dict(dsms=('L', 'L', 'LG', 'LG')))
