"""The speed/memory paths of the backbone compute exactly what the plain modules compute:
channels_last vs NCHW, in-place inference, BN/GELU recomputation, the folded SE gate and the
separable stride-1 max-pool. Compared in float64, so any difference is a real one."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from uninet_mm import UniNet
from uninet_mm.models.layers import ConvBlock
from uninet_mm.models.layers.conv_block import max_pool3x3
from uninet_mm.models.layers.squeeze_excite import SqueezeExcite, squeeze_excite_project

from .conftest import tiny_arch

ALL_PATHS = dict(channels_last=True, recompute_norm_act=True)
PLAIN = dict(channels_last=False, recompute_norm_act=False)


def _randomize(model):
    """Non-trivial BN statistics, layer scales and last-BN weights."""
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.dtype.is_floating_point:
                continue
            if 'running_var' in name:
                t.uniform_(0.5, 2)
            elif 'running_mean' in name:
                t.normal_(0, 0.2)
            elif 'layer_scale' in name or 'project_norm.weight' in name:
                t.uniform_(0.2, 1)


def _pair(arch, **kwargs):
    fast = UniNet(arch, out_indices=(0, 1, 2, 3, 4, 5), **ALL_PATHS, **kwargs).double()
    _randomize(fast)
    plain = UniNet(arch, out_indices=(0, 1, 2, 3, 4, 5), **PLAIN, **kwargs).double()
    plain.load_state_dict(fast.state_dict())
    return fast, plain


def _train_step(model, x):
    torch.manual_seed(1)
    x = x.clone().requires_grad_()
    outs = model.train()(x)
    weights = [torch.randn(o.shape, dtype=o.dtype) for o in outs]
    sum((o * w).sum() for o, w in zip(outs, weights)).backward()
    grads = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
    return outs, x.grad, grads, dict(model.named_buffers())


@pytest.mark.parametrize('gop,dsm', [('DWConv', 'L'), ('Conv', 'LG'), ('SA', 'G'),
                                     ('LSA', 'LG')])
def test_fast_paths_match_plain_modules(gop, dsm):
    arch = tiny_arch({3: dict(gop=gop, dsm=dsm), 4: dict(gop=gop, dsm=dsm),
                      5: dict(gop=gop, dsm=dsm)})
    fast, plain = _pair(arch, drop_path_rate=0.2)
    x = torch.randn(2, 3, 45, 70, dtype=torch.float64)
    with torch.no_grad():
        for a, b in zip(fast.eval()(x), plain.eval()(x)):
            torch.testing.assert_close(a, b)
    fast_out, fast_dx, fast_grads, fast_buffers = _train_step(fast, x)
    plain_out, plain_dx, plain_grads, plain_buffers = _train_step(plain, x)
    for a, b in zip(fast_out, plain_out):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(fast_dx, plain_dx)
    assert fast_grads.keys() == plain_grads.keys()
    for key in plain_grads:
        torch.testing.assert_close(fast_grads[key], plain_grads[key], msg=key)
    for key in plain_buffers:  # running statistics and num_batches_tracked
        torch.testing.assert_close(fast_buffers[key], plain_buffers[key], msg=key)


@pytest.mark.parametrize('gop,dsm', [('DWConv', 'L'), ('Conv', 'LG'), ('SA', 'G')])
def test_inference_folds_batch_norms_exactly(gop, dsm):
    """Inference folds every eval-mode BatchNorm into its neighbouring convolution; with
    autograd on, the same model runs the plain modules."""
    arch = tiny_arch({3: dict(gop=gop, dsm=dsm), 4: dict(gop=gop, dsm=dsm)})
    model = UniNet(arch, out_indices=(0, 1, 2, 3, 4, 5), with_head_conv=True).double().eval()
    _randomize(model)
    with torch.no_grad():  # BN biases too, so every folded shift is exercised
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.bias.normal_(0, 0.5)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 37, 50, dtype=torch.float64)
    with torch.no_grad():
        folded = model(x)
    plain = model(x)
    for a, b in zip(folded, plain):
        torch.testing.assert_close(a, b)
    for key, value in model.state_dict().items():  # nothing folded into the parameters
        assert torch.equal(value, state[key]), key


def test_inference_in_place_leaves_input_and_outputs_intact():
    model = UniNet(tiny_arch(), out_indices=(0, 1, 2, 3, 4, 5)).eval()
    _randomize(model)
    x = torch.randn(1, 3, 40, 52)
    x_copy = x.clone()
    with torch.no_grad():
        in_place = model(x)
    with torch.enable_grad():  # autograd on: every op out of place
        reference = model(x)
    assert torch.equal(x, x_copy)
    for a, b in zip(in_place, reference):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('channels_last', [None, True, False])
def test_outputs_are_nchw_contiguous(channels_last):
    """Consumers such as mmcv's CPU RoIAlign read raw NCHW memory."""
    model = UniNet(tiny_arch(), out_indices=(0, 1, 2, 3, 4, 5), channels_last=channels_last)
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        assert all(o.is_contiguous() for o in model.eval()(x))
    assert all(o.is_contiguous() for o in model.train()(x))


