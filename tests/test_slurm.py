"""Slurm: tools/slurm_train.sh and tools/slurm_test.sh against a real one-node Slurm
(tools/slurm/local_cluster.sh: slurmctld, slurmd and munged on 127.0.0.1, a CPU partition).

The unit tests (rank variables, host lists, the srun command line) need no Slurm. The cluster
test (markers ``cluster`` and ``slow``) trains the quickstart Mask R-CNN config with 2 tasks
(gloo), cancels the job with scancel after a checkpoint, continues it with the same command and
``--resume``, checks that both ranks end with the same weights and evaluates the checkpoint
with 2 tasks. Without Slurm (or without root) it is skipped with the reason; with
``UNINET_REQUIRE_CLUSTER=1`` (set by .ci/run) that skip is a failure instead.
"""
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from uninet_mm.utils.tools_support import first_slurm_host, slurm_to_torch_env

from .test_dist_train import free_port

REPO = Path(__file__).resolve().parents[1]
LOCAL_CLUSTER = REPO / 'tools' / 'slurm' / 'local_cluster.sh'
QUICKSTART_DET = REPO / 'configs' / 'quickstart' / 'mask_rcnn_uninet_tiny_synthetic.py'


# ------------------------------------------------------------------------------------- units
@pytest.mark.parametrize('nodelist,first', [
    ('localhost', 'localhost'),
    ('gpu[03-05,9],cpu1', 'gpu03'),
    ('rack[1-2]-n[07-08]', 'rack1-n07'),
    ('a17,b[1-4]', 'a17'),
])
def test_first_slurm_host(nodelist, first):
    assert first_slurm_host(nodelist) == first


def test_slurm_to_torch_env_reads_the_task_variables():
    env = slurm_to_torch_env(dict(SLURM_PROCID='3', SLURM_NTASKS='4', SLURM_LOCALID='1',
                                  SLURM_NODELIST='node[07-08]', MASTER_PORT='29999'))
    assert env == dict(RANK='3', WORLD_SIZE='4', LOCAL_RANK='1', MASTER_ADDR='node07',
                       MASTER_PORT='29999')
    # An address given by the user wins; the port defaults to torch's.
    env = slurm_to_torch_env(dict(SLURM_PROCID='0', SLURM_NTASKS='1', SLURM_NODELIST='n1',
                                  MASTER_ADDR='10.0.0.5'))
    assert env['MASTER_ADDR'] == '10.0.0.5' and env['MASTER_PORT'] == '29500'


def test_slurm_to_torch_env_outside_slurm_says_what_is_missing():
    with pytest.raises(ValueError, match='SLURM_PROCID, SLURM_NTASKS'):
        slurm_to_torch_env(dict(SLURM_NODELIST='n1'))


def _srun_arguments(tmp_path: Path, script: str, env: dict) -> list:
    """The arguments tools/SCRIPT passes to srun (a stand-in srun on PATH records them)."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / 'srun'
    fake.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$SRUN_ARGS_OUT"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    out = tmp_path / f'{script}.args'
    run_env = dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}', SRUN_ARGS_OUT=str(out),
                   **env)
    subprocess.run(['bash', str(REPO / 'tools' / script), 'part', 'job', 'cfg.py', 'arg4'],
                   env=run_env, check=True)
    return out.read_text().splitlines()


@pytest.mark.parametrize('script', ['slurm_train.sh', 'slurm_test.sh'])
def test_slurm_scripts_ask_for_gpus_only_on_gpu_partitions(tmp_path, script):
    gpu = _srun_arguments(tmp_path, script, dict(GPUS='16', GPUS_PER_NODE='8'))
    assert '--gres=gpu:8' in gpu and '--ntasks=16' in gpu and '--ntasks-per-node=8' in gpu
    cpu = _srun_arguments(tmp_path, script, dict(GPUS_PER_NODE='0', TASKS='2',
                                                 CPUS_PER_TASK='1'))
    assert not any(a.startswith('--gres') for a in cpu), cpu
    assert '--ntasks=2' in cpu and '--cpus-per-task=1' in cpu
    assert not any(a.startswith('--ntasks-per-node') for a in cpu), cpu
    assert '--launcher' in cpu and cpu[cpu.index('--launcher') + 1] == 'slurm'


# ---------------------------------------------------------------------------- the cluster
def cluster_unavailable(reason: str) -> None:
    """Skip a cluster test that cannot run here, naming why; a failure instead under
    ``UNINET_REQUIRE_CLUSTER=1`` (CI)."""
    if os.environ.get('UNINET_REQUIRE_CLUSTER') == '1':
        pytest.fail(f'UNINET_REQUIRE_CLUSTER=1 but {reason}')
    pytest.skip(reason)


@pytest.fixture(scope='module')
def slurm_cluster():
    """A one-node Slurm for this module's tests; yields the environment that reaches it."""
    check = subprocess.run(['bash', str(LOCAL_CLUSTER), 'check'], capture_output=True,
                           text=True)
    if check.returncode != 0:
        cluster_unavailable(f'Slurm cannot run here: {check.stdout.strip() or check.stderr}')
    # Not under pytest's tmp folder: munged wants its socket's folder and every parent
    # searchable by all users.
    root = Path(tempfile.mkdtemp(prefix='uninet-slurm-'))
    env = dict(os.environ, SLURMCTLD_PORT=str(free_port()), SLURMD_PORT=str(free_port()),
               PARTITION='cpu')
    up = subprocess.run(['bash', str(LOCAL_CLUSTER), 'up', str(root)], capture_output=True,
                        text=True, env=env, timeout=120)
    try:
        assert up.returncode == 0, f'local Slurm did not start:\n{up.stderr[-3000:]}'
        yield dict(os.environ, SLURM_CONF=str(root / 'slurm.conf'))
    finally:
        subprocess.run(['bash', str(LOCAL_CLUSTER), 'down', str(root)], capture_output=True,
                       timeout=120)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope='module')
