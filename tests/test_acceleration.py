"""The speed/memory layer (``uninet_mm.models.acceleration``) computes what the plain modules
compute: the BN-fused inference copy, channels_last and selective activation checkpointing,
compared with the plain model in float64 (forward, input and parameter gradients, running
statistics), so any difference is a real one."""
import ctypes
import ctypes.util

import pytest
import torch
from torch import nn

from uninet_mm import UniNet
from uninet_mm.models.acceleration import (accelerate, fold_batch_norm, fuse_for_inference,
                                           to_channels_last)
from uninet_mm.models.layers import ConvBlock, ConvNormAct
from uninet_mm.models.layers.downsample import LocalBranch

from .conftest import tiny_arch

ALL_OUT = (0, 1, 2, 3, 4, 5)
MIXED_ARCHS = [('DWConv', 'L'), ('Conv', 'LG'), ('SA', 'G'), ('LSA', 'LG')]


def _arch(gop, dsm):
    return tiny_arch({3: dict(gop=gop, dsm=dsm), 4: dict(gop=gop, dsm=dsm),
                      5: dict(gop=gop, dsm=dsm)})


def _randomize(model):
    """Non-trivial BN statistics and affines, layer scales and last-BN weights."""
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
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.bias.normal_(0, 0.5)


def _pair(arch, **kwargs):
    """(model to accelerate, plain model) with the same float64 weights."""
    model = UniNet(arch, out_indices=ALL_OUT, **kwargs).double()
    _randomize(model)
    plain = UniNet(arch, out_indices=ALL_OUT,
                   **{k: v for k, v in kwargs.items() if k != 'with_cp'}).double()
    plain.load_state_dict(model.state_dict())
    return model, plain


def _train_step(model, x):
    torch.manual_seed(1)  # same drop-path masks for both models
    x = x.clone().requires_grad_()
    outs = model.train()(x)
    weights = [torch.randn(o.shape, dtype=o.dtype) for o in outs]
    sum((o * w).sum() for o, w in zip(outs, weights)).backward()
    grads = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
    return outs, x.grad, grads, {k: b.clone() for k, b in model.named_buffers()}


def _assert_same_train_step(model, plain, x):
    outs, dx, grads, buffers = _train_step(model, x)
    plain_outs, plain_dx, plain_grads, plain_buffers = _train_step(plain, x)
    for a, b in zip(outs, plain_outs):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(dx, plain_dx)
    assert grads.keys() == plain_grads.keys()
    for key in plain_grads:
        torch.testing.assert_close(grads[key], plain_grads[key], msg=key)
    for key in plain_buffers:  # running statistics and num_batches_tracked
        torch.testing.assert_close(buffers[key], plain_buffers[key], msg=key)


# ---------------------------------------------------------------------------- BN folding
@pytest.mark.parametrize('gop,dsm', MIXED_ARCHS)
def test_fused_inference_matches_plain_model(gop, dsm):
    model = UniNet(_arch(gop, dsm), out_indices=ALL_OUT, with_head_conv=True).double().eval()
    _randomize(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fuse_for_inference(model)
    x = torch.randn(2, 3, 37, 50, dtype=torch.float64)
    with torch.no_grad():
        for a, b in zip(fused(x), model(x)):
            torch.testing.assert_close(a, b)
    for key, value in model.state_dict().items():  # the original is untouched
        assert torch.equal(value, state[key]), key
    # every BatchNorm of the convolutional parts is gone from the copy
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())


#: Every layer that owns a BatchNorm fold, in each of its forms.
FUSIBLE_LAYERS = {
    'ConvNormAct': lambda: ConvNormAct(4, 6, 3, 2, None),
    'ConvBlock with expansion': lambda: ConvBlock(4, 6, 4.0),
    'ConvBlock without expansion, dense': lambda: ConvBlock(6, 6, 1.0, depthwise=False),
    'LocalBranch': lambda: LocalBranch(4, 8, 2, None),
}


