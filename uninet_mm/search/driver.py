"""The search driver: proposes architectures, turns trial results into rewards, updates the
controller, and keeps its whole state for resuming.

:class:`SearchDriver` is independent of where trials run: it proposes architectures
(:meth:`~SearchDriver.propose`), takes their results (:meth:`~SearchDriver.complete`), turns
them into rewards and runs one PPO update each time a batch of ``archs_per_update``
architectures has been scored. Its whole state (controller weights, Adam state, baseline,
sampling RNG, history, the architectures of the current batch that are sampled but not yet
scored) is one :meth:`~SearchDriver.state_dict`, written atomically to
``WORK_DIR/search_state.pth`` after every scored trial. :mod:`uninet_mm.search.embedded` runs
trials one after another in this process; :mod:`uninet_mm.search.ray_tune` runs the same
driver as a Ray Tune searcher.

Failed trials (an exception, a NaN loss, out of memory): recorded in the log with
``status='failed'`` and their ``error``; their reward is ``failure_reward`` (default 0.0, the
lowest reward any architecture can get, so the controller learns to avoid architectures that
fail, e.g. ones that do not fit in memory) and they take part in the PPO update like any other.
``failure_reward=None`` leaves them out of the update instead (use it when failures are not the
architecture's fault, e.g. a flaky cluster node).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from ..utils.plain import to_plain
from .controller import LSTMController
from .latency import LatencyError, LatencyTable
from .ppo import PPOTrainer
from .reward import MnasReward
from .space import SearchSpace

STATE_NAME = 'search_state.pth'
STATE_VERSION = 1


class SearchDriver:
    """Proposes architectures, scores their results and updates the controller.

    Args:
        space: the search space.
        reward: the reward (t, alpha, hard, cost: FLOPs or latency).
        max_trials: architectures to score in total.
        controller: kwargs of :class:`LSTMController` (e.g. ``hidden_size``).
        ppo: kwargs of :class:`PPOTrainer`.
        archs_per_update: architectures per PPO update (default: the PPO ``batch_size``).
        seed: seeds the controller's initial weights and its sampling generator.
        failure_reward: reward of a failed trial, or None to leave failures out of the update.
        latency: the latency table (required for ``reward.cost == 'latency'``; with the FLOPs
            cost it only adds ``latency_ms`` to the log). Architectures it reports as
            infeasible fail (with the reason) under the latency cost.
    """

    def __init__(self, space: SearchSpace, reward: MnasReward, max_trials: int,
                 controller: Optional[dict] = None, ppo: Optional[dict] = None,
                 archs_per_update: Optional[int] = None, seed: int = 0,
                 failure_reward: Optional[float] = 0.0,
                 latency: Optional[LatencyTable] = None):
        if reward.cost == 'latency' and latency is None:
            raise ValueError('a latency reward needs the latency table (latency=...)')
        self.space = space
        self.reward = reward
        self.latency = latency
        self.max_trials = int(max_trials)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.controller = LSTMController(space.num_choices, **(controller or {}))
        self.ppo = PPOTrainer(self.controller, **(ppo or {}))
        self.archs_per_update = int(archs_per_update or self.ppo.batch_size)
        self.failure_reward = failure_reward
        self.generator = torch.Generator().manual_seed(seed)
        #: Sampled architectures of the current batch, scored or not, in sampling order:
        #: dict(index, tokens, log_prob, reward=None until scored, assigned=trial id or None).
        self.batch: List[Dict[str, Any]] = []
        #: Every scored trial (the lines of search_log.jsonl), in the order scored.
        self.history: List[Dict[str, Any]] = []
        #: Statistics of every PPO update.
        self.updates: List[Dict[str, Any]] = []
        self.num_sampled = 0

    # ------------------------------------------------------------------ proposing
    @property
    def finished(self) -> bool:
        return len(self.history) >= self.max_trials

    def propose(self, trial_id: Optional[str] = None) -> Optional[Dict[str, Any]]:
        """The next architecture to score: ``dict(index, tokens)``, or None when every
        architecture of the current batch is out and the update waits for their results (or
        the search is finished). Samples a new batch when the last one is done."""
        if not self.batch and self.num_sampled < self.max_trials:
            self._sample_batch()
        for entry in self.batch:
            if not entry['scored'] and entry['assigned'] is None:
                entry['assigned'] = trial_id if trial_id is not None else 'embedded'
                return dict(index=entry['index'], tokens=list(entry['tokens']))
        return None

    def _sample_batch(self) -> None:
        num = min(self.archs_per_update, self.max_trials - self.num_sampled)
        tokens, log_probs = self.controller.sample(num, generator=self.generator)
        for row, log_prob in zip(tokens.tolist(), log_probs.tolist()):
            self.batch.append(dict(index=self.num_sampled, tokens=row, log_prob=log_prob,
                                   reward=None, scored=False, assigned=None))
            self.num_sampled += 1

    def release_assignments(self) -> None:
        """Forget which architectures were out for scoring (after a crash nothing is)."""
        for entry in self.batch:
            entry['assigned'] = None

    def pending_indices(self) -> List[int]:
        """Indices sampled but not yet scored."""
        return [e['index'] for e in self.batch if not e['scored']]

    # ------------------------------------------------------------------ results
    def complete(self, index: int, result: Dict[str, Any]) -> Dict[str, Any]:
        """Record the result of architecture ``index``; returns its log record (with the PPO
        statistics under ``update`` when this result completed a batch)."""
        entry = next((e for e in self.batch if e['index'] == index and not e['scored']), None)
        if entry is None:
            raise KeyError(f'architecture {index} is not waiting for a result (already scored '
                           f'or never proposed)')
        record = self._record(entry, result)
        entry['scored'] = True
        entry['reward'] = record['reward'] if record['status'] == 'ok' else self.failure_reward
        self.history.append(record)
        if all(e['scored'] for e in self.batch):
            stats = self._update()
            if stats is not None:
                record['update'] = stats
        return record

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
                      batch=len(self.updates))
        if self.latency is not None:
            record.update(latency_ms=latency_ms, latency_table=self.latency.identity)
        for key in ('epochs', 'early_stopped'):  # optional: how long the trial trained
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

    def _update(self) -> Optional[Dict[str, Any]]:
        used = [e for e in self.batch if e['reward'] is not None]
        self.batch = []
        if not used:
            return None
        stats = self.ppo.update(torch.tensor([e['tokens'] for e in used]),
                                torch.tensor([e['log_prob'] for e in used]),
                                torch.tensor([float(e['reward']) for e in used]))
        stats = dict(stats, update=len(self.updates), num_archs=len(used),
                     first_trial=min(e['index'] for e in used),
                     last_trial=max(e['index'] for e in used))
        self.updates.append(stats)
        return stats

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> Dict[str, Any]:
        return dict(version=STATE_VERSION, space=to_plain(self.space.config),
                    reward=self._reward_state(), latency_table=self._latency_state(),
                    max_trials=self.max_trials, archs_per_update=self.archs_per_update,
                    failure_reward=self.failure_reward, ppo=self.ppo.state_dict(),
                    generator=self.generator.get_state(), batch=self.batch,
                    history=self.history, updates=self.updates, num_sampled=self.num_sampled)

    def load_state_dict(self, state: Dict[str, Any], max_trials: Optional[int] = None) -> None:
        """Continue a saved search. The space, reward and update size must be the same;
        ``max_trials`` may grow."""
        if state.get('version') != STATE_VERSION:
            raise ValueError(f'search state version {state.get("version")!r} is not '
                             f'{STATE_VERSION}; start a new search in another work dir')
        # states written before the latency cost existed: FLOPs cost, no table
        saved = dict(state, reward=dict(dict(cost='flops'), **state['reward']),
                     latency_table=state.get('latency_table'))
        for key, now in (('space', to_plain(self.space.config)),
                         ('reward', self._reward_state()),
                         ('latency_table', self._latency_state()),
                         ('archs_per_update', self.archs_per_update),
                         ('failure_reward', self.failure_reward)):
            if saved[key] != now:
                raise ValueError(f'cannot resume: the saved search has {key} = {saved[key]!r}, '
                                 f'this config {now!r}; resume with the config the search '
                                 f'started with, or use a new work dir')
        self.ppo.load_state_dict(state['ppo'])
        self.generator.set_state(state['generator'])
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
