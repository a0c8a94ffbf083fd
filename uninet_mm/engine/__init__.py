"""Training-loop pieces (hooks) for mmengine's Runner."""
from .hooks import NonFiniteLossHook, UniNetAccelerationHook

__all__ = ['NonFiniteLossHook', 'UniNetAccelerationHook']
