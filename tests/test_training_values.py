"""Value checks of training behaviour: stochastic depth, eval-mode BatchNorms while training
(``norm_eval`` / ``frozen_stages``, the usual fine-tuning set-up) and bf16 autocast on the CPU.
"""
import copy

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from uninet_mm import UniNet
from uninet_mm.models.acceleration import to_channels_last
from uninet_mm.models.layers import ConvBlock, DropPath

from .conftest import tiny_arch


# ----------------------------------------------------------------------------- stochastic depth
def test_drop_path_drops_whole_samples_and_rescales():
    keep = 0.75
    drop = DropPath(1 - keep).train()
    x = torch.rand(512, 4, 3, 5) + 0.5
    out = drop(x)
    kept = torch.isclose(out, x / keep, rtol=1e-6, atol=0).flatten(1).all(1)
    dropped = (out == 0).flatten(1).all(1)
    assert (kept ^ dropped).all()  # every sample: all kept (rescaled) or all dropped
    assert 0.65 < kept.float().mean() < 0.85  # 512 Bernoulli(0.75) draws
    assert torch.allclose(out.mean(), x.mean(), rtol=0.1)  # the rescale keeps the expectation
    assert drop.eval()(x) is x


def test_conv_block_drop_path_in_training():
    """output_i = x_i + branch_i / keep for kept samples and x_i for dropped ones, with the
    branch the block computes without drop path (same batch statistics)."""
    torch.manual_seed(0)
    keep = 0.5
    block = ConvBlock(16, 16, expansion=2, drop_path=1 - keep).train()
    nn.init.ones_(block.project_norm.weight)  # zero-initialised: the branch would be 0
    x = torch.randn(64, 16, 6, 7)
    reference = copy.deepcopy(block)
    reference.drop_path.p = 0.0
    branch = reference(x) - x
    out = block(x)
    per_sample = (out - x).flatten(1)
    kept = torch.isclose(per_sample, (branch / keep).flatten(1), atol=1e-5).all(1)
    dropped = (per_sample.abs() < 1e-6).all(1)
    assert (kept ^ dropped).all()
    assert kept.any() and dropped.any()
    assert branch.abs().max() > 0.1


def test_drop_path_rates_spaced_linearly_over_blocks():
    rate = 0.3
    model = UniNet(tiny_arch(), drop_path_rate=rate)
    rates = [m.p for m in model.modules() if isinstance(m, DropPath)]
    blocks = sum(s['repeats'] for s in tiny_arch()['stages'])
    expected = torch.linspace(0, rate, blocks).tolist()
    # one drop path per conv block, two per transformer block (same rate)
    assert sorted(set(rates)) == pytest.approx(sorted(set(expected)))
    assert max(rates) == pytest.approx(rate) and min(rates) == 0.0


# ----------------------------------------------------------------- eval-mode norms in training
SIZE = (40, 56)


def _pair(**kwargs):
    """The training speed forms (channels_last layout, selective activation checkpointing) and
    the same weights in the plain model (NCHW, everything stored), in float64."""
    torch.manual_seed(0)
    fast = to_channels_last(
        UniNet(tiny_arch(), out_indices=(1, 2, 4, 5), with_cp='selective', **kwargs).double())
    for module in fast.modules():  # non-trivial statistics and affine parameters
        if isinstance(module, _BatchNorm):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.2, 0.2)
    plain = UniNet(tiny_arch(), out_indices=(1, 2, 4, 5), **kwargs).double()
    plain.load_state_dict(fast.state_dict())
    return fast, plain


def _step(model, x):
    model.zero_grad()
    outs = model(x)
    torch.manual_seed(1)
    loss = sum((o * torch.randn_like(o)).sum() for o in outs)
    loss.backward()
    return outs, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


def _stats(model):
    return {k: v.clone() for k, v in model.state_dict().items()
            if k.endswith(('running_mean', 'running_var'))}


@pytest.mark.parametrize('kwargs', [dict(norm_eval=True), dict(frozen_stages=2),
                                    dict(norm_eval=True, frozen_stages=3)])
