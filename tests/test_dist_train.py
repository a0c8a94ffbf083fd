"""tools/dist_train.sh: two processes on the CPU (gloo) train a tiny Mask R-CNN and finish with
identical parameters.

Each rank hashes its own parameters at the end of training and tools/train.py logs the hashes of
all ranks (rank 0 gathers them); the test compares them, and checks that the checkpoint written by
rank 0 loads with ``weights_only=True``.
"""
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from uninet_mm.utils.resume_safe_load import (RESUME_SAFE_GLOBAL_NAMES,
                                              register_resume_safe_globals)

from .conftest import (TRAIN_ONLY_CONFIG, tiny_arch, tiny_coco_train_dataloader,
                       tiny_mask_rcnn_model)
from .test_resume import unsafe_globals

REPO = Path(__file__).resolve().parents[1]

TINY_DET_CONFIG = """
_base_ = [{base!r}]
model = {model!r}
train_dataloader = {train_dataloader!r}
""" + TRAIN_ONLY_CONFIG + """
train_cfg = dict(max_epochs=1)
# A constant, large lr: every step changes the weights a lot, so ranks that fell out of sync
# would end with visibly different parameters.
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = []
auto_scale_lr = dict(enable=False)
# Some iterations of a tiny run can leave the mask head without positives.
find_unused_parameters = True
default_hooks = dict(logger=dict(type='LoggerHook', interval=1))
randomness = dict(seed=0)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    from uninet_mm.datasets import make_coco_instances
    root = tmp_path_factory.mktemp('coco')
    info = make_coco_instances(root, num_train=8, num_val=2, image_size=(64, 80), seed=0)
    return info


@pytest.mark.slow
def test_dist_train_two_cpu_processes_end_with_identical_weights(tmp_path, coco_root):
    pytest.importorskip('mmdet')
    if shutil.which('bash') is None:
        pytest.skip('bash is needed for tools/dist_train.sh')
    config = tmp_path / 'tiny_mask_rcnn.py'
    config.write_text(TINY_DET_CONFIG.format(
        base=str(REPO / 'configs' / 'mask_rcnn_uninet_b1_1x.py'),
        train_dataloader=tiny_coco_train_dataloader(coco_root['root'], coco_root['classes'],
                                                    flip=True),
        model=tiny_mask_rcnn_model(tiny_arch(), len(coco_root['classes']),
                                   norm_cfg=dict(type='BN', requires_grad=True))))
    work_dir = tmp_path / 'work'
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()), OMP_NUM_THREADS='1')
    cmd = ['bash', str(REPO / 'tools' / 'dist_train.sh'), str(config), '2',
           '--work-dir', str(work_dir), '--cfg-options', 'env_cfg.dist_cfg.backend=gloo']
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(tmp_path),
                          timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]

    logs = list(work_dir.glob('*/*.log'))
    assert logs, output[-3000:]
    log = '\n'.join(p.read_text() for p in logs)
    # Two processes trained: 8 images / (2 ranks x 2 images) = 2 iterations each.
    assert 'Epoch(train) [1][2/2]' in log, log[-3000:]
    assert 'No pretrained backbone' in log
    match = re.search(r'parameter sha256 per rank: rank0=(\w+) rank1=(\w+)', log)
    assert match, log[-3000:]
    assert match.group(1) == match.group(2)

    ckpt = work_dir / 'epoch_1.pth'
    assert ckpt.is_file()
    unsafe = unsafe_globals(ckpt)
    assert unsafe <= RESUME_SAFE_GLOBAL_NAMES, unsafe - RESUME_SAFE_GLOBAL_NAMES
    register_resume_safe_globals()
    state = torch.load(ckpt, weights_only=True)
    assert state['meta']['dataset_meta']['classes'] == tuple(coco_root['classes'])


def test_close_distributed_lets_gloo_finish_collectives_before_shutdown():
    """tools/train.py ends with close_distributed(): afterwards no gloo worker thread may still
    hold a collective's Python tensors, whose release needs the GIL (at interpreter shutdown
    that aborted about one 2-process training in three).

    The hazard is made likely here: the main thread never hands the GIL over on its own (huge
    switch interval), the collective's handle is dropped so that the worker thread holds the
    last reference, and the process group is kept alive past its destruction (as DDP's reducer
    keeps it). Without the drain some of the ten rounds leave the tensors held.
    """
    import time
    import weakref

    import torch.distributed as dist

    from uninet_mm.utils.tools_support import close_distributed

    assert not dist.is_initialized()
    switch_interval = sys.getswitchinterval()
    held_after_close = []
    try:
        for _ in range(10):
            dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{free_port()}',
                                    rank=0, world_size=1)
            group = dist.group.WORLD  # noqa: F841 (kept alive past destruction, as DDP does)
            sys.setswitchinterval(1000.0)
            sent, received = torch.ones(4), [torch.zeros(4)]
            tensors = [weakref.ref(sent), weakref.ref(received[0])]
            dist.all_gather(received, sent, async_op=True)
            result = received[0]
            del sent, received
            deadline = time.perf_counter() + 10
            while result.sum().item() != 4:  # spins in Python: no GIL hand-over
                assert time.perf_counter() < deadline, 'the all_gather did not run'
            del result
            close_distributed()
            sys.setswitchinterval(switch_interval)
            held_after_close.append(sum(ref() is not None for ref in tensors))
            del group
    finally:
        sys.setswitchinterval(switch_interval)
        if dist.is_initialized():
            dist.destroy_process_group()
    assert not dist.is_initialized()
    assert held_after_close == [0] * 10, held_after_close
