"""SyncBN, as every shipped detection/segmentation config uses it, in a 2-process gloo run.

What torch 2.14 allows on a CPU: ``nn.SyncBatchNorm`` refuses CPU tensors in distributed training
("SyncBatchNorm expected input tensor to be on GPU ..."), and its kernels
(``torch.batch_norm_stats``, ``batch_norm_gather_stats_with_counts``, ...) exist for CUDA only.
So the real GPU kernels cannot run here. The closest honest check, done below:

* in each of 2 gloo processes, the backbone is built exactly as the shipped configs build it
  (``norm_cfg=dict(type='SyncBN')``, so its norms are ``nn.SyncBatchNorm``) and wrapped in
  DistributedDataParallel with ``broadcast_buffers=False`` (the shipped wrapper setting);
* ``nn.SyncBatchNorm.forward`` is replaced (and DDP's "SyncBatchNorm layers only work with GPU
  modules" guard lifted), in these test processes only, by a reference of the same math written
  with a differentiable all-reduce of (sum, sum of squares, count) -- what torch's CUDA kernels
  compute -- that also counts its calls;
* after two SGD steps on different halves of one batch, both ranks hold identical weights, every
  SyncBN layer was run through ``SyncBatchNorm.forward`` (none bypassed by the backbone's own
  CPU BatchNorm paths), and weights and running statistics equal those of one process with plain
  BatchNorm that sees the whole batch.

It proves the plumbing (norm layers built, routed and synchronised, DDP gradient averaging, the
global-batch statistics) on CPUs; torch's CUDA kernels themselves are only run on a GPU.
"""
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from uninet_mm import UniNet

from .conftest import tiny_arch

WORLD = 2
BATCH_PER_RANK = 2
SIZE = (40, 56)  # not square
STEPS = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def build_backbone(norm_type: str) -> UniNet:
    torch.manual_seed(0)
    return UniNet(tiny_arch(), out_indices=(1, 2, 4, 5), norm_cfg=dict(type=norm_type),
                  drop_path_rate=0.0)


def global_batch():
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(STEPS, WORLD * BATCH_PER_RANK, 3, *SIZE, generator=generator)
    return images


def loss_of(outs, rank_slice) -> torch.Tensor:
    """A fixed, non-trivial function of the outputs of the samples in ``rank_slice``."""
    total = 0
    for index, out in enumerate(outs):
        weight = torch.linspace(-1, 1, out.shape[1])[None, :, None, None] * (index + 1)
        total = total + (out[rank_slice] * weight).square().mean()
    return total


def reference_sync_bn_forward(self, x: torch.Tensor) -> torch.Tensor:
    """SyncBatchNorm's training math, for CPU tensors (test stand-in for the CUDA kernels)."""
    reference_sync_bn_forward.calls += 1
    if not (self.training and dist.is_initialized()):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            self.training, self.momentum, self.eps)
    from torch.distributed.nn.functional import all_reduce
    channels = x.shape[1]
    count = torch.full((1,), x.numel() // channels, dtype=x.dtype)
    totals = all_reduce(torch.cat([x.sum((0, 2, 3)), x.square().sum((0, 2, 3)), count]))
    num = totals[-1]
    mean = totals[:channels] / num
    var = totals[channels:2 * channels] / num - mean.square()
    with torch.no_grad():
        self.num_batches_tracked.add_(1)
        self.running_mean.mul_(1 - self.momentum).add_(mean.detach() * self.momentum)
        self.running_var.mul_(1 - self.momentum).add_(
            var.detach() * (num / (num - 1)) * self.momentum)
    shape = (1, channels, 1, 1)
    scale = torch.rsqrt(var + self.eps).reshape(shape) * self.weight.reshape(shape)
    return (x - mean.reshape(shape)) * scale + self.bias.reshape(shape)


reference_sync_bn_forward.calls = 0


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
                            world_size=WORLD)
    try:
        # torch's own SyncBatchNorm refuses CPU tensors once a process group is up.
        with pytest.raises(ValueError, match='SyncBatchNorm expected input tensor to be on GPU'):
            build_backbone('SyncBN').train()(torch.randn(2, 3, *SIZE))
        # ... and DDP refuses to wrap a CPU module holding SyncBatchNorm layers.
        with pytest.raises(ValueError, match='SyncBatchNorm layers only work with GPU modules'):
            nn.parallel.DistributedDataParallel(build_backbone('SyncBN'),
                                                broadcast_buffers=False)
        nn.SyncBatchNorm.forward = reference_sync_bn_forward
        nn.parallel.DistributedDataParallel._passing_sync_batchnorm_handle = (
            lambda self, module: None)

        model = build_backbone('SyncBN')
        num_sync = sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
        ddp = nn.parallel.DistributedDataParallel(model, broadcast_buffers=False)
        optimizer = torch.optim.SGD(ddp.parameters(), lr=0.5)
        rank_slice = slice(rank * BATCH_PER_RANK, (rank + 1) * BATCH_PER_RANK)
        calls_per_step = []
        for images in global_batch():
            before = reference_sync_bn_forward.calls
            loss = loss_of(ddp(images[rank_slice]), slice(None))
            calls_per_step.append(reference_sync_bn_forward.calls - before)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        torch.save(dict(state=model.state_dict(), num_sync=num_sync, calls=calls_per_step),
                   os.path.join(out_dir, f'rank{rank}.pth'))
    finally:
        dist.destroy_process_group()


