"""Regularized evolution (Real et al., AAAI 2019, arXiv 1802.01548).

The first ``population_size`` proposals are uniform random. After that each proposal is a
child: ``sample_size`` members drawn from the current population (without replacement), the
best of them by reward is the parent, and the child is the parent with exactly one decision
changed to another of its choices (decision and new choice uniform). Every scored child
joins the population and the oldest member leaves, so the population never exceeds
``population_size``.

Parallel workers: children are proposed while others are still running (each from the
population as it is at that moment); only the first child waits until the whole initial
population is scored.

Failed trials join the population with ``failure_reward`` (they age out like any member) but
are never a parent: the tournament picks the best successful member of its sample, and a
sample of failures only gives a uniform random architecture instead of a child.
"""
from __future__ import annotations

import random
from typing import Any, Dict, List, Optional, Sequence

from .base import RewardWindow, Searcher, SearcherError, random_tokens, rng_state, set_rng_state


def mutate(tokens: Sequence[int], num_choices: Sequence[int], rng: random.Random) -> List[int]:
    """``tokens`` with exactly one decision changed to another of its choices (decisions
    with one choice are never emitted by the space, so every decision can change)."""
    child = list(tokens)
    position = rng.randrange(len(child))
    others = [c for c in range(num_choices[position]) if c != child[position]]
    child[position] = rng.choice(others)
    return child


def tournament(population: Sequence[Dict[str, Any]], sample_size: int,
               rng: random.Random) -> Optional[Dict[str, Any]]:
    """The best successful member of ``sample_size`` members drawn without replacement
    (the earliest of equals), or None when the sample holds only failures."""
    sample = rng.sample(list(population), min(sample_size, len(population)))
    alive = [m for m in sample if m['status'] == 'ok' and m['reward'] is not None]
    if not alive:
        return None
    return max(alive, key=lambda m: (m['reward'], -m['index']))


class EvolutionSearcher(Searcher):
    """Regularized evolution over the space's tokens (see the module docstring).

    Settings:
        population_size: members kept (Real et al.: 100 for 20,000 models; default 20).
        sample_size: tournament size (Real et al.: 25 of 100; default 5).
    """

    name = 'evolution'
    SETTINGS = dict(population_size=(20, 'int>=2'), sample_size=(5, 'int>=1'))

    def __init__(self, num_choices, seed: int = 0, **settings: Any):
        super().__init__(num_choices, seed, **settings)
        self.population_size = self.settings['population_size']
        self.sample_size = self.settings['sample_size']
        self.rng = random.Random(self.seed)
        #: Scored members, oldest first: dict(index, tokens, reward, status).
        self.population: List[Dict[str, Any]] = []
        self.num_proposed = 0
        self.num_observed = 0
        self.stats = RewardWindow(self.population_size)

    @classmethod
    def check_settings(cls, settings: Dict[str, Any]) -> Dict[str, Any]:
        full = super().check_settings(settings)
        if full['sample_size'] > full['population_size']:
            raise SearcherError(f'searcher \'evolution\': sample_size = {full["sample_size"]} '
                                f'must not exceed population_size = {full["population_size"]}')
        return full

    def propose(self, num: int) -> List[Dict[str, Any]]:
        proposals = []
        for _ in range(num):
            if self.num_proposed < self.population_size:
                proposals.append(dict(tokens=random_tokens(self.rng, self.num_choices),
                                      parent=None))
            elif self.num_observed < self.population_size:
                break  # the initial population is still being scored
            else:
                parent = tournament(self.population, self.sample_size, self.rng)
                if parent is None:
                    proposals.append(dict(tokens=random_tokens(self.rng, self.num_choices),
                                          parent=None))
                else:
                    proposals.append(dict(tokens=mutate(parent['tokens'], self.num_choices,
                                                        self.rng),
                                          parent=parent['index']))
            self.num_proposed += 1
        return proposals

    def observe(self, entries: List[Dict[str, Any]]) -> Optional[Dict[str, float]]:
        stats = None
        for entry in entries:
            if entry['reward'] is not None or entry['status'] == 'ok':
                self.population.append(dict(index=entry['index'], tokens=list(entry['tokens']),
                                            reward=entry['reward'], status=entry['status']))
            if len(self.population) > self.population_size:
                self.population.pop(0)  # the oldest leaves
            self.num_observed += 1
            window = self.stats.add(entry['reward'] if entry['status'] == 'ok' else None,
                                   entry['index'])
            if window is not None:
                alive = [m['reward'] for m in self.population if m['status'] == 'ok']
                stats = dict(window, population=len(self.population),
                             population_best=max(alive) if alive else float('nan'),
                             population_mean=sum(alive) / len(alive) if alive else float('nan'),
                             population_failed=len(self.population) - len(alive))
        return stats

    def state_dict(self) -> Dict[str, Any]:
        return dict(rng=rng_state(self.rng), population=[dict(m) for m in self.population],
                    num_proposed=self.num_proposed, num_observed=self.num_observed,
                    stats=self.stats.state_dict())

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        set_rng_state(self.rng, state['rng'])
        self.population = [dict(m) for m in state['population']]
        self.num_proposed, self.num_observed = state['num_proposed'], state['num_observed']
        self.stats.load_state_dict(state['stats'])