@pytest.mark.parametrize('shape', [(2, 3, 7, 9), (1, 5, 1, 1), (1, 4, 2, 6)])
def test_separable_max_pool_is_exact(shape):
    x = torch.randn(*shape).contiguous(memory_format=torch.channels_last)
    x[0, 0, 0, 0] = float('nan')
    expected = F.max_pool2d(x, 3, 1, 1)
    torch.testing.assert_close(max_pool3x3(x), expected, equal_nan=True)


def test_folded_se_projection_gradcheck():
    se = SqueezeExcite(8).double()
    proj = torch.nn.Conv2d(8, 4, 1).double()
    x = torch.randn(2, 8, 3, 5, dtype=torch.float64).contiguous(
        memory_format=torch.channels_last).requires_grad_()
    torch.testing.assert_close(squeeze_excite_project(x, se, proj), proj(se(x)))
    params = [x, *se.parameters(), *proj.parameters()]
    assert torch.autograd.gradcheck(lambda *_: squeeze_excite_project(x, se, proj), params)


def test_recompute_keeps_fewer_activations(monkeypatch):
    """Bytes that one DWConv block keeps for backward: recomputation keeps under half."""
    from uninet_mm.models.layers import recompute
    storages = {}

    def record(t):
        if isinstance(t, torch.Tensor):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    inner_pack = recompute.ActivationRecompute._pack
    monkeypatch.setattr(recompute.ActivationRecompute, '_pack',
                        lambda self, t: record(inner_pack(self, t)))

    def saved_bytes(enabled):
        storages.clear()
        block = ConvBlock(16, 16, 6, recompute=enabled).train()
        x = torch.randn(2, 16, 32, 32).contiguous(memory_format=torch.channels_last)
        with torch.autograd.graph.saved_tensors_hooks(record, lambda t: t):
            out = block(x.requires_grad_())  # outer hooks: the ops outside the block's own
        out.sum().backward()
        return sum(storages.values())

    assert saved_bytes(True) * 2 < saved_bytes(False)


def test_benchmark_tool_runs_uninet_only(tmp_path, monkeypatch):
    tool = Path(__file__).resolve().parents[1] / 'tools' / 'analysis_tools' / \
        'benchmark_backbone.py'
    spec = importlib.util.spec_from_file_location('benchmark_backbone', tool)
    module = importlib.util.module_from_spec(spec)
    sys.modules['benchmark_backbone'] = module
    spec.loader.exec_module(module)
    out = module.main(['--models', 'uninet_b1', '--sizes', '64x96', '--device', 'cpu',
                       '--repeats', '1', '--warmup', '1', '--threads', '1',
                       '--json', str(tmp_path / 'bench.json')])
    (row,) = out['results']
    assert row['model'] == 'uninet_b1' and row['fwd_ms'] > 0 and row['train_ms'] > 0
    assert row['train_mib'] > 0 and (tmp_path / 'bench.json').is_file()


def test_training_under_bf16_autocast():
    """The hand-written SE backward steps aside under autocast; recomputation works in bf16."""
    model = UniNet(tiny_arch(), recompute_norm_act=True).train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        loss = sum(o.float().mean() for o in model(torch.randn(2, 3, 64, 96)))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_output_gradient_returns_in_channels_last():
    """NCHW gradients from the neck come back channels_last at the output boundary."""
    from uninet_mm.models.layers.common import contiguous_output
    x = torch.randn(2, 4, 3, 5).contiguous(memory_format=torch.channels_last).requires_grad_()
    seen = []
    x.register_hook(lambda grad: seen.append(grad))
    out = contiguous_output(x)
    assert out.is_contiguous() and torch.equal(out, x)
    grad = torch.randn(2, 4, 3, 5)
    out.backward(grad)
    assert seen[0].is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(x.grad, grad)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(),
                    reason='this torch build has no oneDNN: conv and GELU run separately')