def test_eval_mode_norms_while_training_match_plain_modules(kwargs):
    fast, plain = _pair(**kwargs)
    fast.train()
    plain.train()
    x = torch.randn(2, 3, *SIZE, dtype=torch.float64)
    before = _stats(fast)
    outs_fast, grads_fast = _step(fast, x)
    outs_plain, grads_plain = _step(plain, x)
    for a, b in zip(outs_fast, outs_plain):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    assert grads_fast.keys() == grads_plain.keys()
    for name in grads_fast:
        torch.testing.assert_close(grads_fast[name], grads_plain[name], rtol=1e-9, atol=1e-10,
                                   msg=name)

    frozen = ['stem.'] + [f'stages.{i}.' for i in range(kwargs.get('frozen_stages', -1))]
    frozen = frozen if kwargs.get('frozen_stages', -1) >= 0 else []
    after = _stats(fast)
    for key in before:
        in_eval = kwargs.get('norm_eval') or key.startswith(tuple(frozen))
        moved = not torch.equal(before[key], after[key])
        assert moved != in_eval, key  # eval-mode norms keep their statistics, others update
    for name, param in fast.named_parameters():
        if name.startswith(tuple(frozen)):
            assert not param.requires_grad and name not in grads_fast, name
    assert any(n.startswith('stages.5.') for n in grads_fast)
    # model.train() again (as the runner calls it every epoch) keeps them in eval mode
    fast.train()
    bns = [m for n, m in fast.named_modules() if isinstance(m, _BatchNorm)
           and (kwargs.get('norm_eval') or n.startswith(tuple(frozen)))]
    assert bns and not any(m.training for m in bns)


# ---------------------------------------------------------------------------- bf16 autocast
#: Largest error allowed under bf16 autocast, relative to the largest fp32 value of each output
#: (bf16 keeps 8 significant bits, a relative step of 2^-8 = 0.4% per rounding).
BF16_REL_TOL = 0.05
#: Smallest cosine similarity of all parameter gradients under bf16 autocast to fp32's.
BF16_GRAD_COSINE = 0.95


def _rel_err(actual, expected):
    return ((actual.float() - expected).abs().max() / expected.abs().max()).item()


@pytest.mark.parametrize('train', [False, True])
def test_bf16_autocast_matches_fp32(train):
    torch.manual_seed(0)
    model = UniNet(tiny_arch(), out_indices=(1, 2, 4, 5), layer_scale_init_value=1.0)
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            nn.init.uniform_(module.weight, 0.5, 1.5)  # non-zero residual branches
    model.train(train)
    x = torch.randn(2, 3, *SIZE)
    grad_context = torch.enable_grad() if train else torch.no_grad()
    with grad_context:
        reference = model(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = model(x)
    for a, b in zip(low, reference):
        assert a.shape == b.shape and torch.isfinite(a).all()
        assert _rel_err(a, b) < BF16_REL_TOL, _rel_err(a, b)
    # the test can fail: fp16-level agreement is not what bf16 gives
    assert max(_rel_err(a, b) for a, b in zip(low, reference)) > 1e-4
    if train:
        # gradients of every parameter, as one vector: same direction within bf16 noise
        # (single tiny gradients, e.g. conv biases right before a BatchNorm, are pure noise)
        params = [p for p in model.parameters() if p.requires_grad]
        weights = [torch.randn_like(o, dtype=torch.float32) for o in reference]
        low_grads = torch.autograd.grad(sum((o.float() * w).sum() for o, w in zip(low, weights)),
                                        params, allow_unused=True)
        ref_grads = torch.autograd.grad(sum((o * w).sum() for o, w in zip(reference, weights)),
                                        params, allow_unused=True)
        pairs = [(a, b) for a, b in zip(low_grads, ref_grads) if b is not None]
        low_vec = torch.cat([a.float().flatten() for a, _ in pairs])
        ref_vec = torch.cat([b.flatten() for _, b in pairs])
        cosine = torch.nn.functional.cosine_similarity(low_vec, ref_vec, dim=0)
        assert cosine > BF16_GRAD_COSINE, cosine
        assert 0.9 < low_vec.norm() / ref_vec.norm() < 1.1
