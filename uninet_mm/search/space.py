"""The unified search space of UniNet (paper section 3.4) as an object.

A network is a *base architecture* (a published UniNet layout) whose searched stages are
rewritten by five decisions each, emitted in this order per stage:

============== ================================= =============================================
decision       default choices                   effect on the stage
============== ================================= =============================================
``gop``        SA, LSA, Conv, DWConv, MLP        block type of every block in the stage
``dsm``        L, LG, G                          downsampling module in front of the stage
``expansion``  2, 3, 4, 5, 6                     expansion of every block (absolute, not relative)
``width``      0.5, 0.75, 1.0, 1.25, 1.5         channels = round(base channels * width)
``repeat_delta`` -2, -1, 0, 1, 2                 repeats = max(1, base repeats + delta)
============== ================================= =============================================

5 x 3 x 5 x 5 x 5 = 1,875 choices a stage; 1,875^5 ~ 2.3e16 token sequences over the five
searched stages (stages 1..5; stage 0 is the fixed small front stage of the published family).

Rules that are ours (the paper does not state them):

* **Base architecture**: UniNet-B0's layout (:data:`DEFAULT_BASE_ARCH`). The paper derives
  its initial network from EfficientNetV2 but does not print it; B0 is the network the search
  produced at the paper's 550M-FLOPs target (0.555 GFLOPs at 160 px), so +-50 % width and
  +-2 repeats around it span the region the search explored. For the same reason the
  default proxy input size is 160 px (B0's size; the FLOPs target is met there). Stem,
  head, stage 0, the strides and every stage that is not searched come from the base.
* **Channel rounding**: ``round_channels(base * width, divisor)``: the nearest multiple of
  ``divisor``, at least ``divisor``, bumped up one step if rounding lost more than 10 %
  (the MobileNet/EfficientNet rule). ``divisor`` is 32 (the attention head width) when the
  stage's GOP is SA/LSA or its DSM is LG/G, else 8.
* **Repeats** are clamped to at least 1, so on a base stage with r repeats deltas below
  1 - r give the same network. :attr:`SearchSpace.size` counts networks the way the paper
  does, as token sequences (1,875^5 ~ 2.3e16); :attr:`SearchSpace.num_distinct` counts the
  distinct arch dicts they decode to (~8.6e15 for the default space).
* A decision with a single allowed value (e.g. ``dsms=('LG',)``) is fixed, not emitted: the
  controller only sees decisions with at least two choices.
"""
import functools
import itertools
import math
import operator
import random
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Sequence, Tuple, Union

import numpy as np

from ..models.arch_settings import (ATTENTION_DSMS, ATTENTION_GOPS, DSMS, GOPS, HEAD_DIM,
                                    ArchError, ArchSpec, parse_arch)
from .checks import is_int, is_number

#: Base architecture of the default space (see the module docstring for why).
DEFAULT_BASE_ARCH = 'b0'
#: Decisions of one stage, in emission order.
DECISION_NAMES = ('gop', 'dsm', 'expansion', 'width', 'repeat_delta')
#: Channels of stages without attention are rounded to multiples of this.
CHANNEL_DIVISOR = 8

#: Named restrictions of the full space: the paper's Table 9 single-operator searches and its
#: Table 10 fixed-DSM searches. ``SearchSpace.preset(name, **overrides)`` builds one.
PRESETS: Dict[str, Dict[str, Any]] = {
    'full': {},
    'conv_only': dict(gops=('Conv', 'DWConv')),
    'transformer_only': dict(gops=('SA', 'LSA')),
    'mlp_only': dict(gops=('MLP',)),
    'l_dsm_only': dict(dsms=('L',)),
    'lg_dsm_only': dict(dsms=('LG',)),
    'g_dsm_only': dict(dsms=('G',)),
}

RandomSource = Union[random.Random, np.random.Generator, None]


class SearchSpaceError(ValueError):
    """An invalid search-space setting or token sequence; the message says what to change."""


@dataclass(frozen=True)
class Decision:
    """One token of the controller's sequence: which stage, which field, and the values a
    token index selects (``choices[token]``)."""
    stage: int
    name: str
    choices: tuple


