"""tools/train.py killed, not stopped: SIGKILL at a random iteration, then ``--resume``.

- A run killed at a random point after its first checkpoint and resumed with ``--resume`` ends
  with the weights (and per-iteration losses and learning rates) of an uninterrupted run with
  the same seed, from a checkpoint that loads with ``weights_only=True``.
- A truncated checkpoint is never resumed from: ``last_checkpoint`` naming a truncated file
  makes ``--resume`` fall back to the newest complete one; ``--resume PATH`` on a damaged file
  stops before training with an error naming the file.
- A process killed while writing a checkpoint leaves no file under the checkpoint's name
  (atomic writes), so nothing truncated is there to be picked.

The tiny UperNet runs of tests/test_resume.py are reused (its config and helpers).
"""
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from uninet_mm.utils.checkpoint_integrity import (DamagedCheckpointError, check_checkpoint_file,
                                                  find_resume_checkpoint)
from uninet_mm.utils.resume_safe_load import (RESUME_SAFE_GLOBAL_NAMES,
                                               register_resume_safe_globals)

from .test_resume import _losses, _train, _write_config, unsafe_globals
from .test_resume import ade_root  # noqa: F401  (a fixture)

REPO = Path(__file__).resolve().parents[1]
TOTAL, INTERVAL = 24, 4

pytestmark = pytest.mark.cluster


def _weights(path: Path) -> dict:
    register_resume_safe_globals()
    return torch.load(path, map_location='cpu', weights_only=True)['state_dict']


def _assert_same_weights(path: Path, reference: Path) -> None:
    got, want = _weights(path), _weights(reference)
    assert got.keys() == want.keys()
    for key, value in want.items():
        torch.testing.assert_close(got[key], value, rtol=1e-6, atol=1e-7, msg=key)


def _train_iters_logged(work_dir: Path) -> int:
    """The last ``Iter(train) [k/...]`` line rank 0 has logged so far in work_dir."""
    last = 0
    for log in work_dir.glob('*/*.log'):
        for line in log.read_text(errors='replace').splitlines():
            if 'Iter(train) [' in line:
                last = max(last, int(line.split('Iter(train) [')[1].split('/')[0]))
    return last


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory, ade_root):  # noqa: F811
    """An uninterrupted run of TOTAL iterations with a checkpoint every INTERVAL (all kept)."""
    pytest.importorskip('mmseg')
    root = tmp_path_factory.mktemp('uninterrupted')
    config = _write_config(root / 'tiny.py', str(ade_root), TOTAL, INTERVAL)
    work = root / 'work'
    work.mkdir()
    _train(config, work)
    assert (work / f'iter_{TOTAL}.pth').is_file()
    return config, work


