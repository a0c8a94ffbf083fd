"""Resuming mmengine training runs under torch >= 2.6 without ``weights_only=False``.

torch >= 2.6 loads checkpoints with ``weights_only=True`` by default: the unpickler only builds
tensors, containers and the classes/functions on an allow-list. mmengine 0.10.7 calls
``torch.load`` without the flag, and the checkpoints its ``Runner`` saves hold more than
tensors: the message hub's ``HistoryBuffer`` objects (with numpy arrays inside) and numpy
scalars/dtypes in the logged values and the ``meta`` block. A ``HistoryBuffer`` also pickles
its statistics methods (``min``, ``max``, ``current``, ``mean``) as ``getattr(HistoryBuffer,
'min')``, so the checkpoint calls ``builtins.getattr``. Loading such a checkpoint for
``resume`` therefore fails with "Weights only load failed ... Unsupported global".

:func:`register_resume_safe_globals` adds exactly those objects to torch's allow-list with
``torch.serialization.add_safe_globals``. The set was found by saving real checkpoints with
mmengine's ``Runner`` (plain model, mmdet, mmseg and mmpretrain runs) and listing what
``torch.serialization.get_unsafe_globals_in_checkpoint`` reports; ``tests/test_resume.py``
checks that a fresh checkpoint needs nothing outside :data:`RESUME_SAFE_GLOBAL_NAMES`.

Every entry only reconstructs data (an array, a scalar, a dtype, a log buffer): none of them
can run arbitrary code, which is the point of keeping ``weights_only=True``. In particular the
real ``builtins.getattr`` is *not* allowed (it would hand any attribute of any allowed object to
the checkpoint, and ``HistoryBuffer`` later calls what it finds there); the name is mapped to
:func:`_history_buffer_getattr`, which only returns HistoryBuffer's own statistics methods.
"""
import pickle
from collections import OrderedDict
from typing import Callable, List, Tuple, Union

import numpy as np
import torch

__all__ = ['register_resume_safe_globals', 'resume_safe_globals', 'RESUME_SAFE_GLOBAL_NAMES']

_REGISTERED = False

# numpy dtypes a checkpoint may carry: scalar values in the message hub / logs, and the dtypes of
# the numpy arrays inside HistoryBuffer. np.dtype(...) pickles as ``numpy.dtype(code)`` and the
# unpickler then checks the type of the rebuilt object, i.e. the per-dtype class
# (numpy.dtypes.Float64DType, ...), so every class has to be allowed.
_NUMPY_DTYPE_CODES = ('?', 'b', 'B', 'h', 'H', 'i', 'I', 'l', 'L', 'q', 'Q', 'e', 'f', 'd', 'g',
                      'F', 'D', 'G', 'U', 'S')


def _numpy_multiarray_function(name: str) -> Callable:
    """``numpy._core.multiarray.<name>`` (numpy 2) or ``numpy.core.multiarray.<name>`` (1.x)."""
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    return getattr(multiarray, name)


def _history_buffer_getattr(obj, name):
    """Stand-in for ``builtins.getattr`` while unpickling with ``weights_only=True``.

    Only ``getattr(HistoryBuffer, <statistics method>)`` is answered; anything else raises
    ``pickle.UnpicklingError``.
    """
    from mmengine.logging import HistoryBuffer

    from .mmengine_private import history_buffer_statistics

    allowed = set(_HISTORY_BUFFER_METHODS) | set(history_buffer_statistics())
    if obj is HistoryBuffer and isinstance(name, str) and name in allowed:
        value = getattr(HistoryBuffer, name, None)
        if callable(value) and getattr(value, '__qualname__', '') == f'HistoryBuffer.{name}':
            return value
    raise pickle.UnpicklingError(
        f'checkpoint asks for getattr({obj!r}, {name!r}); with weights_only=True only the '
        f'statistics methods of mmengine HistoryBuffer ({sorted(allowed)}) may be looked up')


_HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')


def resume_safe_globals() -> List[Union[Callable, Tuple[Callable, str]]]:
    """The allow-list entries, in the form ``torch.serialization.add_safe_globals`` takes.

    numpy's array/scalar rebuild functions are listed under both module paths, because a
    checkpoint written with numpy 1.x names them ``numpy.core.multiarray.*`` and one written
    with numpy 2 ``numpy._core.multiarray.*``.
    """
    from mmengine.logging import HistoryBuffer

    entries: List[Union[Callable, Tuple[Callable, str]]] = [
        HistoryBuffer,
        (_history_buffer_getattr, 'builtins.getattr'),
        OrderedDict,
        np.ndarray,
        np.dtype,
    ]
    for name in ('_reconstruct', 'scalar'):
        func = _numpy_multiarray_function(name)
        entries.append((func, f'numpy._core.multiarray.{name}'))
        entries.append((func, f'numpy.core.multiarray.{name}'))
    seen = set()
    for code in _NUMPY_DTYPE_CODES:
        dtype_cls = type(np.dtype(code))
        if dtype_cls not in seen:
            seen.add(dtype_cls)
            entries.append(dtype_cls)
    return entries


def _entry_name(entry: Union[Callable, Tuple[Callable, str]]) -> str:
    if isinstance(entry, tuple):
        return entry[1]
    return f'{entry.__module__}.{entry.__qualname__}'


def _names() -> frozenset:
    return frozenset(_entry_name(e) for e in resume_safe_globals())


#: Fully qualified names (as ``get_unsafe_globals_in_checkpoint`` reports them) that
#: :func:`register_resume_safe_globals` allows.
RESUME_SAFE_GLOBAL_NAMES = _names()


def register_resume_safe_globals() -> None:
    """Allow torch's ``weights_only`` unpickler to load mmengine resume checkpoints.

    Idempotent and cheap: the list is registered once per process; later calls return at once.
    Does nothing on torch versions without ``torch.serialization.add_safe_globals`` (< 2.4),
    which load with ``weights_only=False`` by default anyway.
    """
    global _REGISTERED
    if _REGISTERED:
        return
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    if add_safe_globals is not None:
        add_safe_globals(resume_safe_globals())
    _REGISTERED = True
