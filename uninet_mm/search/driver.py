"""The search driver: proposes architectures, turns trial results into rewards, lets its
searcher learn from them, and keeps its whole state for resuming.

:class:`SearchDriver` is independent of where trials run and of how architectures are chosen:
it proposes architectures (:meth:`~SearchDriver.propose`), takes their results
(:meth:`~SearchDriver.complete`) and turns them into rewards; *which* architectures come next
is its searcher's business (:mod:`uninet_mm.search.searchers`: ``ppo``, the paper's LSTM
controller trained with PPO, the default; ``random``; ``evolution``; ``nsga2``). Its whole
state (the searcher's state with its RNGs, history, the architectures proposed but not yet
scored) is one :meth:`~SearchDriver.state_dict`, written atomically to
``WORK_DIR/search_state.pth`` after every scored trial; it names the searcher, and a resume
with another searcher is refused. :mod:`uninet_mm.search.embedded` runs trials one after
another in this process; :mod:`uninet_mm.search.ray_tune` runs the same driver as a Ray Tune
searcher.

Failed trials (an exception, a NaN loss, out of memory): recorded in the log with
``status='failed'`` and their ``error``; their reward is ``failure_reward`` (default 0.0, the
lowest reward any architecture can get, so the searcher learns to avoid architectures that
fail, e.g. ones that do not fit in memory). ``failure_reward=None`` leaves them out of what
the searcher learns from (use it when failures are not the architecture's fault, e.g. a flaky
cluster node). Each searcher says what it does with them (:mod:`uninet_mm.search.searchers`).

Results may carry ``early_stopped`` (bool: a scheduler such as ASHA stopped the trial before
its last epoch) and ``epochs`` (int: epochs it trained); the driver copies them into the
record when present.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch

from ..utils.plain import to_plain
from .latency import LatencyError, LatencyTable
from .reward import MnasReward
from .searchers import Searcher, SearcherError, searcher_class, split_searcher
from .space import SearchSpace

STATE_NAME = 'search_state.pth'
#: 2: the searcher's type, identity and state under ``searcher`` (1: PPO only, read as PPO).
STATE_VERSION = 2
#: Optional result keys copied into the record when a result has them.
OPTIONAL_RESULT_KEYS = ('early_stopped', 'epochs')


class SearchDriver:
    """Proposes architectures, scores their results and lets its searcher learn from them.

    Args:
        space: the search space.
        reward: the reward (t, alpha, hard, cost: FLOPs or latency).
        max_trials: architectures to score in total.
        controller: kwargs of :class:`~uninet_mm.search.controller.LSTMController` (PPO).
        ppo: kwargs of :class:`~uninet_mm.search.ppo.PPOTrainer` (PPO).
        archs_per_update: architectures per PPO update (default: the PPO ``batch_size``).
        seed: seeds every random choice of the searcher.
        failure_reward: reward of a failed trial, or None to leave failures out of what the
            searcher learns from.
        latency: the latency table (required for ``reward.cost == 'latency'``; with the FLOPs
            cost it only adds ``latency_ms`` to the log). Architectures it reports as
            infeasible fail (with the reason) under the latency cost.
        searcher: ``'ppo'`` (default), ``'random'``, ``'evolution'``, ``'nsga2'``, or
            ``dict(type=NAME, **settings)``.
    """

    def __init__(self, space: SearchSpace, reward: MnasReward, max_trials: int,
                 controller: Optional[dict] = None, ppo: Optional[dict] = None,
                 archs_per_update: Optional[int] = None, seed: int = 0,
                 failure_reward: Optional[float] = 0.0,
                 latency: Optional[LatencyTable] = None,
                 searcher: Union[str, Mapping[str, Any], None] = 'ppo'):
        if reward.cost == 'latency' and latency is None:
            raise ValueError('a latency reward needs the latency table (latency=...)')
        self.space = space
        self.reward = reward
        self.latency = latency
        self.max_trials = int(max_trials)
        name, settings = split_searcher(searcher)
        cls = searcher_class(name)
        if name == 'ppo':
            if settings:
                cls.check_settings(settings)  # raises: PPO's settings live in ppo/controller
            self.strategy: Searcher = cls(space.num_choices, seed, controller=controller,
                                          ppo=ppo, archs_per_update=archs_per_update)
            self.archs_per_update = self.strategy.archs_per_update
        else:
            self.strategy = cls(space.num_choices, seed, **settings)
            self.archs_per_update = int(archs_per_update or (ppo or {}).get('batch_size', 20))
        self.failure_reward = failure_reward
        #: Proposed architectures not yet handed to the searcher, in proposal order:
        #: dict(index, tokens, reward=None until scored, scored, assigned=trial id or None,
        #: plus the searcher's per-proposal data). For PPO the whole current batch (scored
        #: ones stay until the update), for the others the ones still out.
        self.batch: List[Dict[str, Any]] = []
        #: Every scored trial (the lines of search_log.jsonl), in the order scored.
        self.history: List[Dict[str, Any]] = []
        #: The searcher's statistics (PPO: every update; the others: every few results).
        self.updates: List[Dict[str, Any]] = []
        self.num_sampled = 0

    @property
    def searcher(self) -> str:
        """The searcher's name."""
        return self.strategy.name

    @property
    def controller(self):
        """The PPO searcher's LSTM controller (AttributeError for the other searchers)."""
        return self.strategy.controller

    @property
    def ppo(self):
        """The PPO searcher's :class:`~uninet_mm.search.ppo.PPOTrainer`."""
        return self.strategy.ppo

    # ------------------------------------------------------------------ proposing
    @property
    def finished(self) -> bool:
        return len(self.history) >= self.max_trials

    def propose(self, trial_id: Optional[str] = None) -> Optional[Dict[str, Any]]:
        """The next architecture to score: ``dict(index, tokens)``, or None when the searcher
        waits for results of architectures that are out (PPO: the current batch; evolution:
        the initial population; NSGA-II: a population's worth) or the search is finished."""
        if not any(not e['scored'] and e['assigned'] is None for e in self.batch):
            self._ask()
        for entry in self.batch:
            if not entry['scored'] and entry['assigned'] is None:
                entry['assigned'] = trial_id if trial_id is not None else 'embedded'
                return dict(index=entry['index'], tokens=list(entry['tokens']))
        return None

    def _ask(self) -> None:
        remaining = self.max_trials - self.num_sampled
        if remaining <= 0 or (self.strategy.on_policy and self.batch):
            return
        num = min(self.archs_per_update if self.strategy.on_policy else 1, remaining)
        for proposal in self.strategy.propose(num):
            proposal = dict(proposal)
            tokens = [int(t) for t in proposal.pop('tokens')]
            self.batch.append(dict(proposal, index=self.num_sampled, tokens=tokens,
                                   reward=None, scored=False, assigned=None))
            self.num_sampled += 1

    def release_assignments(self) -> None:
        """Forget which architectures were out for scoring (after a crash nothing is)."""
        for entry in self.batch:
            entry['assigned'] = None

    def pending_indices(self) -> List[int]:
        """Indices proposed but not yet scored."""
        return [e['index'] for e in self.batch if not e['scored']]

    # ------------------------------------------------------------------ results
    def complete(self, index: int, result: Dict[str, Any]) -> Dict[str, Any]:
        """Record the result of architecture ``index``; returns its log record (with the
        searcher's statistics under ``update`` when this result produced some)."""
        entry = next((e for e in self.batch if e['index'] == index and not e['scored']), None)
        if entry is None:
            raise KeyError(f'architecture {index} is not waiting for a result (already scored '
                           f'or never proposed)')
        record = self._record(entry, result)
        entry['scored'] = True
        ok = record['status'] == 'ok'
        entry.update(reward=record['reward'] if ok else self.failure_reward,
                     status=record['status'], accuracy=record['accuracy'] if ok else None,
                     cost=self._cost(record) if ok else None)
        self.history.append(record)
        if self.strategy.on_policy:
            if not all(e['scored'] for e in self.batch):
                return record
            observed, self.batch = self.batch, []
        else:
            observed = [entry]
            self.batch.remove(entry)
        stats = self.strategy.observe([self._observed(e) for e in observed])
        if stats is not None:
            stats = dict(dict(first_trial=min(e['index'] for e in observed),
                              last_trial=max(e['index'] for e in observed),
                              num_archs=len(observed)),
                         **stats, update=len(self.updates), searcher=self.searcher)
            self.updates.append(stats)
            record['update'] = stats
        return record

    @staticmethod
    def _observed(entry: Dict[str, Any]) -> Dict[str, Any]:
        return {k: v for k, v in entry.items() if k not in ('scored', 'assigned')}

    def _cost(self, record: Dict[str, Any]) -> Optional[float]:
        return record.get('latency_ms') if self.reward.cost == 'latency' else record['flops']

    def infeasible_reason(self, tokens: List[int]) -> Optional[str]:
        """Why an architecture cannot be scored, known before training it (under the latency
        cost: the table says it cannot run at the table's size), or None."""
        if self.reward.cost != 'latency':
            return None
        reason = self.latency.infeasible_reason(self.space.decode(tokens))
        return None if reason is None else f'infeasible at {self.latency.describe()}: {reason}'

    def predict_latency(self, arch: Dict[str, Any]) -> Tuple[Optional[float], Optional[str]]:
        """(latency in ms, None), or (None, why not)."""
        if self.latency is None:
            return None, 'no latency table'
        try:
            return self.latency.predict(arch), None
        except LatencyError as exc:
            return None, str(exc)

    def _record(self, entry: Dict[str, Any], result: Dict[str, Any]) -> Dict[str, Any]:
        status, error = result.get('status', 'ok'), result.get('error')
        accuracy, flops = result.get('accuracy'), result.get('flops')
        arch = self.space.decode(entry['tokens'])
        latency_ms, latency_error = self.predict_latency(arch)
        reward = None
        if status == 'ok':
            try:
                if self.reward.cost == 'latency' and latency_ms is None:
                    raise ValueError(latency_error)
                cost = latency_ms if self.reward.cost == 'latency' else flops
                reward = self.reward(accuracy, cost)
            except (TypeError, ValueError) as exc:
                status, error = 'failed', f'unusable result: {exc}'
        if status != 'ok':
            reward = self.failure_reward
        record = dict(trial=entry['index'], tokens=list(entry['tokens']), arch=arch,
                      input_size=list(self.space.input_size), flops=flops,
                      params=result.get('params'), accuracy=accuracy, reward=reward,
                      t=self.reward.target, alpha=self.reward.alpha, hard=self.reward.hard,
                      cost=self.reward.cost,
                      seconds=result.get('seconds'), cpu_seconds=result.get('cpu_seconds'),
                      status=status, error=error,
                      batch=len(self.updates), searcher=self.searcher)
        if self.latency is not None:
            record.update(latency_ms=latency_ms, latency_table=self.latency.identity)
        for key in OPTIONAL_RESULT_KEYS:
            if result.get(key) is not None:
                record[key] = result[key]
        return record

    def _reward_state(self) -> Dict[str, Any]:
        return dict(target=self.reward.target, alpha=self.reward.alpha, hard=self.reward.hard,
                    cost=self.reward.cost)

    def _latency_state(self) -> Optional[Dict[str, Any]]:
        if self.latency is None:
            return None
        identity = dict(self.latency.identity)
        identity.pop('path')  # the same table may be moved
        return identity

    # ------------------------------------------------------------------ checkpointing
    def _searcher_identity(self) -> Dict[str, Any]:
        return to_plain(self.strategy.identity())

    def state_dict(self) -> Dict[str, Any]:
        return dict(version=STATE_VERSION, space=to_plain(self.space.config),
                    reward=self._reward_state(), latency_table=self._latency_state(),
                    max_trials=self.max_trials, archs_per_update=self.archs_per_update,
                    failure_reward=self.failure_reward,
                    searcher=dict(identity=self._searcher_identity(),
                                  state=self.strategy.state_dict()),
                    batch=self.batch, history=self.history, updates=self.updates,
                    num_sampled=self.num_sampled)

    @staticmethod
    def saved_searcher(state: Dict[str, Any]) -> str:
        """The searcher a saved state belongs to (version-1 states: PPO)."""
        if state.get('version') == 1:
            return 'ppo'
        return state['searcher']['identity']['type']

    def load_state_dict(self, state: Dict[str, Any], max_trials: Optional[int] = None) -> None:
        """Continue a saved search. The searcher, space, reward and update size must be the
        same; ``max_trials`` may grow."""
        if state.get('version') not in (1, STATE_VERSION):
            raise ValueError(f'search state version {state.get("version")!r} is not '
                             f'{STATE_VERSION}; start a new search in another work dir')
        if state['version'] == 1:  # PPO only, its state at the top level
            state = dict(state, searcher=dict(identity=dict(type='ppo'), state=dict(
                ppo=state['ppo'], generator=state['generator'])))
        saved_name = self.saved_searcher(state)
        if saved_name != self.searcher:
            raise SearcherError(f'cannot resume: the search in this work dir ran searcher '
                                f'{saved_name!r}, not {self.searcher!r}; resume with '
                                f'--searcher {saved_name} (or searcher=dict(type='
                                f'{saved_name!r}) in the config), or use a new work dir')
        # states written before the latency cost existed: FLOPs cost, no table
        saved = dict(state, reward=dict(dict(cost='flops'), **state['reward']),
                     latency_table=state.get('latency_table'),
                     searcher_identity=state['searcher']['identity'])
        for key, now in (('space', to_plain(self.space.config)),
                         ('reward', self._reward_state()),
                         ('latency_table', self._latency_state()),
                         ('archs_per_update', self.archs_per_update),
                         ('failure_reward', self.failure_reward),
                         ('searcher_identity', self._searcher_identity())):
            if saved[key] != now:
                raise ValueError(f'cannot resume: the saved search has {key} = {saved[key]!r}, '
                                 f'this config {now!r}; resume with the config the search '
                                 f'started with, or use a new work dir')
        self.strategy.load_state_dict(state['searcher']['state'])
        self.batch, self.history = state['batch'], state['history']
        self.updates, self.num_sampled = state['updates'], state['num_sampled']
        if max_trials is not None:
            self.max_trials = max(int(max_trials), self.num_sampled)

    def save(self, work_dir: str) -> None:
        """Write the state atomically to ``work_dir/search_state.pth``."""
        path = Path(work_dir) / STATE_NAME
        tmp = path.with_suffix('.tmp')
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)

    def load(self, work_dir: str, max_trials: Optional[int] = None) -> None:
        path = Path(work_dir) / STATE_NAME
        if not path.is_file():
            raise FileNotFoundError(f'no search state at {path} to resume; run without '
                                    f'--resume to start a search there')
        self.load_state_dict(torch.load(path, map_location='cpu', weights_only=True),
                             max_trials)
