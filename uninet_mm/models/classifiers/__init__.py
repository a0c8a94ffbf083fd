"""Classifiers. ``DistillImageClassifier`` subclasses mmpretrain's ``ImageClassifier``, so it
is registered as a builder that imports mmpretrain on first use (``import uninet_mm`` stays
light), as the DSM transfer backbones are."""
from mmengine.registry import MODELS

from .teacher_checkpoint import (TeacherCheckpointError, check_distillation_config,
                                 check_teacher_checkpoint)


def build_distill_image_classifier(*args, **kwargs):
    """Builds :class:`.distill.DistillImageClassifier` (knowledge distillation, Table 6)."""
    from .distill import DistillImageClassifier
    return DistillImageClassifier(*args, **kwargs)


MODELS.register_module(name='DistillImageClassifier', module=build_distill_image_classifier)

__all__ = ['build_distill_image_classifier', 'TeacherCheckpointError',
           'check_distillation_config', 'check_teacher_checkpoint']
