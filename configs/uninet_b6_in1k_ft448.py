# UniNet-B6 fine-tuned on ImageNet-1k at 448x448, starting from the 224-px run of
# uninet_b6_in1k.py (paper: trained at 224, then fine-tuned at 448). The recipe of
# uninet_b5_in1k_ft384.py (lr, schedule, augmentation; finetune_from for the 224-px checkpoint)
# with the B6 architecture at 448.
_base_ = ['./uninet_b5_in1k_ft384.py']

model = dict(backbone=dict(arch='b6', drop_path_rate=0.4))
finetune_from = None
load_from = finetune_from

img_size = 448
# 16 images per GPU (x 8 GPUs = 128), to fit one 80 GB GPU: training UniNet-B6 at 448 px keeps
# 3170 MiB of activations per image for backward in fp32 (autograd's saved tensors on the plain
# GPU code path, tools/analysis_tools/activation_memory.py), so 16 images hold 50 GB and leave
# room for backward's temporaries; with --amp twice as many fit. auto_scale_lr (base 1024)
# scales the lr to the real total batch, e.g. 1.25e-06 for 8 x 16.
train_dataloader = dict(
    batch_size=16, dataset=dict(pipeline=_base_.uninet_train_pipelines['large'][img_size]))
val_dataloader = dict(dataset=dict(pipeline=_base_.uninet_finetune_test_pipelines[img_size]))
test_dataloader = val_dataloader
