from .uninet import UniNet, UniNetStage

__all__ = ['UniNet', 'UniNetStage']
