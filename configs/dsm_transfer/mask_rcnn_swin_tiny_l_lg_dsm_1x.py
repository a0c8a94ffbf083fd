# Mask R-CNN + FPN, 1x, with the Table 11 Swin-T (L-DSM at the patch embedding and the first
# patch merging, LG-DSM at the last two): mmdet's Swin-T Mask R-CNN config with only the
# backbone type and its DSM settings changed. Its init_cfg (the official Swin-T ImageNet
# checkpoint, converted by mmdet's swin_converter) loads into every layer the DSMs do not
# replace; the DSMs start from scratch (the log lists the keys of both).
_base_ = ['mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py']
custom_imports = dict(imports=['uninet_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(type='MMDetSwinTransformerDSM', dsms=('L', 'L', 'LG', 'LG')))

# Logs go to local json files (vis_data/scalars.json) and to TensorBoard (tensorboard --logdir).
visualizer = dict(vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
