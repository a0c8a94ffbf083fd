# AdamW settings shared by every UniNet recipe.
#
# This file only defines variables (it sets no runner key itself), so it can be listed next to an
# installed mmdet/mmseg/mmpretrain config in ``_base_`` without a duplicate-key clash; configs
# pick the pieces they need as ``_base_.uninet_...``.
#
# No weight decay on the layer-scale vectors (``layer_scale1``/``layer_scale2`` of the SA blocks),
# on the conditional position-encoding convs (``pos_embed``), nor on any norm layer (BN, SyncBN,
# LN; ``norm_decay_mult=0``), as DeiT/Swin exempt their layer scales, position embeddings and
# norms.
uninet_paramwise_cfg = dict(
    norm_decay_mult=0.0,
    custom_keys={
        'layer_scale': dict(decay_mult=0.0),
        'pos_embed': dict(decay_mult=0.0),
    })

# Detection (paper, following Swin): AdamW, lr 1e-4, weight decay 0.05, total batch 16.
# ``_delete_`` drops the SGD settings of the inherited mmdet config.
uninet_det_optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=uninet_paramwise_cfg)
