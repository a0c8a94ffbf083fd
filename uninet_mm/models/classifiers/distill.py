"""Knowledge distillation for image classification (paper Table 6: UniNet-B0 with distillation).

The paper reports UniNet-B0 at 79.1 % top-1 and 80.8 % "with distillation", trained with the DeiT
recipe; how it distils is in a supplementary we do not have. Our reading is DeiT's (Touvron et
al., ICML 2021, section 5):

* a frozen teacher sees the same (Mixup/CutMix-mixed) images as the student;
* the student has a second linear head on its pooled features, the distillation head (UniNet
  has no class token, so this stands in for DeiT's distillation token);
* loss = ``loss_weights['cls']`` x the classification head's own loss on the labels (soft
  Mixup/CutMix targets, label smoothing: whatever the head is configured with)
  + ``loss_weights['distill']`` x a distillation term on the distillation head:

  - ``distill=dict(type='hard')`` (DeiT's hard-label distillation, its best variant):
    cross-entropy with the teacher's argmax, ``y_t = argmax(Z_t)``;
  - ``distill=dict(type='soft', tau=T)`` (soft KD, Hinton et al.):
    ``T^2 * KL(softmax(Z_t / T) || softmax(Z_s / T))``, averaged over the batch (DeiT's code
    divides the summed KL by batch x classes instead, so its weight w is w / num_classes here);

* at test time the student alone predicts: the mean of its two heads' logits, as DeiT does
  with its class and distillation tokens (with ``distill_head=None`` its one head, trained on
  both terms).

The teacher is a submodule with ``requires_grad=False``, kept in eval mode by :meth:`train`,
and left out of ``state_dict()``: checkpoints hold the student only, and loading a checkpoint
keeps the teacher's current weights. Its weights come from ``teacher_checkpoint`` in
:meth:`init_weights`, which mmengine's Runner calls before training (not before testing), so
a student checkpoint is tested without any teacher file.
"""
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.runner.checkpoint import load_checkpoint
from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.models.losses import CrossEntropyLoss
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from torch import nn

from .teacher_checkpoint import check_teacher_checkpoint

DISTILL_TYPES = ('hard', 'soft')


