"""Proximal Policy Optimisation of the search controller.

Hyper-parameters and where they come from:

* Adam, learning rate 3.5e-4; entropy bonus weight 1e-5; baseline = exponential moving
  average of past rewards with decay 0.95; updates on ~20 architectures: MnasNet / NASNet.
* clip 0.2 (the PPO paper's value), epochs per update 4, minibatch order and the baseline's
  per-architecture update rule: ours; neither paper states them.

One :meth:`PPOTrainer.update` takes the architectures scored since the last update (their
tokens, the log-probabilities they were sampled with, their rewards) and runs ``epochs``
passes of the clipped surrogate over minibatches of ``batch_size`` of them, in the order
given (they are i.i.d. samples, so shuffling would add RNG state and nothing else).
"""
from typing import Any, Dict, Optional

import torch

from .checks import is_int, is_number
from .controller import LSTMController

#: Settings a resumed trainer must share with the one that was saved.
_HPARAMS = ('lr', 'clip', 'entropy_weight', 'baseline_decay', 'epochs', 'batch_size')


class PPOTrainer:
    """Trains an :class:`LSTMController` with PPO on (tokens, old log-probs, rewards).

    Args:
        controller: the policy.
        lr: Adam learning rate (MnasNet: 3.5e-4).
        clip: PPO ratio clip epsilon (ours: 0.2).
        entropy_weight: weight of the entropy bonus (MnasNet: 1e-5).
        baseline_decay: decay of the reward moving average (NASNet: 0.95), updated once per
            architecture in the order given, after the advantages of an update are taken.
            The first update starts it at its batch's mean reward.
        epochs: passes over one update's architectures (ours: 4).
        batch_size: architectures per gradient step (MnasNet: about 20).
    """

    def __init__(self, controller: LSTMController, lr: float = 3.5e-4, clip: float = 0.2,
                 entropy_weight: float = 1e-5, baseline_decay: float = 0.95, epochs: int = 4,
                 batch_size: int = 20):
        checks = [
            ('lr', lr, is_number(lr, 0), 'a number >= 0'),
            ('clip', clip, is_number(clip) and clip > 0, 'a number > 0'),
            ('entropy_weight', entropy_weight, is_number(entropy_weight, 0), 'a number >= 0'),
            ('baseline_decay', baseline_decay,
             is_number(baseline_decay, 0) and baseline_decay < 1, 'in [0, 1)'),
            ('epochs', epochs, is_int(epochs, 1), 'an int >= 1'),
            ('batch_size', batch_size, is_int(batch_size, 1), 'an int >= 1'),
        ]
        for name, value, ok, allowed in checks:
            if not ok:
                raise ValueError(f'PPO {name} = {value!r} is invalid; it must be {allowed}')
        self.controller = controller
        self.lr = float(lr)
        self.clip = float(clip)
        self.entropy_weight = float(entropy_weight)
        self.baseline_decay = float(baseline_decay)
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = torch.optim.Adam(controller.parameters(), lr=self.lr)
        #: Moving average of rewards; None until the first update.
        self.baseline: Optional[float] = None
        self.num_updates = 0
        self.num_steps = 0

    def update(self, tokens: torch.Tensor, old_log_probs: torch.Tensor,
               rewards: torch.Tensor) -> Dict[str, float]:
        """One PPO update on ``num`` scored architectures.

        Args:
            tokens: (num, T) the sampled sequences.
            old_log_probs: (num,) their log-probabilities when sampled.
            rewards: (num,) their rewards (finite; drop failed trials or give them a reward).

        Returns:
            Statistics: mean_reward, max_reward, baseline (after the update), advantage
            (mean), loss, entropy (mean per sequence), approx_kl and clip_fraction (after the
            last step), num_updates, num_steps.
        """
        device = self.controller.start.device
        tokens = torch.as_tensor(tokens, device=device)
        old_log_probs = torch.as_tensor(old_log_probs, dtype=torch.float32, device=device)
        rewards = torch.as_tensor(rewards, dtype=torch.float32, device=device)
        num = tokens.shape[0] if tokens.dim() else 0
        if old_log_probs.shape != (num,) or rewards.shape != (num,) or not num:
            raise ValueError(f'PPO update needs tokens (num, T), old_log_probs (num,) and '
                             f'rewards (num,) with num >= 1; got {tuple(tokens.shape)}, '
                             f'{tuple(old_log_probs.shape)}, {tuple(rewards.shape)}')
        if not bool(torch.isfinite(rewards).all() & torch.isfinite(old_log_probs).all()):
            raise ValueError('PPO update got a non-finite reward or log-probability; drop '
                             'failed trials or give them a finite reward')

        if self.baseline is None:
            self.baseline = float(rewards.mean())
        advantages = rewards - self.baseline
        for reward in rewards.tolist():
            self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * reward

        losses, entropies = [], []
        for _ in range(self.epochs):
            for start in range(0, num, self.batch_size):
                part = slice(start, start + self.batch_size)
                log_probs, entropy = self.controller.evaluate(tokens[part])
                ratio = torch.exp(log_probs - old_log_probs[part])
                clipped = ratio.clamp(1 - self.clip, 1 + self.clip)
                surrogate = torch.min(ratio * advantages[part], clipped * advantages[part])
                loss = -surrogate.mean() - self.entropy_weight * entropy.mean()
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                self.num_steps += 1
                losses.append(loss.item())
                entropies.append(entropy.mean().item())
        self.num_updates += 1

        with torch.no_grad():
            log_probs, _ = self.controller.evaluate(tokens)
            ratio = torch.exp(log_probs - old_log_probs)
            approx_kl = float((old_log_probs - log_probs).mean())
            clip_fraction = float(((ratio - 1).abs() > self.clip).float().mean())
        return dict(mean_reward=float(rewards.mean()), max_reward=float(rewards.max()),
                    baseline=self.baseline, advantage=float(advantages.mean()),
                    loss=sum(losses) / len(losses), entropy=sum(entropies) / len(entropies),
                    approx_kl=approx_kl, clip_fraction=clip_fraction,
                    num_updates=self.num_updates, num_steps=self.num_steps)

    # ------------------------------------------------------------------ checkpointing
    def hparams(self) -> Dict[str, Any]:
        """The settings a checkpoint records and a resume must match."""
        return {name: getattr(self, name) for name in _HPARAMS}

    def state_dict(self) -> Dict[str, Any]:
        """Controller weights, Adam state, baseline, counters and settings (not RNG state)."""
        return dict(controller=self.controller.state_dict(),
                    optimizer=self.optimizer.state_dict(), baseline=self.baseline,
                    num_updates=self.num_updates, num_steps=self.num_steps,
                    hparams=self.hparams(), num_choices=list(self.controller.num_choices))

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; raises ValueError if the saved search used other
        decisions or PPO settings (a resumed search must continue the same search)."""
        saved_choices = list(state.get('num_choices', []))
        if saved_choices != list(self.controller.num_choices):
            raise ValueError(f'checkpoint controller has decisions {saved_choices}, this one '
                             f'{list(self.controller.num_choices)}: resume with the same '
                             f'search space')
        saved, own = state.get('hparams', {}), self.hparams()
        changed = {k: (saved.get(k), v) for k, v in own.items() if saved.get(k) != v}
        if changed:
            raise ValueError('checkpoint PPO settings differ (saved, now): '
                             + ', '.join(f'{k}={s!r} vs {n!r}' for k, (s, n) in changed.items())
                             + '; resume with the settings the search started with')
        self.controller.load_state_dict(state['controller'])
        self.optimizer.load_state_dict(state['optimizer'])
        self.baseline = state['baseline']
        self.num_updates = state['num_updates']
        self.num_steps = state['num_steps']
