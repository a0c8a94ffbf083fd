"""Training-loop pieces (hooks) for mmengine's Runner."""
from .hooks import UniNetAccelerationHook

__all__ = ['UniNetAccelerationHook']
