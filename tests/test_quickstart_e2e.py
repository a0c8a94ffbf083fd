"""End to end: the quickstart trains on synthetic data, its loss goes down, it evaluates and
draws. Slow (about a minute per task on 2 CPU cores): deselect with ``-m "not slow"``."""
import subprocess
import sys
from pathlib import Path

import pytest

from uninet_mm.utils.plotting import loss_curves, read_scalars

REPO = Path(__file__).resolve().parents[1]


def _run_quickstart(tmp_path: Path, task: str, iters: int, batch_size: int) -> str:
    cmd = [sys.executable, str(REPO / 'tools/quickstart.py'), '--task', task,
           '--iters', str(iters), '--batch-size', str(batch_size), '--num-train', '16',
           '--num-val', '4', '--num-vis', '2', '--threads', '1',
           '--data-root', str(tmp_path / 'data'), '--work-dir', str(tmp_path / 'work')]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _assert_loss_went_down(work_dir: Path) -> None:
    (scalars, ) = work_dir.glob('*/vis_data/scalars.json')
    _, ys = loss_curves(read_scalars(scalars))['loss']
    assert len(ys) >= 10
    head, tail = ys[:5], ys[-5:]
    assert sum(tail) / len(tail) < 0.85 * sum(head) / len(head), ys


@pytest.mark.slow
def test_quickstart_det_learns_and_evaluates(tmp_path):
    out = _run_quickstart(tmp_path, 'det', iters=40, batch_size=2)
    work = tmp_path / 'work'
    _assert_loss_went_down(work)
    for key in ('coco/bbox_mAP', 'coco/segm_mAP'):
        assert key in out, out
    assert (work / 'loss_curve.png').stat().st_size > 0
    assert len(list((work / 'predictions').glob('*.jpg'))) == 2
    assert (work / 'iter_40.pth').is_file()


@pytest.mark.slow
def test_quickstart_seg_learns_and_evaluates(tmp_path):
    out = _run_quickstart(tmp_path, 'seg', iters=40, batch_size=4)
    work = tmp_path / 'work'
    _assert_loss_went_down(work)
    assert 'mIoU' in out, out
    assert (work / 'loss_curve.png').stat().st_size > 0
    assert len(list((work / 'predictions').glob('*.jpg'))) == 2
