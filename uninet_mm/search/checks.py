"""The search's few value checks, shared by the config checker, the reward and the searchers:
numbers that are not bools (``True`` is an ``int`` in Python, never a setting's intent)."""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np


def is_int(value: Any, minimum: Optional[int] = None) -> bool:
    """An int (Python or numpy), not a bool, and ``>= minimum`` when given."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        return False
    return minimum is None or value >= minimum


def is_number(value: Any, minimum: Optional[float] = None, finite: bool = True) -> bool:
    """An int or float (Python or numpy), not a bool, finite unless ``finite=False``, and
    ``>= minimum`` when given."""
    if (isinstance(value, (bool, np.bool_))
            or not isinstance(value, (int, float, np.integer, np.floating))):
        return False
    if finite and not math.isfinite(value):
        return False
    return minimum is None or value >= minimum


def is_fraction(value: Any) -> bool:
    """A number in [0, 1]."""
    return is_number(value, 0) and value <= 1