def coco_small(tmp_path_factory):
    from uninet_mm.datasets import make_coco_instances
    root = tmp_path_factory.mktemp('coco')
    return make_coco_instances(root, num_train=8, num_val=2, image_size=(64, 80), seed=0)


# The quickstart config, shrunk to seconds: 64x80 images, batch 1, checkpoints every 3
# iterations (all kept), BN as in the quickstart (no SyncBN, which has no CPU kernels).
SLURM_DET_CONFIG = """
_base_ = [{base!r}]
data_root = {data_root!r}
train_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
        dict(type='Resize', scale=(80, 64), keep_ratio=True),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackDetInputs'),
    ]))
_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(80, 64), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, pipeline=_test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
train_cfg = dict(max_iters={iters}, val_interval=100000)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval={interval}, max_keep_ckpts=-1))
"""


def _write_slurm_config(path: Path, data_root: str, iters: int, interval: int) -> Path:
    path.write_text(SLURM_DET_CONFIG.format(base=str(QUICKSTART_DET), data_root=data_root,
                                            iters=iters, interval=interval))
    return path


def _slurm_env(cluster_env: dict) -> dict:
    return dict(cluster_env, GPUS_PER_NODE='0', TASKS='2', CPUS_PER_TASK='1',
                PYTHON=sys.executable, PORT=str(free_port()), OMP_NUM_THREADS='1')


def _job_ids(env: dict, name: str) -> list:
    out = subprocess.run(['squeue', '-h', '-n', name, '-o', '%i'], capture_output=True,
                         text=True, env=env).stdout
    return out.split()


@pytest.mark.cluster
@pytest.mark.slow
def test_slurm_train_scancel_resume_and_slurm_test(slurm_cluster, coco_small, tmp_path):
    pytest.importorskip('mmdet')
    iters, interval = 24, 3
    config = _write_slurm_config(tmp_path / 'quickstart_tiny.py', str(coco_small['root']) + '/',
                                 iters, interval)
    work = tmp_path / 'work'
    train = ['bash', str(REPO / 'tools' / 'slurm_train.sh'), 'cpu', 'uninet-train', str(config),
             str(work)]

    # 1. Submit, wait for the first checkpoint, scancel the job.
    first_log = tmp_path / 'first_job.out'
    with open(first_log, 'w') as out:
        proc = subprocess.Popen(train, env=_slurm_env(slurm_cluster), cwd=str(tmp_path),
                                stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not (work / 'last_checkpoint').is_file():
        assert proc.poll() is None, \
            f'training ended before a checkpoint:\n{first_log.read_text()[-3000:]}'
        assert time.monotonic() < deadline, 'no checkpoint after 300 s'
        time.sleep(0.2)
    jobs = _job_ids(slurm_cluster, 'uninet-train')
    assert len(jobs) == 1, jobs
    subprocess.run(['scancel', jobs[0]], env=slurm_cluster, check=True)
    proc.wait(timeout=120)
    assert proc.returncode != 0, first_log.read_text()[-3000:]
    assert not (work / f'iter_{iters}.pth').exists(), 'the job finished before scancel'
    done = sorted(int(p.stem.split('_')[1]) for p in work.glob('iter_*.pth'))
    assert done and done[-1] < iters, done
    deadline = time.monotonic() + 60
    while _job_ids(slurm_cluster, 'uninet-train'):
        assert time.monotonic() < deadline, 'the cancelled job is still listed after 60 s'
        time.sleep(0.5)

    # 2. The same command with --resume continues from the last complete checkpoint.
    second = subprocess.run(train + ['--resume'], env=_slurm_env(slurm_cluster),
                            cwd=str(tmp_path), capture_output=True, text=True, timeout=600)
    output = second.stdout + second.stderr
    assert second.returncode == 0, output[-5000:]
    resumed = re.search(r'Auto resumed from the latest checkpoint \S*iter_(\d+)\.pth', output)
    assert resumed, output[-3000:]
    assert int(resumed.group(1)) >= done[0], (resumed.group(1), done)
    assert f'resumed epoch: 0, iter: {resumed.group(1)}' in output, output[-3000:]
    assert (work / f'iter_{iters}.pth').is_file()
    # Both ranks ran and ended with the same parameters.
    hashes = re.search(r'parameter sha256 per rank: rank0=(\w+) rank1=(\w+)', output)
    assert hashes, output[-3000:]
    assert hashes.group(1) == hashes.group(2)

    # 3. tools/slurm_test.sh evaluates the final checkpoint with 2 tasks.
    test = subprocess.run(
        ['bash', str(REPO / 'tools' / 'slurm_test.sh'), 'cpu', 'uninet-test', str(config),
         str(work / f'iter_{iters}.pth'), '--work-dir', str(tmp_path / 'eval')],
        env=_slurm_env(slurm_cluster), cwd=str(tmp_path), capture_output=True, text=True,
        timeout=600)
    output = test.stdout + test.stderr
    assert test.returncode == 0, output[-5000:]
    assert re.search(r'coco/bbox_mAP: [\d.]+', output), output[-3000:]
    assert re.search(r'coco/segm_mAP: [\d.]+', output), output[-3000:]
