"""One uniform suite over every UniNet variant and every GOP / DSM of the search space."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from uninet_mm import ARCH_SETTINGS, UniNet
from uninet_mm.models.layers import WindowSelfAttention, multi_head_attention

from .conftest import tiny_arch

# Exact counts of the reference classifier (1000 classes) and of the detection backbone.
CLASSIFIER_PARAMS = {'b0': 11_450_864, 'b1': 11_450_864, 'b2': 16_211_472, 'b3': 24_020_184,
                     'b4': 43_796_288, 'b5': 72_883_072, 'b6': 116_687_344}
BACKBONE_PARAMS = {'b0': 9_839_624, 'b1': 9_839_624, 'b2': 14_600_232, 'b3': 22_367_984,
                   'b4': 42_062_168, 'b5': 71_026_072, 'b6': 114_748_424}


def expected_shape(height, width, stride):
    """Feature size after log2(stride) stride-2 3x3 convs with padding 1 (ceil rounding)."""
    for _ in range(int(math.log2(stride))):
        height, width = math.ceil(height / 2), math.ceil(width / 2)
    return height, width


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize('arch', sorted(ARCH_SETTINGS))
def test_variant_uniform_api(arch):
    """Every variant: exact parameter counts, feature_info, shapes on a non-square input."""
    backbone = UniNet(arch)
    assert n_params(backbone) == BACKBONE_PARAMS[arch]
    classifier = UniNet(arch, out_indices=(6,), with_head_conv=True)
    assert n_params(classifier) + 1280 * 1000 + 1000 == CLASSIFIER_PARAMS[arch]

    channels = ARCH_SETTINGS[arch].stage_channels
    assert backbone.out_channels == tuple(channels[i] for i in (1, 2, 4, 5))
    assert [f['reduction'] for f in backbone.feature_info] == [4, 8, 16, 32]
    assert [f['num_chs'] for f in backbone.feature_info] == list(backbone.out_channels)

    backbone.eval()
    with torch.no_grad():
        outs = backbone(torch.randn(1, 3, 45, 70))
    assert isinstance(outs, tuple) and len(outs) == 4
    for out, info in zip(outs, backbone.feature_info):
        assert out.shape == (1, info['num_chs'], *expected_shape(45, 70, info['reduction']))
        assert torch.isfinite(out).all()


@pytest.mark.parametrize('size', [(97, 131), (33, 65), (511, 511), (64, 32), (1, 1)])
def test_any_input_size(size):
    model = UniNet('b1', out_indices=(0, 1, 2, 3, 4, 5)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    for out, stride in zip(outs, (2, 4, 8, 16, 16, 32)):
        assert out.shape[2:] == expected_shape(*size, stride)


@pytest.mark.parametrize('gop', ['DWConv', 'Conv', 'SA', 'LSA'])
@pytest.mark.parametrize('dsm', ['L', 'LG', 'G'])
def test_every_gop_and_dsm_on_non_square_input(gop, dsm):
    arch = tiny_arch({3: dict(gop=gop, dsm=dsm), 4: dict(gop=gop, dsm=dsm),
                      5: dict(gop=gop, dsm=dsm)})
    model = UniNet(arch, out_indices=(3, 4, 5))
    x = torch.randn(2, 3, 75, 133, requires_grad=True)
    outs = model(x)
    for out, stride in zip(outs, (16, 16, 32)):
        assert out.shape[2:] == expected_shape(75, 133, stride)
    sum(o.mean() for o in outs).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in model.stages[4].parameters())


def test_mlp_gop_needs_its_input_size():
    arch = tiny_arch({4: dict(gop='MLP'), 5: dict(gop='MLP')})
    model = UniNet(arch, input_size=(96, 160), out_indices=(4, 5)).eval()
    outs = model(torch.randn(1, 3, 96, 160))
    assert [o.shape[2:] for o in outs] == [(6, 10), (3, 5)]
    with pytest.raises(ValueError, match=r'built for a 6x10 feature map .* got 7x10'):
        model(torch.randn(1, 3, 112, 160))


def test_window_attention_pads_masks_and_crops():
    """LSA on a map that is not a multiple of the window equals per-window attention computed
    directly on the unpadded windows."""
    attn = WindowSelfAttention(64, window_size=4).eval()
    height, width = 6, 5
    tokens = torch.randn(2, height * width, 64)
    out = attn(tokens, (height, width))
    grid = tokens.reshape(2, height, width, 64)
    expected = torch.empty_like(grid)
    for top in range(0, height, 4):
        for left in range(0, width, 4):
            window = grid[:, top:top + 4, left:left + 4]
            h, w = window.shape[1:3]
            q, k, v = attn.qkv(window.reshape(2, h * w, 64)).chunk(3, -1)
            res = attn.proj(multi_head_attention(q, k, v, attn.num_heads))
            expected[:, top:top + 4, left:left + 4] = res.reshape(2, h, w, 64)
    torch.testing.assert_close(out, expected.reshape(2, -1, 64), rtol=1e-5, atol=1e-5)


def test_attention_goes_through_sdpa(monkeypatch):
    calls = []
    original = F.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(F, 'scaled_dot_product_attention', counting)
    arch = tiny_arch({3: dict(gop='LSA', dsm='G')})
    UniNet(arch).eval()(torch.randn(1, 3, 64, 64))
    # G-DSM + LSA block in stage 3, LG-DSM + SA block in stages 4 and 5.
    assert len(calls) == 6


def _frozen_module_state(model):
    return {k: v.clone() for k, v in model.stem.state_dict().items()}


@pytest.mark.parametrize('frozen_stages', [0, 1, 3, 6])
def test_frozen_stages_stay_frozen_after_train(frozen_stages):
    model = UniNet(tiny_arch(), frozen_stages=frozen_stages)
    model.train()
    frozen = [model.stem] + list(model.stages[:frozen_stages])
    trainable = list(model.stages[frozen_stages:])
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in frozen]
    out = model(torch.randn(2, 3, 64, 64, requires_grad=True))
    sum(o.sum() for o in out).backward()
    for module, state in zip(frozen, before):
        assert not module.training
        assert all(not p.requires_grad and p.grad is None for p in module.parameters())
        for key, value in module.state_dict().items():  # running stats untouched
            torch.testing.assert_close(value, state[key])
    for module in trainable:
        assert module.training and all(p.requires_grad for p in module.parameters())


@pytest.mark.parametrize('norm_type', ['BN', 'SyncBN'])
def test_norm_eval_keeps_batchnorm_in_eval(norm_type):
    model = UniNet(tiny_arch(), norm_eval=True, norm_cfg=dict(type=norm_type))
    model.train()
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    expected_cls = nn.SyncBatchNorm if norm_type == 'SyncBN' else nn.BatchNorm2d
    assert norms and all(isinstance(m, expected_cls) and not m.training for m in norms)
    assert model.stages[1].training  # other layers still train
    stats = norms[0].running_mean.clone()
    model(torch.randn(2, 3, 64, 64))  # SyncBN in eval mode needs no process group
    torch.testing.assert_close(norms[0].running_mean, stats)


def test_norm_cfg_requires_grad_false():
    model = UniNet(tiny_arch(), norm_cfg=dict(type='BN', requires_grad=False))
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert all(not p.requires_grad for m in norms for p in m.parameters())


def test_with_cp_gives_same_outputs_and_gradients():
    torch.manual_seed(1)
    plain = UniNet(tiny_arch(), drop_path_rate=0.0)
    checkpointed = UniNet(tiny_arch(), drop_path_rate=0.0, with_cp=True)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 96)
    grads = []
    for model in (plain, checkpointed):
        model.train()
        outs = model(x)
        sum((o ** 2).mean() for o in outs).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-6,
                                   msg=name)


def test_drop_path_rates_and_layer_scale():
    model = UniNet(tiny_arch(), drop_path_rate=0.3, layer_scale_init_value=0.5)
    rates = [b.drop_path.p for s in model.stages for b in s.blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.3)
    assert all(b >= a for a, b in zip(rates, rates[1:]))
    sa_block = model.stages[4].blocks[0]
    assert torch.all(sa_block.layer_scale1 == 0.5) and torch.all(sa_block.layer_scale2 == 0.5)
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(model(x), model(x))  # no randomness at eval


def test_head_conv_output():
    model = UniNet(tiny_arch(), out_indices=(5, 6), with_head_conv=True).eval()
    last, head = model(torch.randn(1, 3, 64, 80))
    assert head.shape == (1, 64, *last.shape[2:])
    assert model.feature_info[-1]['module'] == 'head_conv'
    assert UniNet(tiny_arch()).head_conv is None  # absent by default


def test_bf16_autocast_is_finite():
    model = UniNet(tiny_arch()).eval()
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(torch.randn(1, 3, 64, 96))
    assert all(torch.isfinite(o.float()).all() for o in outs)


# Spec section 1, multiply-adds of the classifier at the paper's input size (B5/B6 rounded).
PAPER_GFLOPS = {'b0': 0.555, 'b1': 1.118, 'b2': 2.159, 'b3': 4.258, 'b4': 9.429, 'b5': 20.4,
                'b6': 51.0}


class _Classifier(nn.Module):
    """The reference classifier: backbone with head conv, global average pool, linear."""

    def __init__(self, arch):
        super().__init__()
        self.backbone = UniNet(arch, out_indices=(6,), with_head_conv=True)
        self.fc = nn.Linear(1280, 1000)

    def forward(self, x):
        return self.fc(self.backbone(x)[0].mean((2, 3)))


@pytest.mark.parametrize('arch', sorted(PAPER_GFLOPS))
def test_flops_match_the_paper(arch):
    from uninet_mm.models.arch_settings import PAPER_INPUT_SIZES
    from uninet_mm.utils.flops import model_complexity

    size = PAPER_INPUT_SIZES[arch]
    result = model_complexity(_Classifier(arch).eval(), torch.randn(1, 3, size, size))
    assert result['flops'] / 1e9 == pytest.approx(PAPER_GFLOPS[arch], rel=0.01)
    assert result['params'] == CLASSIFIER_PARAMS[arch]
