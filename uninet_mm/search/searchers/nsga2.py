"""NSGA-II over (accuracy, cost) with optuna's ``NSGAIISampler`` (optional: ``pip install -e
".[search]"``), through optuna's ask/tell interface.

Every decision of the space is one categorical parameter (``d00``, ``d01``, ... over its
token indices); the two objectives are the proxy accuracy (maximised) and the reward's cost
(minimised: FLOPs, or the latency table's milliseconds with ``reward.cost='latency'``). The
MnasNet reward is still computed and logged for every trial (top5.json ranks by it), but
NSGA-II does not use it: its result is the Pareto front (``pareto.json``, drawn in
``search.png``). Failed trials are told to optuna as ``FAIL``: never a parent, in no front.

Parallel workers: up to ``population_size`` proposals are out at once (optuna's trials in
state RUNNING); NSGA-II assigns each new trial to a generation from the trials completed when
it is asked.

Resuming: the study lives in memory and its whole content (every trial with its state,
parameters, values and NSGA-II's generation attribute, plus the study's parent-population
cache) is part of :meth:`NSGA2Searcher.state_dict`; a resumed searcher rebuilds the study
with ``add_trial`` (running trials as RUNNING, so their results are told to the same trial
number), so nothing told is lost and nothing is scored again. The sampler draws its random
numbers from a generator seeded with (seed, trial number) for every ask, so a resumed search
makes the same proposals as an uninterrupted one.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from .base import RewardWindow, Searcher, SearcherError

try:
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.samplers import NSGAIISampler
    from optuna.trial import TrialState
except ImportError as exc:  # pragma: no cover - depends on the optional extra
    raise SearcherError('searcher \'nsga2\' needs optuna: pip install -e ".[search]" (or pip '
                        f'install optuna); import failed with: {exc}') from None

STUDY_NAME = 'uninet_search'
DIRECTIONS = ('maximize', 'minimize')  # accuracy, cost


class NSGA2Searcher(Searcher):
    """NSGA-II (optuna's ``NSGAIISampler``) over (accuracy, cost).

    Settings (optuna's, same defaults except the population):
        population_size: individuals per generation (default 20; optuna's 50 is for longer
            searches than a proxy-task search affords).
        crossover_prob: probability of crossover for a child (0.9).
        mutation_prob: per-parameter mutation probability (None: 1 / number of decisions).
        swapping_prob: uniform crossover's per-parameter swap probability (0.5).
    """

    name = 'nsga2'
    SETTINGS = dict(population_size=(20, 'int>=2'), crossover_prob=(0.9, 'fraction'),
                    mutation_prob=(None, 'fraction|None'), swapping_prob=(0.5, 'fraction'))

    def __init__(self, num_choices, seed: int = 0, **settings: Any):
        super().__init__(num_choices, seed, **settings)
        # the search logs every trial itself; optuna's own INFO line per told trial is noise
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.distributions = {f'd{i:02d}': CategoricalDistribution(list(range(n)))
                              for i, n in enumerate(self.num_choices)}
        self.stats = RewardWindow(self.settings['population_size'])
        self._new_study()

    def _new_study(self) -> None:
        self.storage = optuna.storages.InMemoryStorage()
        self.study = optuna.create_study(storage=self.storage, study_name=STUDY_NAME,
                                         directions=list(DIRECTIONS))
        self.study_id = self.storage.get_study_id_from_name(STUDY_NAME)

    def _sampler(self, number: int) -> NSGAIISampler:
        return NSGAIISampler(seed=(self.seed * 1_000_003 + number) % 2 ** 32,
                             **self.settings)

    def _running(self) -> int:
        return sum(t.state == TrialState.RUNNING for t in self.study.get_trials(deepcopy=False))

    def propose(self, num: int) -> List[Dict[str, Any]]:
        proposals = []
        for _ in range(num):
            if self._running() >= self.settings['population_size']:
                break  # a generation's worth is out: wait for results
            self.study.sampler = self._sampler(len(self.study.get_trials(deepcopy=False)))
            trial = self.study.ask(self.distributions)
            proposals.append(dict(tokens=[trial.params[name] for name in self.distributions],
                                  number=trial.number))
        return proposals

    def observe(self, entries: List[Dict[str, Any]]) -> Optional[Dict[str, float]]:
        stats = None
        for entry in entries:
            ok = (entry['status'] == 'ok' and entry.get('accuracy') is not None
                  and entry.get('cost') is not None)
            if ok:
                self.study.tell(entry['number'], [float(entry['accuracy']),
                                                  float(entry['cost'])])
            else:
                self.study.tell(entry['number'], state=TrialState.FAIL)
            window = self.stats.add(entry['reward'] if entry['status'] == 'ok' else None,
                                   entry['index'])
            if window is not None:
                stats = dict(window, front_size=len(self.pareto_numbers()))
        return stats

    def pareto_numbers(self) -> List[int]:
        """Trial numbers of optuna's current Pareto front (complete trials only)."""
        if not any(t.state == TrialState.COMPLETE
                   for t in self.study.get_trials(deepcopy=False)):
            return []
        return sorted(t.number for t in self.study.best_trials)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Any]:
        trials = [dict(number=t.number, state=t.state.name, params=dict(t.params),
                       values=None if t.values is None else [float(v) for v in t.values],
                       system_attrs=dict(t.system_attrs))
                  for t in self.study.get_trials(deepcopy=False)]
        return dict(trials=trials,
                    study_system_attrs=dict(self.storage.get_study_system_attrs(self.study_id)),
                    stats=self.stats.state_dict())

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self._new_study()
        for saved in sorted(state['trials'], key=lambda t: t['number']):
            trial = optuna.trial.create_trial(
                state=TrialState[saved['state']], params=saved['params'],
                distributions=self.distributions, values=saved['values'],
                system_attrs=saved['system_attrs'])
            self.study.add_trial(trial)
        for key, value in state['study_system_attrs'].items():
            self.storage.set_study_system_attr(self.study_id, key, value)
        self.stats.load_state_dict(state['stats'])
