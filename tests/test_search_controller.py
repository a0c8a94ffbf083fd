"""The LSTM controller, its PPO training and the MnasNet reward.

The learning test uses the shipped hyper-parameters (Adam lr 3.5e-4, clip 0.2, 4 epochs,
20 architectures per update) on the full 25-decision space with a synthetic reward whose
optimum is known: the fraction of decisions equal to a hidden target sequence.
"""
import copy
import math

import pytest
import torch

from uninet_mm.search import LSTMController, MnasReward, PPOTrainer, SearchSpace, mnas_reward

NUM_CHOICES = SearchSpace().num_choices  # 25 decisions: 5, 3, 5, 5, 5 per stage
UPDATES = 40                             # 800 sampled architectures
ARCHS_PER_UPDATE = 20


def hidden_target(seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1000 + seed)
    return torch.stack([torch.randint(n, (), generator=gen) for n in NUM_CHOICES])


def learning_run(seed: int, lr: float = 3.5e-4):
    """Train on the synthetic reward; returns per-update mean rewards and, for each decision,
    the policy's probability of the optimal token given the optimal tokens before it."""
    torch.manual_seed(seed)
    controller = LSTMController(NUM_CHOICES)
    trainer = PPOTrainer(controller, lr=lr)
    generator = torch.Generator().manual_seed(seed)
    target = hidden_target(seed)
    rewards = []
    for _ in range(UPDATES):
        tokens, log_probs = controller.sample(ARCHS_PER_UPDATE, generator)
        reward = (tokens == target).float().mean(1)
        rewards.append(trainer.update(tokens, log_probs, reward)['mean_reward'])
    with torch.no_grad():
        optimal = controller.decision_log_probs(target[None])[0][0].exp()
    return rewards, optimal


def learned(rewards, optimal) -> bool:
    """The criterion: the last 5 updates' mean reward is >= 0.3 above the first 5 updates'
    (random policy: ~0.22), and the optimum has probability > 0.5 on >= 80% of decisions."""
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    return last >= first + 0.3 and float((optimal > 0.5).float().mean()) >= 0.8


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_ppo_learns_a_known_optimum(seed):
    rewards, optimal = learning_run(seed)
    assert learned(rewards, optimal), (rewards, optimal)


def test_learning_criterion_fails_without_learning():
    rewards, optimal = learning_run(0, lr=0.0)
    assert not learned(rewards, optimal)
    assert abs(sum(rewards[-5:]) / 5 - sum(rewards[:5]) / 5) < 0.1


def test_controller_is_nasnet_shaped():
    controller = LSTMController(NUM_CHOICES)
    assert controller.lstm.hidden_size == 100 and controller.lstm.num_layers == 1
    for param in controller.parameters():
        assert float(param.detach().abs().max()) <= 0.1
    tokens, log_prob = controller.sample(64, torch.Generator().manual_seed(0))
    assert tokens.shape == (64, 25) and tokens.dtype == torch.long and log_prob.shape == (64,)
    limits = torch.tensor(NUM_CHOICES)
    assert bool(((tokens >= 0) & (tokens < limits)).all())
    assert set(tokens[:, 1].tolist()) <= {0, 1, 2} and len(set(tokens[:, 0].tolist())) == 5
    # the teacher-forced pass gives the sampler's log-probabilities, differentiably
    evaluated, entropy = controller.evaluate(tokens)
    assert torch.allclose(evaluated, log_prob, atol=1e-5)
    # near-uniform at init: the entropy is close to the sum of log(choices) over decisions
    assert float(entropy.detach().mean()) == pytest.approx(sum(math.log(n) for n in NUM_CHOICES),
                                                  rel=1e-3)
    (evaluated.sum() + entropy.sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in controller.parameters())
    greedy, _ = controller.sample(3, greedy=True)
    assert bool((greedy == greedy[0]).all())


def test_sampling_is_autoregressive():
    """A decision's distribution depends on the earlier tokens, not only on its position."""
    controller = LSTMController([4, 4, 4])
    first = torch.tensor([[0, 0, 0], [3, 0, 0]])
    per_decision, _ = controller.decision_log_probs(first)
    assert per_decision[0, 0] != per_decision[1, 0]
    assert not torch.allclose(per_decision[0, 1:], per_decision[1, 1:])


def test_state_dict_round_trip():
    controller = LSTMController(NUM_CHOICES)
    trainer = PPOTrainer(controller)
    gen = torch.Generator().manual_seed(5)
    for _ in range(2):  # give Adam, the baseline and the counters some state
        tokens, log_probs = controller.sample(20, gen)
        trainer.update(tokens, log_probs, torch.rand(20, generator=gen))
    state = copy.deepcopy(trainer.state_dict())

    twin = PPOTrainer(LSTMController(NUM_CHOICES))
    twin.load_state_dict(state)
    assert twin.baseline == trainer.baseline and twin.num_updates == 2

    gen_state = gen.get_state()
    results = []
    for model in (trainer, twin):
        gen.set_state(gen_state)
        tokens, log_probs = model.controller.sample(20, gen)
        stats = model.update(tokens, log_probs, torch.linspace(0, 1, 20))
        results.append((tokens, log_probs, stats, model.controller.state_dict()))
    (tok_a, lp_a, stats_a, weights_a), (tok_b, lp_b, stats_b, weights_b) = results
    assert torch.equal(tok_a, tok_b) and torch.equal(lp_a, lp_b)
    assert stats_a == stats_b
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


