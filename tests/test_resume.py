"""Resuming training on torch >= 2.6 (``torch.load(weights_only=True)``) without
``weights_only=False``: the allow-list of uninet_mm.utils.resume_safe_load.

Unit tests save mmengine's own objects and load them back. The tiny UperNet config and helpers
below serve the end-to-end test in tests/test_train_kill.py, which kills tools/train.py at a
random iteration, resumes it, and compares the losses, learning rates and weights with an
uninterrupted run (and checks the checkpoint it resumed from against this allow-list).
"""
import json
import os
import pickle
import subprocess
import sys
import textwrap
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from uninet_mm.utils.resume_safe_load import (RESUME_SAFE_GLOBAL_NAMES,
                                              register_resume_safe_globals, resume_safe_globals)

from .conftest import TRAIN_ONLY_CONFIG, tiny_arch

REPO = Path(__file__).resolve().parents[1]


def unsafe_globals(path) -> set:
    """What a checkpoint needs beyond torch's default allow-list, asked in a fresh interpreter
    (this one has the allow-list registered already: importing uninet_mm registers it)."""
    code = ('import sys, torch; print("\\n".join('
            'torch.serialization.get_unsafe_globals_in_checkpoint(sys.argv[1])))')
    out = subprocess.run([sys.executable, '-c', code, str(path)], capture_output=True,
                         text=True, check=True).stdout
    return {line for line in out.splitlines() if line}


def _message_hub_state():
    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance('uninet_test_resume')
    for value in (1.0, 0.5, 0.25):
        hub.update_scalar('train/loss', value)
    hub.update_scalar('train/lr', np.float64(1e-3))
    hub.update_info('iter', 3)
    hub.update_info('np_value', np.float32(2.5))
    return hub.state_dict()


def _checkpoint_like_mmengine():
    model = torch.nn.Linear(3, 2)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    optim.step()
    return dict(
        meta=dict(epoch=1, iter=3, seed=0, mmengine_version='0.10.7',
                  dataset_meta=dict(classes=('a', 'b'), palette=[(1, 2, 3)])),
        state_dict=OrderedDict(model.state_dict()),
        message_hub=_message_hub_state(),
        optimizer=optim.state_dict(),
        param_schedulers=[dict(base_lrs=[1e-3], last_step=3, _get_lr_called_within_step=False)],
    )


def test_register_is_idempotent_and_cheap():
    register_resume_safe_globals()
    before = list(torch.serialization.get_safe_globals())
    for _ in range(100):
        register_resume_safe_globals()
    assert list(torch.serialization.get_safe_globals()) == before


def test_fresh_process_cannot_resume_without_the_allow_list(tmp_path):
    """Documents the problem: mmengine's resume checkpoints fail under weights_only=True."""
    path = tmp_path / 'ckpt.pth'
    torch.save(_checkpoint_like_mmengine(), path)
    code = textwrap.dedent(f"""
        import torch
        try:
            torch.load({str(path)!r})
        except Exception as err:  # pickle.UnpicklingError
            print('FAILED', type(err).__name__)
        else:
            print('LOADED')
    """)
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True).stdout
    assert 'FAILED' in out


def test_mmengine_checkpoint_loads_with_weights_only(tmp_path):
    from mmengine.logging import HistoryBuffer, MessageHub
    path = tmp_path / 'ckpt.pth'
    saved = _checkpoint_like_mmengine()
    torch.save(saved, path)
    unsafe = unsafe_globals(path)
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in unsafe
    assert unsafe <= RESUME_SAFE_GLOBAL_NAMES, unsafe - RESUME_SAFE_GLOBAL_NAMES

    register_resume_safe_globals()
    loaded = torch.load(path, weights_only=True)
    buffers = loaded['message_hub']['log_scalars']
    assert isinstance(buffers['train/loss'], HistoryBuffer)
    assert buffers['train/loss'].mean() == pytest.approx(7 / 12)
    assert buffers['train/loss'].current() == 0.25
    assert loaded['message_hub']['runtime_info']['np_value'] == np.float32(2.5)
    hub = MessageHub.get_instance('uninet_test_resume_loaded')
    hub.load_state_dict(loaded['message_hub'])
    assert hub.get_scalar('train/loss').current() == 0.25
    for key, value in saved['state_dict'].items():
        assert torch.equal(loaded['state_dict'][key], value)


