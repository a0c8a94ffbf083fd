"""UniNet-B0 with one DSM everywhere (paper Table 10) and the attention-DSM options it uses."""
import pytest
import torch
from torch import nn

from uninet_mm.models.backbones import UniNetDSMAblation
from uninet_mm.models.layers import DOWNSAMPLE_MODULES
from uninet_mm.models.layers.downsample import (GlobalDownsample, LocalDownsample,
                                                LocalGlobalDownsample)
from uninet_mm.utils.flops import model_complexity

from .conftest import tiny_arch

KINDS = {'L': LocalDownsample, 'LG': LocalGlobalDownsample, 'G': GlobalDownsample}


class _Classifier(nn.Module):
    """The mmpretrain classifier of configs/ablations: backbone, head conv, pool, Linear."""

    def __init__(self, **kwargs):
        super().__init__()
        self.backbone = UniNetDSMAblation(arch='b0', out_indices=(6, ), with_head_conv=True,
                                          **kwargs)
        self.fc = nn.Linear(1280, 1000)

    def forward(self, x):
        return self.fc(self.backbone(x)[0].mean((2, 3)))


@pytest.mark.parametrize('dsm', ['L', 'LG', 'G'])
def test_every_stage_gets_the_dsm(dsm):
    model = UniNetDSMAblation(arch=tiny_arch({1: dict(channels=48), 2: dict(channels=80)}),
                              dsm=dsm)
    for index, stage in enumerate(model.stages):
        if index == 0:
            assert stage.downsample is None
            continue
        assert type(stage.downsample) is KINDS[dsm], index
        assert model.arch.stages[index].dsm == dsm
    if dsm != 'L':
        assert model.stages[1].downsample.num_heads == 48 // 16
        assert model.stages[1].downsample.kv_pool.kernel_size == 2  # default: the DSM's stride
        assert isinstance(model.stages[4].downsample.kv_pool, nn.Identity)  # stride 1: every token


@pytest.mark.parametrize('dsm', ['L', 'LG', 'G'])
@pytest.mark.parametrize('size', [(64, 96), (45, 70)])
def test_runs_at_non_square_sizes_with_every_out_index(dsm, size):
    model = UniNetDSMAblation(arch=tiny_arch({1: dict(channels=48)}), dsm=dsm,
                              out_indices=(0, 1, 2, 3, 4, 5, 6), with_head_conv=True)
    model.train()
    outs = model(torch.randn(2, 3, *size))
    height, width = size
    for out, stride, channels in zip(outs, (2, 4, 8, 16, 16, 32, 32),
                                     model.out_channels):
        assert out.shape == (2, channels, -(-height // stride), -(-width // stride))
    sum(o.sum() for o in outs).backward()
    grads = [p.grad for stage in model.stages[1:] for p in stage.downsample.parameters()]
    assert all(g is not None for g in grads)


def test_frozen_stages_cover_the_replaced_dsms():
    model = UniNetDSMAblation(arch=tiny_arch(), dsm='LG', frozen_stages=3)
    model.train()
    assert not any(p.requires_grad for p in model.stages[2].downsample.parameters())
    assert all(p.requires_grad for p in model.stages[3].downsample.parameters())


def test_bad_dsm_is_refused():
    with pytest.raises(ValueError, match='dsm must be one of'):
        UniNetDSMAblation(arch='b0', dsm='X')
    with pytest.raises(ValueError, match='one int per DSM'):
        UniNetDSMAblation(arch='b0', dsm='LG', dsm_kv_strides=(4, 2))
    with pytest.raises(ValueError, match='divisible by head_dim 32'):
        UniNetDSMAblation(arch='b0', dsm='LG', dsm_head_dim=32)


# Counted with uninet_mm.utils.flops at 160x160, 1000 classes (docs/dsm_ablations.md):
# (dsm, dsm_kv_strides) -> (params, GFLOPs). The configs use (4, 2, 1, 1, 1).
B0_ABLATION_COUNTS = {
    ('L', None): (11_268_208, 0.5382),
    ('LG', (4, 2, 1, 1, 1)): (11_508_000, 0.6736),
    ('G', (4, 2, 1, 1, 1)): (11_647_104, 0.6884),
    ('LG', 'stride'): (11_508_000, 0.8410),
    ('LG', None): (11_508_000, 1.6961),
}


@pytest.mark.parametrize('dsm,kv_strides', list(B0_ABLATION_COUNTS))
def test_b0_ablation_counts(dsm, kv_strides):
    """The numbers docs/dsm_ablations.md and configs/ablations quote (paper: L 11.3M / 0.54G,
    G 12.7M / 0.77G, LG 14.1M / 0.72G)."""
    params, gflops = B0_ABLATION_COUNTS[dsm, kv_strides]
    model = _Classifier(dsm=dsm, dsm_kv_strides=kv_strides).eval()
    result = model_complexity(model, torch.randn(1, 3, 160, 160))
    assert result['params'] == params
    assert result['flops'] / 1e9 == pytest.approx(gflops, abs=5e-5)


# ---------------------------------------------------------------- attention DSM keywords
def _attention_flops(module, x):
    by_op = model_complexity(module, x)['flops_by_operator']
    return by_op['scaled_dot_product_attention']


@pytest.mark.parametrize('kind', ['LG', 'G'])
def test_kv_stride_pools_the_keys(kind):
    x = torch.randn(1, 32, 15, 22)
    plain = DOWNSAMPLE_MODULES[kind](32, 64, 2).eval()
    pooled = DOWNSAMPLE_MODULES[kind](32, 64, 2, kv_stride=2).eval()
    pooled.load_state_dict(plain.state_dict())
    queries = 8 * 11
    assert _attention_flops(plain, x) == 2 * queries * (15 * 22) * 64  # every input token
    assert _attention_flops(pooled, x) == 2 * queries * (8 * 11) * 64  # ceil(15/2) x ceil(22/2)
    # kv_stride=k is the plain module applied to keys from the average-pooled map.
    with torch.no_grad():
        expected_kv = plain.kv(plain.kv_norm(
            nn.functional.avg_pool2d(x, 2, 2, ceil_mode=True).flatten(2).transpose(1, 2)))
        captured = {}
        pooled.kv.register_forward_hook(lambda m, i, o: captured.setdefault('kv', o))
        out = pooled(x)
    assert torch.allclose(captured['kv'], expected_kv, atol=1e-6)
    assert out.shape == plain(x).shape == (1, 64, 8, 11)


def test_head_dim_keyword():
    dsm = LocalGlobalDownsample(24, 48, 2, head_dim=16)
    assert dsm.num_heads == 3
    assert LocalGlobalDownsample(24, 64, 2).num_heads == 2  # default: heads of 32
    with pytest.raises(ValueError, match='divisible by head_dim 32'):
        LocalGlobalDownsample(24, 48, 2)
    out = dsm(torch.randn(1, 24, 9, 13))
    assert out.shape == (1, 48, 5, 7)