@pytest.mark.parametrize('name', FUSIBLE_LAYERS)
def test_each_layer_fuses_its_own_batch_norms(name):
    layer = FUSIBLE_LAYERS[name]().double()
    _randomize(layer)
    layer.eval()
    x = torch.randn(2, 4 if 'without' not in name else 6, 9, 11, dtype=torch.float64)
    with torch.no_grad():
        expected = layer(x)
        layer.fuse()
        torch.testing.assert_close(layer(x), expected)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in layer.modules())


def test_fuse_for_inference_calls_any_fusible_layer():
    """The walk knows only the FusibleModule interface, so a layer from elsewhere plugs in."""
    from uninet_mm.models.layers.fusion import FusibleModule

    class Custom(FusibleModule):
        def __init__(self):
            super().__init__()
            self.fused = False

        def fuse(self):
            self.fused = True

    model = nn.Sequential(nn.Conv2d(3, 3, 1), Custom())
    fused = fuse_for_inference(model)
    assert fused[1].fused and not model[1].fused and not fused.training
    with pytest.raises(NotImplementedError, match='fuse'):
        FusibleModule().fuse()


def test_fold_batch_norm_before_and_after_a_1x1_conv():
    conv = nn.Conv2d(6, 10, 1, bias=False).double()
    before, after = nn.BatchNorm2d(6).double().eval(), nn.BatchNorm2d(10).double().eval()
    _randomize(nn.ModuleList([before, after]))
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(fold_batch_norm(conv, after, before)(x),
                                   after(conv(before(x))))
    with pytest.raises(ValueError, match='1x1'):
        fold_batch_norm(nn.Conv2d(6, 6, 3, padding=1), after, before)


# ---------------------------------------------------------------------------- layout
@pytest.mark.parametrize('gop,dsm', MIXED_ARCHS)
def test_channels_last_matches_plain_model(gop, dsm):
    model, plain = _pair(_arch(gop, dsm), drop_path_rate=0.2)
    to_channels_last(model)
    x = torch.randn(2, 3, 45, 70, dtype=torch.float64)
    with torch.no_grad():
        for a, b in zip(model.eval()(x), plain.eval()(x)):
            torch.testing.assert_close(a, b)
    _assert_same_train_step(model, plain, x)


def test_channels_last_keeps_gradients_in_its_layout():
    """NCHW gradients that come back to the NCHW outputs enter each stage channels_last."""
    model = to_channels_last(UniNet(tiny_arch(), out_indices=(1, 3)))
    seen = []

    def record(module, args, out):  # registered after to_channels_last's: runs after it
        out.register_hook(seen.append)

    for stage in model.stages:
        stage.register_forward_hook(record)
    outs = model.train()(torch.randn(1, 3, 32, 48))
    assert all(o.is_contiguous() for o in outs)
    torch.autograd.backward(outs, [torch.randn(o.shape) for o in outs])
    assert seen and all(g.is_contiguous(memory_format=torch.channels_last) for g in seen)


@pytest.mark.parametrize('accelerated', [False, True])
def test_outputs_are_nchw_contiguous(accelerated):
    """Consumers such as mmcv's CPU RoIAlign read raw NCHW memory."""
    model = UniNet(tiny_arch(), out_indices=ALL_OUT)
    if accelerated:
        model = to_channels_last(model)
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        assert all(o.is_contiguous() for o in model.eval()(x))
    assert all(o.is_contiguous() for o in model.train()(x))


def test_accelerate_inference_is_a_fused_channels_last_copy():
    model = UniNet(tiny_arch(), out_indices=ALL_OUT).eval()
    _randomize(model)
    fast = accelerate(model, inference=True)
    assert fast is not model and model.stem.conv.weight.is_contiguous()
    assert fast.stem.conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(1, 3, 40, 52)
    with torch.no_grad():
        for a, b in zip(fast(x), model(x)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------- memory
@pytest.mark.parametrize('gop,dsm', MIXED_ARCHS)
def test_selective_checkpointing_matches_plain_model(gop, dsm):
    """Same outputs, gradients and running statistics (BN statistics are updated once)."""
    model, plain = _pair(_arch(gop, dsm), drop_path_rate=0.2, with_cp='selective')
    _assert_same_train_step(model, plain, torch.randn(2, 3, 45, 70, dtype=torch.float64))


def _malloc_in_use() -> int:
    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            'arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks', 'fsmblks',
            'uordblks', 'fordblks', 'keepcost')]
    libc = ctypes.CDLL(ctypes.util.find_library('c'))
    libc.mallinfo2.restype = MallInfo2
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd


