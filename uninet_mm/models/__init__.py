from .arch_settings import (ARCH_SETTINGS, PAPER_INPUT_SIZES, ArchError, ArchSpec, StageSpec,
                            parse_arch)
from .backbones import UniNet
from . import classifiers  # noqa: F401  (registers DistillImageClassifier)

__all__ = ['ARCH_SETTINGS', 'PAPER_INPUT_SIZES', 'ArchError', 'ArchSpec', 'StageSpec',
           'parse_arch', 'UniNet']
