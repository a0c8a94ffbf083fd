"""Built-in synthetic datasets (COCO instance segmentation and ADE20K-style semantic)."""
from .synthetic import (SEMANTIC_CLASSES, SEMANTIC_PALETTE, SHAPE_CLASSES, SHAPE_PALETTE,
                        make_ade20k_semantic, make_coco_instances, mask_to_bbox, mask_to_rle,
                        read_manifest, remove_synthetic, render_scene, rle_to_mask,
                        scene_rng)
from .synthetic_cls import make_shapes_classification

__all__ = [
    'SHAPE_CLASSES', 'SHAPE_PALETTE', 'SEMANTIC_CLASSES', 'SEMANTIC_PALETTE',
    'make_coco_instances', 'make_shapes_classification', 'make_ade20k_semantic', 'read_manifest', 'remove_synthetic', 'render_scene',
    'scene_rng', 'mask_to_rle', 'rle_to_mask', 'mask_to_bbox'
]