def test_resume_refuses_another_search():
    trainer = PPOTrainer(LSTMController(NUM_CHOICES))
    state = trainer.state_dict()
    with pytest.raises(ValueError, match='same search space'):
        PPOTrainer(LSTMController(NUM_CHOICES[:20])).load_state_dict(state)
    with pytest.raises(ValueError, match=r'lr=0.00035 vs 0.001'):
        PPOTrainer(LSTMController(NUM_CHOICES), lr=1e-3).load_state_dict(state)


def test_ppo_update_mechanics():
    controller = LSTMController([3, 3])
    trainer = PPOTrainer(controller, lr=0.05, epochs=3, batch_size=4)
    tokens, log_probs = controller.sample(10, torch.Generator().manual_seed(0))
    rewards = torch.arange(10.0)
    stats = trainer.update(tokens, log_probs, rewards)
    assert stats['num_steps'] == 3 * 3  # 3 epochs x ceil(10 / 4) minibatches
    assert stats['advantage'] == pytest.approx(0.0, abs=1e-6)  # first baseline = batch mean
    expected = 4.5
    for reward in range(10):
        expected = 0.95 * expected + 0.05 * reward
    assert trainer.baseline == pytest.approx(expected)
    assert stats['mean_reward'] == pytest.approx(4.5) and stats['max_reward'] == 9.0
    # the best architecture became more likely, the worst less likely
    new_log_probs, _ = controller.evaluate(tokens)
    assert new_log_probs[9] > log_probs[9] and new_log_probs[0] < log_probs[0]


def test_ppo_clips_the_ratio():
    """An architecture whose probability ratio is already past 1 + clip gets no gradient
    from a positive advantage (the clipped term is constant); unclipped, it does."""
    def weights_change(clip: float, reward: float) -> bool:
        controller = LSTMController([5, 5])
        trainer = PPOTrainer(controller, lr=0.01, clip=clip, epochs=1, entropy_weight=0.0)
        before = copy.deepcopy(controller.state_dict())
        tokens = torch.tensor([[1, 2]])
        with torch.no_grad():
            now, _ = controller.evaluate(tokens)
        trainer.baseline = 0.0
        trainer.update(tokens, now - 0.5, torch.tensor([reward]))  # ratio e^0.5 = 1.65
        after = controller.state_dict()
        return any(not torch.equal(before[k], after[k]) for k in before)

    assert not weights_change(clip=0.2, reward=1.0)
    assert weights_change(clip=1.0, reward=1.0)
    assert weights_change(clip=0.2, reward=-1.0)  # a worse-than-baseline one is still pushed


@pytest.mark.parametrize('kwargs, pattern', [
    (dict(lr=-1.0), 'PPO lr = -1.0'), (dict(clip=0.0), 'PPO clip = 0.0'),
    (dict(baseline_decay=1.0), r'baseline_decay = 1.0 .*\[0, 1\)'),
    (dict(epochs=0), 'epochs = 0'), (dict(batch_size=2.5), 'batch_size = 2.5'),
    (dict(entropy_weight=float('nan')), 'entropy_weight = nan')])
def test_invalid_ppo_settings(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        PPOTrainer(LSTMController([2]), **kwargs)


def test_invalid_controller_inputs():
    with pytest.raises(ValueError, match='num_choices must be a non-empty list'):
        LSTMController([])
    with pytest.raises(ValueError, match='num_choices must be a non-empty list'):
        LSTMController([3, 0])
    controller = LSTMController([3, 2])
    with pytest.raises(ValueError, match=r'shape \(num, 2\)'):
        controller.evaluate(torch.zeros(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match='out of range'):
        controller.evaluate(torch.tensor([[0, 2]]))
    trainer = PPOTrainer(controller)
    tokens, log_probs = controller.sample(2)
    with pytest.raises(ValueError, match='non-finite reward'):
        trainer.update(tokens, log_probs, torch.tensor([1.0, float('nan')]))
    with pytest.raises(ValueError, match=r'rewards \(num,\)'):
        trainer.update(tokens, log_probs, torch.tensor([1.0]))


def test_mnas_reward():
    assert mnas_reward(0.8, 550e6) == pytest.approx(0.8)
    assert mnas_reward(0.8, 1100e6) == pytest.approx(0.8 * 0.5 ** 0.07)
    assert mnas_reward(0.8, 275e6) == pytest.approx(0.8 * 2 ** 0.07)  # soft: also rewards less
    assert mnas_reward(0.8, 1e9, target=2e9, alpha=0.5) == pytest.approx(0.8 * 2 ** 0.5)
    # MnasNet's hard constraint: accuracy alone within budget, (t / f)^1 penalty above it
    assert mnas_reward(0.8, 275e6, hard=True) == pytest.approx(0.8)
    assert mnas_reward(0.8, 1100e6, hard=True) == pytest.approx(0.4)
    assert MnasReward()(0.8, 1100e6) == mnas_reward(0.8, 1100e6)


@pytest.mark.parametrize('kwargs, pattern', [
    (dict(target=0), 'target t = 0 must be a positive'),
    (dict(target=-5e8), 'target t = -500000000.0 must be a positive'),
    (dict(alpha=-0.07), 'alpha = -0.07 must be a number >= 0'),
    (dict(hard='yes'), 'hard'),
])
def test_invalid_reward_settings(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        MnasReward(**kwargs)
    with pytest.raises(ValueError, match=pattern):
        mnas_reward(0.8, 5e8, **kwargs)


def test_invalid_reward_inputs():
    with pytest.raises(ValueError, match='flops = -1.0 must be a positive'):
        mnas_reward(0.8, -1.0)
    with pytest.raises(ValueError, match='flops = 0 must be a positive'):
        mnas_reward(0.8, 0)
    with pytest.raises(ValueError, match='accuracy = nan'):
        mnas_reward(float('nan'), 5e8)
