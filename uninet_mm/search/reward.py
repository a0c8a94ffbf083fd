"""The multi-objective search reward of MnasNet (arXiv 1807.11626), used by UniNet.

Soft constraint (UniNet's reward, MnasNet's default)::

    r(m) = a(m) * (t / f(m)) ** alpha           t = 550e6 FLOPs, alpha = 0.07

Hard constraint (MnasNet's other variant: exponent 0 within the budget, 1 above it)::

    r(m) = a(m)                    if f(m) <= t
    r(m) = a(m) * (t / f(m))       otherwise

(MnasNet writes both as ``ACC * (LAT / T) ** w`` with w = -0.07 for the soft form, and w = 0
below / -1 above T for the hard one: the same functions.) t = 550M and alpha = 0.07 are
UniNet's values (paper section 3.4); the hard variant's exponents are MnasNet's.

The cost f(m) is FLOPs by default (``cost='flops'``, t in multiply-adds) or the latency a
:class:`~uninet_mm.search.latency.LatencyTable` predicts (``cost='latency'``, t in
milliseconds): the same formula, only the unit of t and f changes.
"""
from dataclasses import dataclass

from .checks import is_number

#: UniNet's FLOPs target t (multiply-adds, counted at the proxy input size).
DEFAULT_TARGET_FLOPS = 550e6
#: UniNet's (and MnasNet's soft) exponent alpha.
DEFAULT_ALPHA = 0.07
#: What f(m) is, and its unit.
COSTS = {'flops': 'FLOPs', 'latency': 'ms'}


@dataclass(frozen=True)
class MnasReward:
    """A validated reward setting; ``MnasReward(...)(accuracy, cost)`` is the reward, ``cost``
    being FLOPs (``cost='flops'``) or milliseconds (``cost='latency'``).

    Raises ValueError at construction for t <= 0, a negative / non-finite alpha or an unknown
    cost, so a bad search config stops before any architecture is trained.
    """
    target: float = DEFAULT_TARGET_FLOPS
    alpha: float = DEFAULT_ALPHA
    hard: bool = False
    cost: str = 'flops'

    def __post_init__(self):
        if self.cost not in COSTS:
            raise ValueError(f'reward cost = {self.cost!r} is unknown; use one of {list(COSTS)}')
        if not is_number(self.target) or self.target <= 0:
            hint = ('FLOPs (UniNet uses 550e6)' if self.cost == 'flops' else
                    'milliseconds (the latency you aim for, e.g. a peer backbone\'s, measured '
                    'with the same settings as the latency table)')
            raise ValueError(f'reward target t = {self.target!r} must be a positive number of '
                             f'{hint}')
        if not is_number(self.alpha) or self.alpha < 0:
            raise ValueError(f'reward alpha = {self.alpha!r} must be a number >= 0 (UniNet uses '
                             f'0.07; 0 ignores FLOPs)')
        if not isinstance(self.hard, bool):
            raise ValueError(f'reward hard = {self.hard!r} must be True or False')

    @property
    def unit(self) -> str:
        """Unit of t and of the cost: 'FLOPs' or 'ms'."""
        return COSTS[self.cost]

    def __call__(self, accuracy: float, cost: float) -> float:
        """Reward of one architecture; ``accuracy`` in any fixed unit (fraction or percent),
        ``cost`` in the unit of t (FLOPs or ms)."""
        if not is_number(accuracy) or accuracy < 0:
            raise ValueError(f'accuracy = {accuracy!r} must be a finite number >= 0')
        if not is_number(cost) or cost <= 0:
            what = ('multiply-adds at the proxy input size' if self.cost == 'flops' else
                    'milliseconds predicted by the latency table')
            raise ValueError(f'{self.cost} = {cost!r} must be a positive finite number ({what})')
        exponent = (0.0 if cost <= self.target else 1.0) if self.hard else self.alpha
        return float(accuracy) * (self.target / float(cost)) ** exponent


def mnas_reward(accuracy: float, flops: float, target: float = DEFAULT_TARGET_FLOPS,
                alpha: float = DEFAULT_ALPHA, hard: bool = False, cost: str = 'flops') -> float:
    """``a * (t / f) ** alpha`` (soft) or MnasNet's hard-constraint variant; see the module
    docstring (``flops`` is the cost: FLOPs, or ms with ``cost='latency'``). Raises
    ValueError for t <= 0, alpha < 0, a cost <= 0 or a bad accuracy."""
    return MnasReward(target, alpha, hard, cost)(accuracy, flops)
