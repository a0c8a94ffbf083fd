# UniNet-B6 pre-trained on ImageNet-21K (uninet_b6_in21k.py), fine-tuned on ImageNet-1k for 30
# epochs at 448x448 (paper, Table 5: 87.4 top-1): the recipe of uninet_b5_in21k_ft384_in1k.py
# (pretrained for the 21K checkpoint, lr, schedule) with the B6 architecture at 448 px.
_base_ = ['./uninet_b5_in21k_ft384_in1k.py']

model = dict(backbone=dict(arch='b6', drop_path_rate=0.4))
img_size = 448
# 16 images per GPU as in uninet_b6_in1k_ft448.py (fits one 80 GB GPU); auto_scale_lr
# (base 1024) scales the lr to the real total batch, e.g. 1.25e-6 for 8 x 16.
train_dataloader = dict(
    batch_size=16, dataset=dict(pipeline=_base_.uninet_train_pipelines['large'][img_size]))
val_dataloader = dict(dataset=dict(pipeline=_base_.uninet_finetune_test_pipelines[img_size]))
test_dataloader = val_dataloader