class DistillImageClassifier(ImageClassifier):
    """An mmpretrain ``ImageClassifier`` (the student) trained with a frozen teacher.

    Args:
        backbone, neck, head, pretrained, train_cfg, data_preprocessor, init_cfg: the
            student, as for ``ImageClassifier``. Its state-dict keys are those of a plain
            ``ImageClassifier`` plus ``distill_head.*``.
        teacher: config of any mmpretrain classifier whose ``mode='tensor'`` forward gives
            logits ``(N, num_classes)``; it gets the student's preprocessed inputs as they are
            (same normalisation and size).
        teacher_checkpoint: path or URL of the teacher's weights, loaded strictly in
            :meth:`init_weights`.
        distill_head: config of the student's distillation head (e.g. a second
            ``LinearClsHead``), or None to distil into ``head`` itself.
        distill: ``dict(type='hard')`` or ``dict(type='soft', tau=T)``.
        loss_weights: ``dict(cls=w1, distill=w2)``, the weights of the two loss terms.
    """

    def __init__(self,
                 backbone: dict,
                 teacher: Union[dict, nn.Module],
                 teacher_checkpoint: Optional[str],
                 neck: Optional[dict] = None,
                 head: Optional[dict] = None,
                 distill_head: Optional[dict] = None,
                 distill: Optional[dict] = None,
                 loss_weights: Optional[Dict[str, float]] = None,
                 pretrained: Optional[str] = None,
                 train_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(backbone=backbone, neck=neck, head=head, pretrained=pretrained,
                         train_cfg=train_cfg, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        distill = dict(distill or dict(type='hard'))
        kind = distill.pop('type', None)
        if kind not in DISTILL_TYPES:
            raise ValueError(f'model.distill.type must be one of {DISTILL_TYPES}, got {kind!r}')
        unknown = set(distill) - ({'tau'} if kind == 'soft' else set())
        if unknown:
            raise ValueError(f'model.distill type {kind!r} takes no {sorted(unknown)}')
        self.distill_type: str = kind
        self.tau = float(distill.get('tau', 1.0))
        if self.tau <= 0:
            raise ValueError(f'model.distill.tau must be positive, got {self.tau}')
        weights = dict(loss_weights or dict(cls=0.5, distill=0.5))
        if set(weights) != {'cls', 'distill'}:
            raise ValueError(f"model.loss_weights needs exactly the keys 'cls' and 'distill', "
                             f'got {sorted(weights)}')
        self.loss_weights = {k: float(v) for k, v in weights.items()}

        self.distill_head = MODELS.build(distill_head) if isinstance(distill_head, dict) \
            else distill_head
        self.hard_loss = CrossEntropyLoss()
        self.teacher_checkpoint = teacher_checkpoint
        self.teacher = MODELS.build(teacher) if isinstance(teacher, dict) else teacher
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        self._teacher_loaded = False
        self.register_state_dict_post_hook(_drop_teacher_state)
        self.register_load_state_dict_pre_hook(_keep_teacher_state)

    # ------------------------------------------------------------------------------ teacher
    def train(self, mode: bool = True) -> 'DistillImageClassifier':
        """Set the student's mode; the teacher always stays in eval mode."""
        super().train(mode)
        self.teacher.eval()
        return self

    def init_weights(self) -> None:
        """Initialise the student, then load the teacher from ``teacher_checkpoint``.

        The checkpoint is checked first, so a missing file fails before any weight is set
        (mmengine's Runner calls this before the first training iteration).
        """
        path = check_teacher_checkpoint(self.teacher_checkpoint)
        super().init_weights()
        load_checkpoint(self.teacher, path, map_location='cpu', strict=True)
        self.teacher.eval()
        self._teacher_loaded = True

    @torch.no_grad()
    def teacher_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """Teacher logits ``(N, num_classes)`` for preprocessed inputs ``(N, 3, H, W)``."""
        if not self._teacher_loaded:
            raise RuntimeError(
                'the teacher has no trained weights yet: call init_weights() (mmengine\'s '
                'Runner does before training) with model.teacher_checkpoint set')
        return self.teacher(inputs, mode='tensor')

    # ------------------------------------------------------------------------------ student
    def student_logits(self, feats: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Test-time logits ``(N, num_classes)``: the mean of the two heads (or the one)."""
        logits = self.head(feats)
        if self.distill_head is not None:
            logits = (logits + self.distill_head(feats)) / 2
        return logits

    def forward(self, inputs: torch.Tensor, data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor') -> Any:
        """As ``ImageClassifier.forward``; ``mode='tensor'`` gives :meth:`student_logits`."""
        if mode == 'tensor':
            return self.student_logits(self.extract_feat(inputs))
        return super().forward(inputs, data_samples, mode)

    def distill_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """The unweighted distillation term for logits ``(N, C)`` of student and teacher."""
        if self.distill_type == 'hard':
            return self.hard_loss(student, teacher.argmax(dim=1))
        tau = self.tau
        return F.kl_div(F.log_softmax(student / tau, dim=1), F.log_softmax(teacher / tau, dim=1),
                        reduction='batchmean', log_target=True) * tau * tau

    def loss(self, inputs: torch.Tensor, data_samples: List[DataSample]) -> Dict[str, torch.Tensor]:
        """``loss_cls`` (the head's loss on the labels, ``gt_score`` after Mixup/CutMix) and
        ``loss_distill``, each already multiplied by its weight; inputs ``(N, 3, H, W)``."""
        teacher = self.teacher_logits(inputs)
        feats = self.extract_feat(inputs)
        losses = self.head.loss(feats, data_samples)
        losses['loss_cls'] = self.loss_weights['cls'] * losses.pop('loss')
        head = self.distill_head if self.distill_head is not None else self.head
        losses['loss_distill'] = self.loss_weights['distill'] * self.distill_loss(
            head(feats), teacher)
        return losses

    def predict(self, inputs: torch.Tensor, data_samples: Optional[List[DataSample]] = None,
                **kwargs) -> List[DataSample]:
        """Scores (softmax of :meth:`student_logits`) and labels in data samples."""
        scores = F.softmax(self.student_logits(self.extract_feat(inputs)), dim=1)
        labels = scores.argmax(dim=1, keepdim=True)
        if data_samples is None:
            data_samples = [DataSample() for _ in range(scores.size(0))]
        for sample, score, label in zip(data_samples, scores, labels):
            sample.set_pred_score(score).set_pred_label(label)
        return data_samples


def _drop_teacher_state(module: DistillImageClassifier, state_dict: dict, prefix: str,
                        local_metadata: dict) -> None:
    """state_dict post-hook: checkpoints hold the student only."""
    for key in [k for k in state_dict if k.startswith(prefix + 'teacher.')]:
        del state_dict[key]


def _keep_teacher_state(module: DistillImageClassifier, state_dict: dict, prefix: str,
                        *args: Any) -> None:
    """load_state_dict pre-hook: a checkpoint without teacher weights (ours) keeps the
    teacher's current ones instead of reporting them missing."""
    for key, value in module.teacher.state_dict(prefix=prefix + 'teacher.').items():
        state_dict.setdefault(key, value)
