# UniNet-B6 on ImageNet-1k, DeiT recipe (see _base_/uninet_in1k.py), 224x224 input,
# large augmentation: B5's settings (uninet_b5_in1k.py) with the B6 architecture.
# Paper: 85.6 (after fine-tuning at 448) top-1.
# As in the paper, B6 is trained at 224 and then fine-tuned at 448 (uninet_b6_in1k_ft448.py).
_base_ = ['./uninet_b5_in1k.py']

# Stochastic depth grows with model size (B0-B2 0.1, B3-B4 0.2, B5 0.3, B6 0.4).
model = dict(backbone=dict(arch='b6', drop_path_rate=0.4))