def _glibc_has_mallinfo2() -> bool:
    name = ctypes.util.find_library('c')
    return bool(name) and hasattr(ctypes.CDLL(name), 'mallinfo2')


@pytest.mark.skipif(not _glibc_has_mallinfo2(), reason='needs glibc >= 2.33 (mallinfo2)')
def test_checkpointing_keeps_fewer_activations():
    """Heap bytes the autograd graph holds after the forward pass of a DWConv model:
    selective checkpointing keeps clearly less than the plain model, full checkpointing far
    less. Each model runs one step first, so the allocator's heap is warm and the reading is
    the same from run to run (measured on a 2-core AMD EPYC: 54.2 / 42.3 / 8.5 MiB)."""
    arch = tiny_arch({i: dict(gop='DWConv', dsm='L', expansion=4) for i in range(1, 6)})

    def held_bytes(with_cp):
        torch.manual_seed(0)
        model = UniNet(arch, with_cp=with_cp).train()
        x = torch.randn(2, 3, 192, 256, requires_grad=True)
        for _ in range(2):  # the second reading is taken on a warm heap
            before = _malloc_in_use()
            outs = model(x)
            held = _malloc_in_use() - before
            sum(o.sum() for o in outs).backward()
            del outs
        return held

    plain, selective, full = held_bytes(False), held_bytes('selective'), held_bytes(True)
    assert selective < 0.9 * plain
    assert full < 0.5 * selective


def test_with_cp_value_is_checked():
    with pytest.raises(ValueError, match='selective'):
        UniNet(tiny_arch(), with_cp='everything')


def test_training_under_bf16_autocast():
    """Channels_last + selective checkpointing train under CPU bf16 autocast."""
    model = to_channels_last(UniNet(tiny_arch(), with_cp='selective')).train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        loss = sum(o.float().mean() for o in model(torch.randn(2, 3, 64, 96)))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