def round_channels(channels: float, divisor: int) -> int:
    """Nearest multiple of ``divisor``, at least ``divisor``, and not more than 10 % below
    ``channels`` (then one ``divisor`` more)."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * channels:
        rounded += divisor
    return rounded


def _choice_tuple(field: str, values: Any, allowed_text: str) -> tuple:
    """``values`` as a tuple; a string, a non-sequence, an empty list or duplicates raise."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise SearchSpaceError(f'search space {field!r} must be a list of choices '
                               f'({allowed_text}), got {values!r}')
    values = tuple(v.item() if isinstance(v, np.generic) else v for v in values)
    if not values:
        raise SearchSpaceError(f'search space {field!r} is an empty choice list; give at least '
                               f'one value ({allowed_text})')
    duplicates = sorted({repr(v) for v in values if values.count(v) > 1})
    if duplicates:
        raise SearchSpaceError(f'search space {field!r} lists {", ".join(duplicates)} more than '
                               f'once; give each choice once ({allowed_text})')
    return values


class SearchSpace:
    """UniNet's unified search space over a base architecture.

    Args:
        base_arch: the network the decisions rewrite: a published name ('b0' ... 'b6') or an
            arch dict (see :mod:`uninet_mm.models.arch_settings`). Default 'b0'.
        gops: allowed global operators, a subset of SA, LSA, Conv, DWConv, MLP.
        dsms: allowed downsampling modules, a subset of L, LG, G.
        expansions: allowed block expansions (positive numbers).
        widths: allowed channel multipliers of the base channels (positive numbers).
        repeat_deltas: allowed changes of the base stage's repeats (ints; repeats >= 1).
        searched_stages: indices of the stages the decisions rewrite (1 .. len(stages) - 1;
            stage 0 has no DSM and stays fixed). Emitted in ascending order.
        input_size: (H, W) or int: the proxy-task input size every decoded network is built
            for (MLP stages need it) and at which its FLOPs are counted. Default 160: the
            paper does not state its proxy resolution, but its searched network, B0, has
            0.555 GFLOPs at 160 px, i.e. it meets the 550M target there (at 224 px it has
            1.12 G).

    Raises:
        SearchSpaceError: for any invalid setting, at construction, naming the field, the
            value and what is allowed.
    """

    def __init__(self,
                 base_arch: Union[str, Mapping, ArchSpec] = DEFAULT_BASE_ARCH,
                 gops: Sequence[str] = ('SA', 'LSA', 'Conv', 'DWConv', 'MLP'),
                 dsms: Sequence[str] = ('L', 'LG', 'G'),
                 expansions: Sequence[float] = (2, 3, 4, 5, 6),
                 widths: Sequence[float] = (0.5, 0.75, 1.0, 1.25, 1.5),
                 repeat_deltas: Sequence[int] = (-2, -1, 0, 1, 2),
                 searched_stages: Sequence[int] = (1, 2, 3, 4, 5),
                 input_size: Union[int, Sequence[int]] = (160, 160)):
        try:
            self.base_arch: ArchSpec = parse_arch(base_arch)
        except ArchError as error:
            raise SearchSpaceError(f'search space base_arch is invalid: {error}') from None
        num_stages = len(self.base_arch.stages)
        self.gops = self._named_choices('gops', gops, GOPS)
        self.dsms = self._named_choices('dsms', dsms, DSMS)
        self.expansions = self._positive_choices('expansions', expansions)
        self.widths = self._positive_choices('widths', widths)
        self.repeat_deltas = _choice_tuple('repeat_deltas', repeat_deltas, 'ints, e.g. -2..2')
        bad = [v for v in self.repeat_deltas if not is_int(v)]
        if bad:
            raise SearchSpaceError(f'search space repeat_deltas has non-int values {bad}; '
                                   f'give ints such as (-2, -1, 0, 1, 2)')
        stage_text = f'stage indices in 1..{num_stages - 1} of the base arch'
        stages = _choice_tuple('searched_stages', searched_stages, stage_text)
        bad = [s for s in stages if not is_int(s) or not 1 <= s < num_stages]
        if bad:
            raise SearchSpaceError(
                f'search space searched_stages has invalid values {bad}; allowed: {stage_text} '
                f'(stage 0 has no downsampling module and stays fixed)')
        self.searched_stages = tuple(sorted(int(s) for s in stages))
        self.input_size = self._check_input_size(input_size)

        self._fields = dict(gop=self.gops, dsm=self.dsms, expansion=self.expansions,
                            width=self.widths, repeat_delta=self.repeat_deltas)
        #: Emitted decisions in order (fields with a single allowed value are fixed instead).
        self.decisions: List[Decision] = [
            Decision(stage, name, self._fields[name])
            for stage in self.searched_stages for name in DECISION_NAMES
            if len(self._fields[name]) > 1]
        #: Number of choices of each emitted decision.
        self.num_choices: List[int] = [len(d.choices) for d in self.decisions]
        #: Number of networks as the paper counts them: distinct token sequences
        #: (1,875^5 ~ 2.3e16 for the full space).
        self.size: int = math.prod(self.num_choices)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, cfg: Mapping) -> 'SearchSpace':
        """Build from a config dict with the constructor's keys, plus an optional ``preset``
        (a name in :data:`PRESETS`) that the other keys override. Unknown keys raise."""
        if not isinstance(cfg, Mapping):
            raise SearchSpaceError(f'search space config must be a dict, got {type(cfg).__name__}')
        cfg = dict(cfg)
        allowed = ('preset', ) + cls._init_keys()
        unknown = sorted(set(cfg) - set(allowed))
        if unknown:
            raise SearchSpaceError(f'search space config has unknown keys {unknown}; '
                                   f'allowed: {list(allowed)}')
        preset = cfg.pop('preset', 'full')
        return cls.preset(preset, **cfg)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> 'SearchSpace':
        """A named space from :data:`PRESETS` (e.g. ``'conv_only'``), keyword overrides on top."""
        if name not in PRESETS:
            raise SearchSpaceError(f'unknown search space preset {name!r}; choose one of '
                                   f'{sorted(PRESETS)}')
        unknown = sorted(set(overrides) - set(cls._init_keys()))
        if unknown:
            raise SearchSpaceError(f'search space has no options {unknown}; allowed: '
                                   f'{list(cls._init_keys())}')
        return cls(**{**PRESETS[name], **overrides})

    @staticmethod
    def _init_keys() -> Tuple[str, ...]:
        return ('base_arch', 'gops', 'dsms', 'expansions', 'widths', 'repeat_deltas',
                'searched_stages', 'input_size')

    @property
    def config(self) -> Dict[str, Any]:
        """The constructor arguments of this space (``from_config(space.config)`` rebuilds it)."""
        return dict(base_arch=self.base_arch.to_dict(), gops=self.gops, dsms=self.dsms,
                    expansions=self.expansions, widths=self.widths,
                    repeat_deltas=self.repeat_deltas, searched_stages=self.searched_stages,
                    input_size=self.input_size)

    @functools.cached_property
    def num_distinct(self) -> int:
        """Number of distinct arch dicts the sequences decode to: fewer than :attr:`size`,
        because clamped repeats and channel rounding merge some (~8.6e15 for the default
        space). Counted exactly, stage by stage (stages decode independently)."""
        return math.prod(self._distinct_stages(s) for s in self.searched_stages)

    @staticmethod
    def _named_choices(field: str, values: Any, allowed: Sequence[str]) -> tuple:
        values = _choice_tuple(field, values, f'allowed: {list(allowed)}')
        unknown = [v for v in values if v not in allowed]
        if unknown:
            raise SearchSpaceError(f'search space {field!r} has unknown values {unknown}; '
                                   f'allowed: {list(allowed)}')
        return values

    @staticmethod
    def _positive_choices(field: str, values: Any) -> tuple:
        values = _choice_tuple(field, values, 'positive numbers')
        bad = [v for v in values if not is_number(v) or v <= 0]
        if bad:
            raise SearchSpaceError(f'search space {field!r} has invalid values {bad}; every '
                                   f'choice must be a positive number')
        return values

    @staticmethod
    def _check_input_size(input_size: Any) -> Tuple[int, int]:
        if is_int(input_size):
            input_size = (input_size, input_size)
        if (isinstance(input_size, (str, bytes)) or not isinstance(input_size, Sequence)
                or len(input_size) != 2 or not all(is_int(s) and s > 0 for s in input_size)):
            raise SearchSpaceError(f'search space input_size must be a positive int or (H, W), '
                                   f'got {input_size!r}')
        return tuple(int(s) for s in input_size)

    def _distinct_stages(self, stage: int) -> int:
        combos = itertools.product(*(self._fields[name] for name in DECISION_NAMES))
        return len({tuple(self._stage(stage, dict(zip(DECISION_NAMES, c))).items())
                    for c in combos})

    # ------------------------------------------------------------------ decoding
    def _stage(self, index: int, values: Mapping[str, Any]) -> Dict[str, Any]:
        base = self.base_arch.stages[index]
        gop, dsm = values['gop'], values['dsm']
        divisor = HEAD_DIM if gop in ATTENTION_GOPS or dsm in ATTENTION_DSMS else CHANNEL_DIVISOR
        return dict(gop=gop, dsm=dsm, expansion=values['expansion'],
                    channels=round_channels(base.channels * values['width'], divisor),
                    repeats=max(1, base.repeats + values['repeat_delta']),
                    stride=base.stride)

    def _check_tokens(self, tokens: Any) -> List[int]:
        if hasattr(tokens, 'tolist'):
            tokens = tokens.tolist()
        if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Sequence):
            raise SearchSpaceError(f'tokens must be a sequence of {len(self.decisions)} ints, '
                                   f'got {type(tokens).__name__}')
        if len(tokens) != len(self.decisions):
            raise SearchSpaceError(f'this search space decodes {len(self.decisions)} tokens, '
                                   f'got {len(tokens)}')
        bad = [(i, t) for i, (t, n) in enumerate(zip(tokens, self.num_choices))
               if not is_int(t) or not 0 <= t < n]
        if bad:
            i, token = bad[0]
            d = self.decisions[i]
            raise SearchSpaceError(f'token {i} (stage {d.stage} {d.name}) = {token!r} is out of '
                                   f'range; allowed: ints in 0..{self.num_choices[i] - 1}')
        return [operator.index(t) for t in tokens]

    def stage_choices(self, tokens: Sequence[int]) -> Dict[int, Dict[str, Any]]:
        """The chosen value of every decision (fixed ones included), per searched stage."""
        tokens = self._check_tokens(tokens)
        chosen = {stage: {name: self._fields[name][0] for name in DECISION_NAMES}
                  for stage in self.searched_stages}
        for decision, token in zip(self.decisions, tokens):
            chosen[decision.stage][decision.name] = decision.choices[token]
        return chosen

    def decode(self, tokens: Sequence[int]) -> Dict[str, Any]:
        """Token sequence -> the arch dict ``UniNet(arch=...)`` accepts (plain Python values)."""
        chosen = self.stage_choices(tokens)
        arch = self.base_arch.to_dict()
        for stage, values in chosen.items():
            arch['stages'][stage] = self._stage(stage, values)
        return arch

    def backbone_kwargs(self, tokens: Sequence[int]) -> Dict[str, Any]:
        """``dict(arch=..., input_size=(H, W))`` for ``UniNet(**kwargs)``; MLP stages need the
        fixed input size, every other GOP ignores it."""
        return dict(arch=self.decode(tokens), input_size=self.input_size)

    def sample(self, rng: RandomSource = None) -> List[int]:
        """A uniformly random token sequence from ``rng`` (``random.Random``,
        ``numpy.random.Generator``, or None for a fresh OS-seeded one)."""
        if rng is None:
            rng = random.Random()
        if isinstance(rng, random.Random):
            return [rng.randrange(n) for n in self.num_choices]
        if isinstance(rng, np.random.Generator):
            return [int(rng.integers(n)) for n in self.num_choices]
        raise TypeError(f'rng must be random.Random, numpy.random.Generator or None, '
                        f'got {type(rng).__name__}')

    def __repr__(self) -> str:
        return (f'SearchSpace(stages={self.searched_stages}, gops={self.gops}, dsms={self.dsms}, '
                f'expansions={self.expansions}, widths={self.widths}, '
                f'repeat_deltas={self.repeat_deltas}, input_size={self.input_size}, '
                f'decisions={len(self.decisions)}, size={self.size:.3g})')