def one_process_reference() -> dict:
    """Plain BatchNorm, the whole batch in one process, the mean of the ranks' losses."""
    torch.set_num_threads(1)
    model = build_backbone('BN').train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for images in global_batch():
        outs = model(images)
        loss = sum(loss_of(outs, slice(r * BATCH_PER_RANK, (r + 1) * BATCH_PER_RANK))
                   for r in range(WORLD)) / WORLD
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.state_dict()


@pytest.mark.slow
def test_syncbn_ddp_two_gloo_processes_match_one_process_on_the_global_batch(tmp_path):
    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f'rank{r}.pth', weights_only=True) for r in range(WORLD)]
    expected = one_process_reference()

    for result in ranks:
        # every SyncBN layer ran through SyncBatchNorm.forward in every step
        assert result['num_sync'] > 10
        assert result['calls'] == [result['num_sync']] * STEPS
    state0, state1 = ranks[0]['state'], ranks[1]['state']
    assert state0.keys() == state1.keys() == expected.keys()
    # identical weights and statistics on both ranks (the statistics are global ones)
    for key in state0:
        assert torch.equal(state0[key], state1[key]), key
    # equal to one process that saw both ranks' batches
    stats = [k for k in expected if k.endswith(('running_mean', 'running_var'))]
    assert len(stats) == 2 * ranks[0]['num_sync']
    for key in expected:
        if key.endswith('num_batches_tracked'):
            assert int(state0[key]) == int(expected[key]) == STEPS, key
        else:
            torch.testing.assert_close(state0[key], expected[key], rtol=1e-4, atol=1e-5,
                                       msg=key)


@pytest.mark.parametrize('config', ['mask_rcnn_uninet_b3_3x.py',
                                    'cascade_mask_rcnn_uninet_b3_3x.py',
                                    'upernet_uninet_b1_160k_ade20k.py'])
def test_train_tool_refuses_syncbn_without_gpu_before_any_work(config, monkeypatch):
    """tools/train.py --launcher pytorch on a machine without GPUs: a clear error naming every
    SyncBN of the config and the --cfg-options that switch them to BN."""
    pytest.importorskip('mmdet')
    pytest.importorskip('mmseg')
    import runpy
    from pathlib import Path
    repo = Path(__file__).resolve().parents[1]
    tool = runpy.run_path(str(repo / 'tools' / 'train.py'), run_name='uninet_tool')
    monkeypatch.setitem(tool['setup_cfg'].__globals__, '_accelerator_available', lambda: False)
    args = tool['parse_args']([str(repo / 'configs' / config), '--launcher', 'pytorch'])
    with pytest.raises(SystemExit, match=r'SyncBN needs GPUs.*model\.backbone\.norm_cfg.*'
                                         r'--cfg-options model\.backbone\.norm_cfg\.type=BN'):
        tool['setup_cfg'](args)
    assert not dist.is_initialized()
