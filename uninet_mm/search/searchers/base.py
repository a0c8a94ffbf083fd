"""The interface every searcher implements for :class:`~uninet_mm.search.driver.SearchDriver`.

The driver owns the bookkeeping that is the same for every searcher (trial indices, which
trial holds which architecture, the log records, the saved state, resuming); a searcher only
says which token sequences to score next and learns from their results:

* :meth:`Searcher.propose` ``(num)``: up to ``num`` proposals, each ``dict(tokens=[...],
  **data)`` with per-proposal data the searcher wants back (PPO: the ``log_prob`` it sampled
  with; NSGA-II: its optuna trial ``number``). Fewer, or none, means "wait for results first".
* :meth:`Searcher.observe` ``(entries)``: scored proposals, each the proposal's data plus
  ``index``, ``status`` ('ok' / 'failed'), ``reward`` (``failure_reward`` for a failed
  trial; None when failures are left out), ``accuracy`` and ``cost`` (FLOPs or ms, per the
  reward's cost; None for a failed trial). Returns statistics (a flat dict of numbers) or None.
* :meth:`Searcher.state_dict` / :meth:`Searcher.load_state_dict`: everything needed to
  continue exactly (RNG states included), as plain data ``torch.load(weights_only=True)``
  reads.

``on_policy`` searchers (PPO) propose a whole batch and see it back complete before
proposing again; the others are asked for one proposal at a time and see each result as it
arrives, so several proposals may be out at once (Ray runs trials concurrently).
"""
from __future__ import annotations

import random
from typing import Any, ClassVar, Dict, List, Optional, Sequence

from ..checks import is_fraction, is_int


class SearcherError(ValueError):
    """Unknown searcher or bad searcher settings; the message says what to change."""


def check_setting(searcher: str, name: str, value: Any, kind: str) -> None:
    """Raise :class:`SearcherError` unless ``value`` is of ``kind``: 'int>=1', 'int>=2',
    'fraction', 'fraction|None'."""
    ok = {'int>=1': lambda v: is_int(v, 1), 'int>=2': lambda v: is_int(v, 2),
          'fraction': is_fraction,
          'fraction|None': lambda v: v is None or is_fraction(v)}[kind](value)
    if not ok:
        what = {'int>=1': 'an int >= 1', 'int>=2': 'an int >= 2',
                'fraction': 'a number in [0, 1]',
                'fraction|None': 'a number in [0, 1] or None'}[kind]
        raise SearcherError(f'searcher {searcher!r}: {name} = {value!r} must be {what}')


class Searcher:
    """Base of the searchers.

    Args:
        num_choices: choices of every decision (``SearchSpace.num_choices``).
        seed: seeds every random choice the searcher makes.
        **settings: the searcher's settings (:attr:`SETTINGS` lists them with defaults).
    """

    #: The name in configs and on the command line.
    name: ClassVar[str] = ''
    #: Proposes a batch and waits for all of it before proposing again.
    on_policy: ClassVar[bool] = False
    #: Setting name -> (default, kind for :func:`check_setting`).
    SETTINGS: ClassVar[Dict[str, tuple]] = {}

    def __init__(self, num_choices: Sequence[int], seed: int = 0, **settings: Any):
        self.num_choices = [int(n) for n in num_choices]
        self.seed = int(seed)
        self.settings = self.check_settings(settings)

    @classmethod
    def check_settings(cls, settings: Dict[str, Any]) -> Dict[str, Any]:
        """The settings with defaults filled in; unknown or bad ones raise
        :class:`SearcherError`."""
        unknown = sorted(set(settings) - set(cls.SETTINGS))
        if unknown:
            allowed = sorted(cls.SETTINGS) or 'none'
            raise SearcherError(f'searcher {cls.name!r} has no settings {unknown}; allowed: '
                                f'{allowed}')
        full = {name: settings.get(name, default)
                for name, (default, _) in cls.SETTINGS.items()}
        for name, (_, kind) in cls.SETTINGS.items():
            check_setting(cls.name, name, full[name], kind)
        return full

    def propose(self, num: int) -> List[Dict[str, Any]]:
        raise NotImplementedError

    def observe(self, entries: List[Dict[str, Any]]) -> Optional[Dict[str, float]]:
        raise NotImplementedError

    def state_dict(self) -> Dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        raise NotImplementedError

    def identity(self) -> Dict[str, Any]:
        """What a resumed search must share with the saved one: type and settings."""
        return dict(type=self.name, **self.settings)


class RewardWindow:
    """Statistics of the rewards seen so far, emitted every ``every`` results: mean and
    maximum of the window, best so far (what the off-policy searchers report)."""

    def __init__(self, every: int):
        self.every = every
        self.window: List[float] = []
        self.best: Optional[float] = None
        self.count = 0
        self.first: Optional[int] = None

    def add(self, reward: Optional[float], index: int) -> Optional[Dict[str, float]]:
        """Add the reward of trial ``index`` (None: failed, not counted)."""
        self.count += 1
        self.first = index if self.first is None else self.first
        if reward is not None:
            self.window.append(float(reward))
            self.best = reward if self.best is None else max(self.best, reward)
        if self.count % self.every or not self.window:
            return None
        stats = dict(mean_reward=sum(self.window) / len(self.window),
                     max_reward=max(self.window), best_reward=float(self.best),
                     num_archs=len(self.window), first_trial=self.first, last_trial=index)
        self.window, self.first = [], None
        return stats

    def state_dict(self) -> Dict[str, Any]:
        return dict(every=self.every, window=list(self.window), best=self.best,
                    count=self.count, first=self.first)

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.every, self.window = state['every'], list(state['window'])
        self.best, self.count, self.first = state['best'], state['count'], state['first']


def random_tokens(rng: random.Random, num_choices: Sequence[int]) -> List[int]:
    """One token sequence, every decision uniform over its choices."""
    return [rng.randrange(n) for n in num_choices]


def rng_state(rng: random.Random) -> List[Any]:
    """``random.Random`` state as plain lists (what weights_only loading accepts)."""
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def set_rng_state(rng: random.Random, state: Sequence[Any]) -> None:
    rng.setstate((state[0], tuple(state[1]), state[2]))


__all__ = ['Searcher', 'SearcherError', 'check_setting', 'RewardWindow', 'random_tokens',
           'rng_state', 'set_rng_state']