@pytest.mark.slow
def test_sigkill_at_a_random_iteration_then_resume_matches_uninterrupted(tmp_path,
                                                                          uninterrupted):
    config, full = uninterrupted
    rng = random.Random(int.from_bytes(os.urandom(4), 'little'))
    # After the first checkpoint, well before the end (an iteration takes 0.07 s or more).
    kill_at = rng.randint(INTERVAL + 1, TOTAL - 6)
    delay = rng.uniform(0.0, 0.1)  # somewhere inside the next iteration
    note = f'(killed when iteration {kill_at} was logged, +{delay:.3f} s)'

    work = tmp_path / 'work'
    work.mkdir()
    cmd = [sys.executable, str(REPO / 'tools' / 'train.py'), str(config), '--work-dir',
           str(work)]
    proc = subprocess.Popen(cmd, cwd=str(tmp_path), env=dict(os.environ, OMP_NUM_THREADS='1'),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while _train_iters_logged(work) < kill_at:
        assert proc.poll() is None, f'training ended before the kill {note}'
        assert time.monotonic() < deadline, f'iteration {kill_at} not reached in 300 s'
        time.sleep(0.02)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert not (work / f'iter_{TOTAL}.pth').exists(), f'the run finished first {note}'

    resumed = _train(config, work, '--resume')
    output = resumed.stdout + resumed.stderr
    match = re.search(r'Auto resumed from the latest checkpoint \S*iter_(\d+)\.pth', output)
    assert match, output[-3000:]
    start = int(match.group(1))  # the last checkpoint complete before the kill
    assert start % INTERVAL == 0 and INTERVAL <= start < TOTAL, (start, note)
    assert f'resumed epoch: 0, iter: {start}' in output, (note, output[-3000:])
    unsafe = unsafe_globals(work / f'iter_{start}.pth')
    assert unsafe <= RESUME_SAFE_GLOBAL_NAMES, unsafe - RESUME_SAFE_GLOBAL_NAMES
    _assert_same_weights(work / f'iter_{TOTAL}.pth', full / f'iter_{TOTAL}.pth')
    full_losses, part_losses = _losses(full), _losses(work)
    assert sorted(part_losses) == list(range(1, TOTAL + 1)), note
    for it in range(1, TOTAL + 1):
        assert part_losses[it][0] == pytest.approx(full_losses[it][0], rel=1e-6, abs=1e-7), \
            (it, note)
        assert part_losses[it][1] == pytest.approx(full_losses[it][1], rel=1e-9), (it, note)
    # The losses change after the resume point, so the comparison is not vacuous.
    assert max(abs(full_losses[it][0] - full_losses[it + 1][0])
               for it in range(start, TOTAL)) > 1e-3


def _half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


@pytest.mark.slow
def test_truncated_checkpoint_is_never_resumed_from(tmp_path, uninterrupted):
    config, full = uninterrupted
    work = tmp_path / 'work'
    work.mkdir()
    # What a kill during the save of iteration 12 can leave: 4 and 8 complete, 12 truncated,
    # and (write-back order of the file system) last_checkpoint already naming 12.
    for step in (INTERVAL, 2 * INTERVAL, 3 * INTERVAL):
        shutil.copy(full / f'iter_{step}.pth', work / f'iter_{step}.pth')
    truncated = work / f'iter_{3 * INTERVAL}.pth'
    _half(truncated)
    (work / 'last_checkpoint').write_text(str(truncated))

    proc = _train(config, work, '--resume')
    output = proc.stdout + proc.stderr
    assert f'passes over checkpoint {truncated} is truncated' in output, output[-3000:]
    assert f'Auto resumed from the latest checkpoint {work / f"iter_{2 * INTERVAL}.pth"}' \
        in output, output[-3000:]
    assert f'resumed epoch: 0, iter: {2 * INTERVAL}' in output
    _assert_same_weights(work / f'iter_{TOTAL}.pth', full / f'iter_{TOTAL}.pth')


@pytest.mark.parametrize('damage', ['truncated', 'flipped byte'])
def test_resume_path_on_a_damaged_file_stops_naming_it(tmp_path, uninterrupted, damage):
    config, full = uninterrupted
    work = tmp_path / 'work'
    work.mkdir()
    bad = work / 'iter_8.pth'
    shutil.copy(full / 'iter_8.pth', bad)
    if damage == 'truncated':
        _half(bad)
    else:
        data = bytearray(bad.read_bytes())
        data[len(data) // 2] ^= 0xFF
        bad.write_bytes(bytes(data))
    cmd = [sys.executable, str(REPO / 'tools' / 'train.py'), str(config), '--work-dir',
           str(work), '--resume', str(bad)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp_path),
                          env=dict(os.environ, OMP_NUM_THREADS='1'), timeout=300)
    assert proc.returncode != 0
    assert f'error: cannot resume: checkpoint {bad} is' in proc.stderr, proc.stderr[-3000:]
    # Stopped before any training work: no run folder, no new checkpoint.
    assert sorted(p.name for p in work.iterdir()) == ['iter_8.pth']


WRITER = """
import sys, torch
from mmengine.runner import save_checkpoint
from uninet_mm.utils.checkpoint_integrity import use_atomic_local_writes
use_atomic_local_writes()
save_checkpoint({'state_dict': {'w': torch.ones(48 * 2 ** 20 // 4)}}, sys.argv[1])
"""


def test_kill_while_saving_leaves_no_truncated_checkpoint(tmp_path):
    """SIGKILL as soon as the checkpoint's bytes start to reach the disk (48 MB)."""
    target = tmp_path / 'iter_4.pth'
    proc = subprocess.Popen([sys.executable, '-c', WRITER, str(target)])
    deadline = time.monotonic() + 120
    while not any(p.name.startswith('iter_4.pth') for p in tmp_path.iterdir()):
        assert proc.poll() is None, 'the writer ended before anything was written'
        assert time.monotonic() < deadline
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    if target.exists():  # the kill came after the rename: then the file is whole
        check_checkpoint_file(target)
    assert find_resume_checkpoint(tmp_path) in (None, str(target))


def test_check_checkpoint_file_names_the_problem(tmp_path):
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': {'w': torch.arange(10.)}}, good)
    check_checkpoint_file(good)
    with pytest.raises(DamagedCheckpointError, match='does not exist'):
        check_checkpoint_file(tmp_path / 'missing.pth')
    (tmp_path / 'empty.pth').write_bytes(b'')
    with pytest.raises(DamagedCheckpointError, match=r'empty\.pth is truncated'):
        check_checkpoint_file(tmp_path / 'empty.pth')
