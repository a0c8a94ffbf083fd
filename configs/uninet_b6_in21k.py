# UniNet-B6 pre-trained on ImageNet-21K for 90 epochs at 224x224 (paper, Table 5): B5's recipe
# (uninet_b5_in21k.py) with the B6 architecture; uninet_b6_in21k_ft448_in1k.py then fine-tunes it
# on ImageNet-1k at 448.
# Paper: 87.4 top-1 on ImageNet-1k after fine-tuning.
_base_ = ['./uninet_b5_in21k.py']

model = dict(backbone=dict(arch='b6', drop_path_rate=0.4))
