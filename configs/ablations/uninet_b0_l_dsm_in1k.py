# Paper Table 10: UniNet-B0 with L-DSM before every stage (stages 1-5), B0's ImageNet recipe
# otherwise (160 px, DeiT recipe; see ../uninet_b0_in1k.py). Paper: 78.5 top-1, 11.3M params,
# 0.54G FLOPs. Measured (.dev_scripts/report_model_table.py): 11.27M, 0.538G.
_base_ = ['../uninet_b0_in1k.py']

model = dict(backbone=dict(type='UniNetDSMAblation', dsm='L'))