# ---------------------------------------------------------------------------- compile
@pytest.mark.slow
def test_compile_fullgraph_matches_eager_in_eval_and_train():
    """torch.compile (inductor) captures the whole backbone in one graph, in eval and in train
    mode, and matches eager: outputs, input and parameter gradients, running statistics."""
    torch._dynamo.reset()
    # every block and DSM type once (LG-DSM at stride 1 and 2), and each only once: every
    # stage adds kernels to compile
    arch = dict(stem_channels=8, head_channels=16, stages=[
        dict(gop='DWConv', dsm=None, expansion=1, channels=8, repeats=1, stride=1),
        dict(gop='Conv', dsm='L', expansion=2, channels=16, repeats=1, stride=2),
        dict(gop='LSA', dsm='G', expansion=2, channels=32, repeats=1, stride=2),
        dict(gop='SA', dsm='LG', expansion=2, channels=32, repeats=1, stride=1),
        dict(gop='SA', dsm='LG', expansion=2, channels=32, repeats=1, stride=2)])
    model = UniNet(arch, out_indices=(1, 2, 4))
    _randomize(model)
    eager = UniNet(arch, out_indices=(1, 2, 4))
    eager.load_state_dict(model.state_dict())
    compiled = torch.compile(model, fullgraph=True)
    x = torch.randn(2, 3, 40, 58)
    model.eval(), eager.eval()
    with torch.no_grad():
        for a, b in zip(compiled(x), eager(x)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    model.train(), eager.train()
    results = []
    for net in (compiled, eager):
        inp = x.clone().requires_grad_()
        outs = net(inp)
        sum((o * o).sum() for o in outs).backward()
        results.append((outs, inp.grad))
    (outs, dx), (eager_outs, eager_dx) = results
    for a, b in zip(outs, eager_outs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(dx, eager_dx, rtol=1e-3, atol=1e-4)
    eager_params = dict(eager.named_parameters())
    # a bias right before a train-mode BN has a zero gradient up to rounding, whose size
    # follows the model's gradient scale: tolerances are relative to that scale
    scale = max(p.grad.abs().max().item() for p in eager_params.values())
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, eager_params[name].grad, rtol=1e-3,
                                   atol=1e-4 * scale, msg=name)
    eager_buffers = dict(eager.named_buffers())
    for name, buffer in model.named_buffers():
        torch.testing.assert_close(buffer, eager_buffers[name], msg=name)


# ---------------------------------------------------------------------------- config switch
def test_acceleration_hook_converts_and_fuses_for_test():
    import logging
    from types import SimpleNamespace

    from mmengine.registry import HOOKS

    class Detector(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = UniNet(tiny_arch(), out_indices=(1, 2))
            self.neck = nn.Conv2d(32, 8, 3)

    detector = Detector().eval()
    _randomize(detector.backbone)
    plain_backbone = detector.backbone
    x = torch.randn(1, 3, 40, 52)
    with torch.no_grad():
        expected = detector.backbone(x)
    hook = HOOKS.build(dict(type='UniNetAccelerationHook'))
    runner = SimpleNamespace(model=detector, logger=logging.getLogger('test'))
    hook.before_train(runner)
    assert all(p.is_contiguous(memory_format=torch.channels_last)
               for p in detector.backbone.parameters() if p.ndim == 4)
    # the neck stays NCHW: mmcv's CPU RoIAlign misreads channels_last maps
    assert not detector.neck.weight.is_contiguous(memory_format=torch.channels_last)
    assert any(isinstance(m, nn.BatchNorm2d) for m in detector.backbone.modules())
    hook.before_test(runner)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in detector.backbone.modules())
    with torch.no_grad():
        for a, b in zip(detector.backbone(x), expected):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    hook.after_test(runner)  # the trainable backbone is back
    assert detector.backbone is plain_backbone


def test_acceleration_hook_under_ddp_costs_only_the_first_iteration(caplog):
    """The Runner wraps the model in DDP before any hook runs, so DDP's gradient buckets are
    laid out for NCHW weights when the hook converts the backbone. The hook says so, and
    DDP lays the buckets out again after the first iteration: from the second on, the 4D
    gradients (views into the buckets here) are channels_last, nothing is copied."""
    import logging
    from types import SimpleNamespace

    import torch.distributed as dist
    from mmengine.registry import HOOKS
    from torch.nn.parallel import DistributedDataParallel

    from uninet_mm.utils.tools_support import close_distributed

    from .test_dist_train import free_port

    assert not dist.is_initialized()
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{free_port()}', rank=0,
                            world_size=1)
    try:
        class Detector(nn.Module):
            def __init__(self):
                super().__init__()
                self.backbone = UniNet(tiny_arch())

            def forward(self, x):
                return sum(out.sum() for out in self.backbone(x))

        detector = Detector()
        detector_ddp = DistributedDataParallel(detector, gradient_as_bucket_view=True)
        runner = SimpleNamespace(model=detector_ddp, logger=logging.getLogger('test.ddp'))
        with caplog.at_level(logging.INFO, logger='test.ddp'):
            HOOKS.build(dict(type='UniNetAccelerationHook')).before_train(runner)
        assert 'Grad strides do not match bucket view strides' in caplog.text
        caplog.clear()
        with caplog.at_level(logging.INFO, logger='test.ddp'):
            HOOKS.build(dict(type='UniNetAccelerationHook')).before_val(runner)
        assert 'Grad strides' not in caplog.text  # said once, when training starts
        weights = [p for p in detector.backbone.parameters() if p.ndim == 4 and p.shape[1] > 1]
        layouts = []
        for _ in range(2):
            x = torch.randn(1, 3, 40, 52)
            detector_ddp(x).backward()
            layouts.append(all(w.grad.is_contiguous(memory_format=torch.channels_last)
                               for w in weights))
        assert layouts == [False, True], layouts
    finally:
        close_distributed()
