"""The teacher checkpoint a distillation config names, checked before anything is built (no
mmpretrain import, so ``tools/train.py`` checks it before the Runner exists)."""
from pathlib import Path
from typing import Any, Optional


class TeacherCheckpointError(FileNotFoundError):
    """``model.teacher_checkpoint`` is unset or names no file."""


def check_teacher_checkpoint(path: Optional[str]) -> str:
    """``path`` if it is a URL or an existing file, else :class:`TeacherCheckpointError` that
    names the config key to set."""
    if path and ('://' in str(path) or Path(path).is_file()):
        return str(path)
    found = 'is not set' if not path else f'names no file: {str(path)!r}'
    raise TeacherCheckpointError(
        f'model.teacher_checkpoint {found}. Distillation needs the teacher\'s trained weights: '
        f'set model.teacher_checkpoint in the config, or pass --cfg-options '
        f'model.teacher_checkpoint=PATH (see docs/distillation.md).')


def check_distillation_config(cfg: Any) -> None:
    """Check ``cfg.model.teacher_checkpoint`` when the config trains with a teacher (a
    ``model.teacher`` entry); other configs pass."""
    model = cfg.get('model') or {}
    if model.get('teacher') is not None:
        check_teacher_checkpoint(model.get('teacher_checkpoint'))
