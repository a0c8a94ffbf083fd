"""UniNet's unified architecture search (paper section 3): the search space, an LSTM
controller trained with PPO, and MnasNet's accuracy/FLOPs reward."""
from .controller import LSTMController
from .ppo import PPOTrainer
from .reward import DEFAULT_ALPHA, DEFAULT_TARGET_FLOPS, MnasReward, mnas_reward
from .space import (DEFAULT_BASE_ARCH, PRESETS, Decision, SearchSpace, SearchSpaceError,
                    round_channels)

__all__ = ['LSTMController', 'PPOTrainer', 'MnasReward', 'mnas_reward', 'DEFAULT_ALPHA',
           'DEFAULT_TARGET_FLOPS', 'DEFAULT_BASE_ARCH', 'PRESETS', 'Decision', 'SearchSpace',
           'SearchSpaceError', 'round_channels']
