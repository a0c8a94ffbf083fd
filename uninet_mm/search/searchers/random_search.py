"""Random search: every decision uniform over its choices, independently."""
from __future__ import annotations

import random
from typing import Any, Dict, List, Optional

from .base import RewardWindow, Searcher, random_tokens, rng_state, set_rng_state

#: Results per statistics entry (mean / max of the window, best so far).
STATS_EVERY = 10


class RandomSearcher(Searcher):
    """Uniform sampling over the space's tokens; results do not change what comes next, so
    any number of proposals may be out at once. Failed trials need no handling."""

    name = 'random'

    def __init__(self, num_choices, seed: int = 0, **settings: Any):
        super().__init__(num_choices, seed, **settings)
        self.rng = random.Random(self.seed)
        self.stats = RewardWindow(STATS_EVERY)

    def propose(self, num: int) -> List[Dict[str, Any]]:
        return [dict(tokens=random_tokens(self.rng, self.num_choices)) for _ in range(num)]

    def observe(self, entries: List[Dict[str, Any]]) -> Optional[Dict[str, float]]:
        stats = None
        for entry in entries:
            stats = self.stats.add(entry['reward'] if entry['status'] == 'ok' else None,
                                   entry['index']) or stats
        return stats

    def state_dict(self) -> Dict[str, Any]:
        return dict(rng=rng_state(self.rng), stats=self.stats.state_dict())

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        set_rng_state(self.rng, state['rng'])
        self.stats.load_state_dict(state['stats'])