def test_numpy_arrays_of_common_dtypes_load(tmp_path):
    register_resume_safe_globals()
    arrays = {str(dt): np.arange(3).astype(dt) for dt in
              ('bool', 'int8', 'uint8', 'int32', 'int64', 'float16', 'float32', 'float64')}
    scalars = {k: v[1] for k, v in arrays.items()}
    torch.save(dict(arrays=arrays, scalars=scalars, dtypes=[a.dtype for a in arrays.values()]),
               tmp_path / 'np.pth')
    loaded = torch.load(tmp_path / 'np.pth', weights_only=True)
    for key, value in arrays.items():
        np.testing.assert_array_equal(loaded['arrays'][key], value)
        assert loaded['arrays'][key].dtype == value.dtype
        assert loaded['scalars'][key] == scalars[key]


class _GetattrPayload:
    """Pickles as ``getattr(os, 'system')``-style calls: what a malicious checkpoint would use."""

    def __init__(self, target, name):
        self.target, self.name = target, name

    def __reduce__(self):
        return getattr, (self.target, self.name)


@pytest.mark.parametrize('target,name', [(OrderedDict, 'fromkeys'), (np.ndarray, 'tofile')])
def test_getattr_is_only_allowed_for_history_buffer(tmp_path, target, name):
    register_resume_safe_globals()
    path = tmp_path / 'evil.pth'
    torch.save({'x': _GetattrPayload(target, name)}, path)
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
        torch.load(path, weights_only=True)


def test_getattr_rejects_non_statistics_attributes_of_history_buffer(tmp_path):
    from mmengine.logging import HistoryBuffer
    register_resume_safe_globals()
    path = tmp_path / 'evil.pth'
    torch.save({'x': _GetattrPayload(HistoryBuffer, '__init__')}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)


def test_no_blanket_allow_list():
    names = {n for n in RESUME_SAFE_GLOBAL_NAMES}
    assert 'builtins.eval' not in names and 'builtins.exec' not in names
    entries = resume_safe_globals()
    assert getattr not in entries  # the real getattr is never allowed


# ------------------------------------------------------------------------------ end to end
TINY_SEG_CONFIG = """
_base_ = [{base!r}]
data_root = {data_root!r}
model = dict(
    data_preprocessor=dict(size=(64, 64)),
    backbone=dict(arch={arch!r}, drop_path_rate=0.0, norm_cfg=dict(type='BN', requires_grad=True)),
    decode_head=dict(in_channels=[32, 32, 64, 96], channels=16, dropout_ratio=0.0,
                     norm_cfg=dict(type='BN', requires_grad=True)),
    auxiliary_head=dict(in_channels=64, channels=8, dropout_ratio=0.0,
                        norm_cfg=dict(type='BN', requires_grad=True)))
# Deterministic pipeline: no random crop / flip / photometric distortion.
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', reduce_zero_label=True),
        dict(type='Resize', scale=(64, 64), keep_ratio=False),
        dict(type='PackSegInputs'),
    ]))
""" + TRAIN_ONLY_CONFIG + """
optim_wrapper = dict(optimizer=dict(lr=1e-2))
auto_scale_lr = dict(enable=False)  # a large lr, so that every step visibly changes the loss
param_scheduler = [
    dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=3),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=3, end={iters}, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters={iters}, val_interval=1000)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval={ckpt_interval}))
log_processor = dict(window_size=1)
randomness = dict(seed=0)
"""


def _write_config(path: Path, data_root: str, iters: int, ckpt_interval: int) -> Path:
    path.write_text(TINY_SEG_CONFIG.format(
        base=str(REPO / 'configs' / 'upernet_uninet_b1_160k_ade20k.py'), data_root=data_root,
        arch=dict(tiny_arch(), _delete_=True), iters=iters, ckpt_interval=ckpt_interval))
    return path


def _train(config: Path, work_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / 'tools' / 'train.py'), str(config),
           '--work-dir', str(work_dir), *extra]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(work_dir.parent), env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _losses(work_dir: Path) -> dict:
    """iteration -> loss, from every run's vis_data/scalars.json under work_dir."""
    losses = {}
    for scalars in sorted(work_dir.glob('*/vis_data/scalars.json')):
        for line in scalars.read_text().splitlines():
            record = json.loads(line)
            if 'loss' in record:
                losses[record['iter']] = (record['loss'], record['lr'])
    return losses


@pytest.fixture(scope='module')
def ade_root(tmp_path_factory):
    from uninet_mm.datasets import make_ade20k_semantic
    root = tmp_path_factory.mktemp('ade')
    info = make_ade20k_semantic(root, num_train=6, num_val=2, image_size=(64, 64), seed=0)
    return info['data_root']
