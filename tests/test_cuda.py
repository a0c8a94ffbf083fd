"""CUDA checks of the attention path and mixed precision. They need a GPU, so they are skipped
(with that reason shown by ``pytest -ra``) on CPU-only machines such as CI."""
import pytest
import torch

from uninet_mm import UniNet

from .conftest import tiny_arch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')


def _relative_error(actual, expected):
    return ((actual.float() - expected.float()).abs().max() / expected.float().abs().max()).item()


@pytest.mark.parametrize('gop, dsm', [('SA', 'LG'), ('LSA', 'G'), ('DWConv', 'L')])
def test_cuda_matches_cpu(gop, dsm, monkeypatch):
    # Ampere+ GPUs run fp32 convs in TF32 by default (about 3e-4 relative error, seen on an
    # H100 even for DWConv-only models); compare true fp32 against the CPU.
    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', False)
    monkeypatch.setattr(torch.backends.cuda.matmul, 'allow_tf32', False)
    arch = tiny_arch({4: dict(gop=gop, dsm=dsm), 5: dict(gop=gop, dsm=dsm)})
    model = UniNet(arch, out_indices=(1, 2, 4, 5)).eval()
    x = torch.randn(2, 3, 97, 131)
    with torch.no_grad():
        expected = model(x)
        actual = model.cuda()(x.cuda())
    for out, ref in zip(actual, expected):
        assert _relative_error(out.cpu(), ref) < 1e-4


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_autocast_training_step_is_finite_and_close(dtype):
    torch.manual_seed(0)
    model = UniNet('b1', drop_path_rate=0.0).cuda().train()
    x = torch.randn(2, 3, 256, 320, device='cuda')
    reference = [o.detach() for o in model(x)]
    with torch.autocast('cuda', dtype=dtype):
        outs = model(x)
        loss = sum(o.float().pow(2).mean() for o in outs)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    tolerance = 3e-2 if dtype == torch.bfloat16 else 1e-2
    for out, ref in zip(outs, reference):
        assert _relative_error(out, ref) < tolerance


def test_fused_attention_kernels_cover_every_attention_module():
    """With the math fallback disabled, SA, LSA, LG-DSM and G-DSM still run: attention memory
    does not grow with the square of the token count."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    arch = tiny_arch({3: dict(gop='LSA', dsm='G')})
    model = UniNet(arch).cuda().eval()
    x = torch.randn(1, 3, 800, 1333, device='cuda')
    with torch.no_grad(), torch.autocast('cuda', dtype=torch.float16), \
            sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]):
        outs = model(x)
    assert all(torch.isfinite(o).all() for o in outs)


def test_b3_detection_resolution_memory():
    """B3 forward+backward at 800x1333 under fp16 autocast fits well below quadratic memory."""
    model = UniNet('b3').cuda().train()
    x = torch.randn(2, 3, 800, 1333, device='cuda')
    torch.cuda.reset_peak_memory_stats()
    with torch.autocast('cuda', dtype=torch.float16):
        loss = sum(o.float().mean() for o in model(x))
    loss.backward()
    peak_gib = torch.cuda.max_memory_allocated() / 2**30
    print(f'B3 800x1333 batch 2 fp16 train step peak memory: {peak_gib:.2f} GiB')
    # A materialised stage-4 LG-DSM attention map alone (2 x 5 heads x 4.2k x 16.7k fp16)
    # would take 1.3 GiB per copy; the whole step stays far below what that implies.
    assert peak_gib < 12


def test_queued_timing_separates_gpu_time_from_launches():
    """The latency table times a CUDA piece with the GPU queue filled first: a launch-bound
    piece (many tiny kernels) then shows its GPU time well below its host time and below a
    plain CUDA-event timing, and pipelining the pieces predicts a network of them better than
    summing plain timings (which count every piece's launching, hidden inside the network)."""
    from statistics import median

    from uninet_mm.search.latency import Timer, pipelined_ms

    settings = dict(device='cuda', threads=None)
    small = torch.randn(64, device='cuda')
    mid = torch.randn(2048, 2048, device='cuda')

    def launch_bound():
        for _ in range(200):
            small.add_(1e-6)

    def gpu_bound():
        for _ in range(8):
            torch.mm(mid, mid)

    def network():
        for _ in range(2):
            gpu_bound()
            launch_bound()

    queued, plain = Timer(settings, queued=True), Timer(settings)
    for step in (launch_bound, gpu_bound, network):
        step()
    light = [(queued(launch_bound), queued.host_ms) for _ in range(5)]
    heavy = [(queued(gpu_bound), queued.host_ms) for _ in range(5)]
    light_gpu, light_host = (median(x) for x in zip(*light))
    heavy_gpu, heavy_host = (median(x) for x in zip(*heavy))
    plain_light = median([plain(launch_bound) for _ in range(5)])
    plain_heavy = median([plain(gpu_bound) for _ in range(5)])
    whole = median([plain(network) for _ in range(5)])
    assert light_gpu < 0.5 * light_host and light_gpu < 0.5 * plain_light
    predicted = pipelined_ms([(heavy_gpu, heavy_host), (light_gpu, light_host)] * 2)
    summed = 2 * (plain_heavy + plain_light)
    print(f'whole {whole:.3f} ms, pipelined {predicted:.3f} ms, summed {summed:.3f} ms')
    assert predicted == pytest.approx(whole, rel=0.15)
    assert abs(predicted - whole) < abs(summed - whole)


def test_separable_roi_align_calls_mmcvs_kernel_on_cuda():
    """On a GPU SeparableRoIAlign is mmcv's kernel: the same features as the CPU path."""
    from uninet_mm.ops import SeparableRoIAlign
    layer = SeparableRoIAlign(7, spatial_scale=0.25, sampling_ratio=0)
    x = torch.randn(2, 8, 40, 52)
    rois = torch.tensor([[0, 3.0, 5.0, 90.0, 70.0], [1, 50.0, 20.0, 200.0, 150.0]])
    torch.testing.assert_close(layer(x.cuda(), rois.cuda()).cpu(), layer(x, rois),
                               rtol=1e-5, atol=1e-5)