@pytest.mark.parametrize('groups,kernel', [(1, 1), (12, 3)])
def test_fused_conv_gelu_matches_conv_norm_gelu(groups, kernel):
    from uninet_mm.models.layers.conv_block import folded_conv, fused_conv_gelu_available
    conv = torch.nn.Conv2d(12, 12, kernel, padding=kernel // 2, groups=groups, bias=False)
    norm = torch.nn.BatchNorm2d(12).eval()
    with torch.no_grad():
        norm.running_mean.normal_(0, 0.3)
        norm.running_var.uniform_(0.5, 2)
        norm.bias.normal_(0, 0.5)
    x = torch.randn(2, 12, 9, 14).contiguous(memory_format=torch.channels_last)
    assert fused_conv_gelu_available(x)  # the fast path is really taken here
    with torch.no_grad():
        fused = folded_conv(x, conv, norm, gelu=True)
        expected = F.gelu(norm(conv(x)))
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-6)


def test_traced_inference_matches_eager(monkeypatch):
    """torch.jit.trace (what exporters build on) records plain ops, not the oneDNN-only one,
    and whole maps, not strips whose boundaries would be frozen into the graph."""
    from uninet_mm.models.layers import conv_block
    monkeypatch.setattr(conv_block, 'STRIP_BYTES', 1024)  # strips everywhere when eager
    monkeypatch.setattr(conv_block, 'squeeze_excite_project_strips',
                        lambda *args: pytest.fail('strips while tracing'))
    model = UniNet(tiny_arch(), out_indices=(1, 2, 3)).eval()
    _randomize(model)
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        traced = torch.jit.trace(model, x, check_trace=False)  # its check re-runs eagerly
        monkeypatch.undo()
        graph = str(traced.inlined_graph)
        assert 'mkldnn' not in graph
        for a, b in zip(traced(x), model(x)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_norm_act_node_releases_its_input_after_backward():
    """The fused BN + GELU node must not keep its input map alive until the graph is freed."""
    import weakref
    from uninet_mm.models.layers.recompute import ActivationRecompute
    norm = torch.nn.BatchNorm2d(8).train()
    leaf = torch.randn(2, 8, 6, 7, requires_grad=True)
    hidden = leaf * 2  # a fresh map, like a convolution's output
    with ActivationRecompute() as recompute:
        out = recompute.norm_act(hidden, norm)
    assert type(out.grad_fn).__name__ == '_BatchNormGELUBackward'
    released = weakref.ref(hidden)
    del hidden
    grad = torch.randn_like(out)
    out.backward(grad)
    assert released() is None  # ``out`` and its graph are still alive here
    plain_leaf = leaf.detach().requires_grad_()
    plain = F.gelu(F.batch_norm(plain_leaf * 2, None, None, norm.weight, norm.bias, True))
    torch.testing.assert_close(out, plain)
    plain.backward(grad)
    torch.testing.assert_close(leaf.grad, plain_leaf.grad)


@pytest.mark.parametrize('depthwise', [True, False])
@pytest.mark.parametrize('expansion', [1, 4])
def test_inference_in_strips_matches_whole_map(monkeypatch, depthwise, expansion):
    """Large hidden maps are computed in strips of rows with a halo; the result is the
    plain modules' (float64, batch 2, a height that leaves a short last strip)."""
    from uninet_mm.models.layers import conv_block
    block = ConvBlock(6, 6 if expansion == 1 else 10, expansion, depthwise=depthwise).double()
    _randomize(block)
    with torch.no_grad():
        for module in block.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.bias.normal_(0, 0.5)
    block.eval()
    x = torch.randn(2, 6, 37, 11, dtype=torch.float64).contiguous(
        memory_format=torch.channels_last)
    row_bytes = 2 * 6 * expansion * 11 * 8
    monkeypatch.setattr(conv_block, 'STRIP_BYTES', row_bytes * 9)  # at most 9 rows a strip
    assert conv_block.strip_rows(row_bytes, 37) == 8  # 5 strips: 8, 8, 8, 8, 5 rows
    calls = []
    inner = conv_block.squeeze_excite_project_strips
    monkeypatch.setattr(conv_block, 'squeeze_excite_project_strips',
                        lambda strips, *a: calls.append(len(strips)) or inner(strips, *a))
    with torch.no_grad():
        strips = block(x)
    assert calls == [5]
    plain = block(x)  # autograd on: the plain modules
    torch.testing.assert_close(strips, plain)
    assert strips.is_contiguous(memory_format=torch.channels_last)
