"""The search controller: an LSTM that emits one token per decision, autoregressively.

From NASNet (arXiv 1707.07012, appendix A), which MnasNet and UniNet reuse: one LSTM layer of
100 units, one softmax classifier per decision, the previous decision fed back as the next
input, all weights initialised uniformly in [-0.1, 0.1]. Ours (not stated there): the
previous token enters through embedding rows of its own decision (decisions have different
vocabularies), and the first step reads a learned start vector.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .checks import is_int


class LSTMController(nn.Module):
    """An autoregressive policy over ``len(num_choices)`` categorical decisions.

    Step t reads the embedding of token t - 1 (a learned start vector at t = 0), advances the
    LSTM and classifies its hidden state with decision t's own softmax. The T classifiers are
    stored as one zero-padded weight (T, max choices, hidden) whose padded rows are masked to
    probability 0, so a teacher-forced pass over whole sequences is one LSTM call and one
    batched product instead of T small ones.

    Args:
        num_choices: number of choices of each decision, in emission order
            (``SearchSpace.num_choices``).
        hidden_size: LSTM width (NASNet: 100).
        init_range: every parameter starts uniform in [-init_range, init_range] (NASNet: 0.1).
    """

    def __init__(self, num_choices: Sequence[int], hidden_size: int = 100,
                 init_range: float = 0.1):
        super().__init__()
        num_choices = tuple(num_choices)
        if not num_choices or not all(is_int(n, 1) for n in num_choices):
            raise ValueError(f'num_choices must be a non-empty list of ints >= 1, '
                             f'got {num_choices!r}')
        if not is_int(hidden_size, 1):
            raise ValueError(f'hidden_size must be a positive int, got {hidden_size!r}')
        if not init_range >= 0:
            raise ValueError(f'init_range must be >= 0, got {init_range!r}')
        self.num_choices = num_choices
        self.hidden_size = hidden_size
        self.init_range = float(init_range)
        num, widest = len(num_choices), max(num_choices)
        self.start = nn.Parameter(torch.empty(1, hidden_size))
        self.lstm = nn.LSTM(hidden_size, hidden_size, batch_first=True)
        # one embedding table for all decisions; decision t's tokens start at row token_offsets[t]
        offsets = torch.tensor((0,) + num_choices[:-1]).cumsum(0)
        self.register_buffer('token_offsets', offsets, persistent=False)
        self.embedding = nn.Embedding(sum(num_choices), hidden_size)
        self.head_weight = nn.Parameter(torch.empty(num, widest, hidden_size))
        self.head_bias = nn.Parameter(torch.empty(num, widest))
        valid = torch.arange(widest)[None, :] < torch.tensor(num_choices)[:, None]
        self.register_buffer('valid_choices', valid, persistent=False)  # (T, max choices)
        self.reset_parameters()

    @property
    def num_decisions(self) -> int:
        return len(self.num_choices)

    def reset_parameters(self) -> None:
        for param in self.parameters():
            nn.init.uniform_(param, -self.init_range, self.init_range)

    def _log_softmax(self, hidden: torch.Tensor, steps: slice) -> torch.Tensor:
        """Hidden states (B, S, H) of decisions ``steps`` -> log-probabilities (B, S, max n),
        padded choices at -inf."""
        logits = (torch.einsum('bsh,snh->bsn', hidden, self.head_weight[steps])
                  + self.head_bias[steps])
        logits = logits.masked_fill(~self.valid_choices[steps], float('-inf'))
        return F.log_softmax(logits, dim=-1)

    def _entropy(self, log_probs: torch.Tensor, steps: slice) -> torch.Tensor:
        """Entropy per decision (B, S) of log-probabilities (B, S, max n)."""
        finite = log_probs.masked_fill(~self.valid_choices[steps], 0.0)  # padded: p = 0
        return -(log_probs.exp() * finite).sum(-1)

    def _embed(self, tokens: torch.Tensor, steps: slice) -> torch.Tensor:
        """Tokens (B, S) of decisions ``steps`` -> LSTM inputs (B, S, H)."""
        return self.embedding(tokens + self.token_offsets[steps])

    @torch.no_grad()
    def sample(self, num: int, generator: Optional[torch.Generator] = None,
               greedy: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
        """Sample ``num`` token sequences (or the most likely token at each step if
        ``greedy``).

        Returns:
            tokens: LongTensor (num, T); log_prob: (num,) sum of the chosen tokens'
            log-probabilities (detached: PPO's "old" log-probabilities).
        """
        if not is_int(num, 1):
            raise ValueError(f'num must be a positive int, got {num!r}')
        inputs, state = self.start.expand(num, -1)[:, None], None
        tokens, log_probs = [], []
        for step, choices in enumerate(self.num_choices):
            hidden, state = self.lstm(inputs, state)
            step_log_probs = self._log_softmax(hidden, slice(step, step + 1))[:, 0, :choices]
            if greedy:
                token = step_log_probs.argmax(-1)
            else:
                token = torch.multinomial(step_log_probs.exp(), 1, generator=generator)[:, 0]
            tokens.append(token)
            log_probs.append(step_log_probs.gather(1, token[:, None])[:, 0])
            inputs = self._embed(token[:, None], slice(step, step + 1))
        return torch.stack(tokens, 1), torch.stack(log_probs, 1).sum(1)

    def decision_log_probs(self, tokens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced pass over given sequences (num, T): per-decision log-probability of
        each token given the tokens before it, and per-decision entropy, both (num, T)."""
        tokens = self._check_tokens(tokens)
        everything = slice(0, self.num_decisions)
        inputs = torch.cat([self.start.expand(tokens.shape[0], -1)[:, None],
                            self._embed(tokens[:, :-1], slice(0, self.num_decisions - 1))], 1)
        hidden, _ = self.lstm(inputs)
        log_probs = self._log_softmax(hidden, everything)
        chosen = log_probs.gather(2, tokens[:, :, None])[:, :, 0]
        return chosen, self._entropy(log_probs, everything)

    def evaluate(self, tokens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Log-probability (num,) of whole sequences (num, T) and their summed entropy (num,),
        differentiable."""
        log_probs, entropies = self.decision_log_probs(tokens)
        return log_probs.sum(1), entropies.sum(1)

    def _check_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = torch.as_tensor(tokens, device=self.start.device)
        if tokens.dim() != 2 or tokens.shape[1] != self.num_decisions or not tokens.shape[0]:
            raise ValueError(f'tokens must have shape (num, {self.num_decisions}), '
                             f'got {tuple(tokens.shape)}')
        if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
            raise ValueError(f'tokens must be integers, got {tokens.dtype}')
        limits = torch.tensor(self.num_choices, device=tokens.device)
        if bool(((tokens < 0) | (tokens >= limits)).any()):
            raise ValueError(f'tokens out of range: decision t allows 0..num_choices[t]-1 '
                             f'with num_choices={list(self.num_choices)}')
        return tokens.long()

    def extra_repr(self) -> str:
        return f'decisions={self.num_decisions}, hidden_size={self.hidden_size}'
