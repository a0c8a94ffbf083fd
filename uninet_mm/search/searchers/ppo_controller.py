"""The paper's searcher: an LSTM controller (:mod:`uninet_mm.search.controller`) trained with
PPO (:mod:`uninet_mm.search.ppo`) on batches of ``archs_per_update`` architectures.

On-policy: a batch is sampled at once and the next one only after every architecture of it
is scored and the PPO update has run, so at most ``archs_per_update`` trials are out at a
time. Failed trials get ``failure_reward`` and take part in the update like any other;
``failure_reward=None`` leaves them out of it.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch

from ..controller import LSTMController
from ..ppo import PPOTrainer
from .base import Searcher


class PPOSearcher(Searcher):
    """LSTM controller + PPO.

    Args:
        num_choices: choices of every decision.
        seed: seeds the controller's initial weights and its sampling generator.
        controller: kwargs of :class:`LSTMController` (the config's ``controller`` section).
        ppo: kwargs of :class:`PPOTrainer` (the config's ``ppo`` section).
        archs_per_update: architectures per PPO update (default: the PPO ``batch_size``).
    """

    name = 'ppo'
    on_policy = True

    def __init__(self, num_choices, seed: int = 0, controller: Optional[dict] = None,
                 ppo: Optional[dict] = None, archs_per_update: Optional[int] = None):
        super().__init__(num_choices, seed)
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            self.controller = LSTMController(self.num_choices, **(controller or {}))
        self.ppo = PPOTrainer(self.controller, **(ppo or {}))
        self.archs_per_update = int(archs_per_update or self.ppo.batch_size)
        self.generator = torch.Generator().manual_seed(self.seed)

    def identity(self) -> Dict[str, Any]:
        # the controller and PPO settings are checked by PPOTrainer.load_state_dict
        return dict(type=self.name)

    def propose(self, num: int) -> List[Dict[str, Any]]:
        num = min(num, self.archs_per_update)
        tokens, log_probs = self.controller.sample(num, generator=self.generator)
        return [dict(tokens=row, log_prob=log_prob)
                for row, log_prob in zip(tokens.tolist(), log_probs.tolist())]

    def observe(self, entries: List[Dict[str, Any]]) -> Optional[Dict[str, float]]:
        """One PPO update on the batch (entries with a reward); None if none has one."""
        used = [e for e in entries if e['reward'] is not None]
        if not used:
            return None
        stats = self.ppo.update(torch.tensor([e['tokens'] for e in used]),
                                torch.tensor([e['log_prob'] for e in used]),
                                torch.tensor([float(e['reward']) for e in used]))
        return dict(stats, num_archs=len(used))

    def state_dict(self) -> Dict[str, Any]:
        return dict(ppo=self.ppo.state_dict(), generator=self.generator.get_state())

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.ppo.load_state_dict(state['ppo'])
        self.generator.set_state(state['generator'])
