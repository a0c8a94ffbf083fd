"""tools/train.py, tools/test.py, tools/analysis_tools/*.py and the utilities behind them:
dataset checks (uninet_mm.utils.data_check) and FLOP counting (uninet_mm.utils.flops)."""
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from uninet_mm.utils.data_check import DatasetNotFoundError, check_datasets, dataset_paths

from .conftest import tiny_arch, tiny_mask_rcnn_model

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / 'tools'
DEV_SCRIPTS = REPO / '.dev_scripts'


def load_tool(relpath: str, root: Path = TOOLS) -> dict:
    """The functions of a tool script under ``root`` (run without its ``__main__`` block)."""
    return runpy.run_path(str(root / relpath), run_name='uninet_tool')


def run_tool(args, cwd, timeout=600) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          cwd=str(cwd), env=env, timeout=timeout)


# ----------------------------------------------------------------------------- data checks
COCO_TRAIN = dict(type='CocoDataset', data_root='data/coco/',
                  ann_file='annotations/instances_train2017.json',
                  data_prefix=dict(img='train2017/'))
ADE_TRAIN = dict(type='ADE20KDataset', data_root='data/ade/ADEChallengeData2016',
                 data_prefix=dict(img_path='images/training',
                                  seg_map_path='annotations/training'))
IMAGENET_TRAIN = dict(type='ImageNet', data_root='data/imagenet', split='train')


def _cfg(dataset, val=None, val_cfg=True):
    cfg = dict(train_dataloader=dict(dataset=dataset))
    if val is not None:
        cfg['val_dataloader'] = dict(dataset=val)
        cfg['val_cfg'] = dict() if val_cfg else None
    return cfg


@pytest.mark.parametrize('dataset,expected', [
    (COCO_TRAIN, ['data/coco/annotations/instances_train2017.json', 'data/coco/train2017',
                  'annotations/instances_val2017.json', 'val2017']),
    (ADE_TRAIN, ['data/ade/ADEChallengeData2016/images/training',
                 'data/ade/ADEChallengeData2016/annotations/training', 'images/validation']),
    (IMAGENET_TRAIN, ['data/imagenet/train', 'data/imagenet/val', 'meta/train.txt']),
])
def test_missing_dataset_error_names_path_and_layout(tmp_path, monkeypatch, dataset, expected):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetNotFoundError) as info:
        check_datasets(_cfg(dataset))
    message = str(info.value)
    assert message.startswith('train_dataloader:')
    assert dataset['type'] in message
    for text in expected:
        assert text in message, (text, message)
    assert str(tmp_path) in message  # the absolute path looked for
    assert '--cfg-options train_dataloader.dataset.data_root=' in message


def test_present_dataset_passes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'data/coco/annotations').mkdir(parents=True)
    (tmp_path / 'data/coco/train2017').mkdir()
    (tmp_path / 'data/coco/annotations/instances_train2017.json').write_text('{}')
    check_datasets(_cfg(COCO_TRAIN))
    # Only the image folder missing: the error names exactly that.
    (tmp_path / 'data/coco/train2017').rmdir()
    with pytest.raises(DatasetNotFoundError, match='missing folder: data/coco/train2017'):
        check_datasets(_cfg(COCO_TRAIN))


def test_val_checked_only_when_it_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'data/imagenet/train').mkdir(parents=True)
    val = dict(IMAGENET_TRAIN, split='val')
    check_datasets(_cfg(IMAGENET_TRAIN, val=val, val_cfg=False))
    with pytest.raises(DatasetNotFoundError, match=r'(?s)val_dataloader: .*data/imagenet/val'):
        check_datasets(_cfg(IMAGENET_TRAIN, val=val))


def test_dataset_wrappers_and_remote_backends(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    wrapped = dict(type='RepeatDataset', times=2,
                   dataset=dict(type='ConcatDataset', datasets=[COCO_TRAIN, ADE_TRAIN]))
    with pytest.raises(DatasetNotFoundError, match='CocoDataset'):
        check_datasets(_cfg(wrapped))
    remote = dict(COCO_TRAIN, backend_args=dict(backend='petrel'))
    check_datasets(_cfg(remote))
    assert dataset_paths(dict(type='ImageNet', data_root='x', split='val',
                              ann_file='meta/val.txt')) == [('file', 'x/meta/val.txt')]


@pytest.mark.parametrize('config,path', [
    ('mask_rcnn_uninet_b1_1x.py', 'data/coco/annotations/instances_train2017.json'),
    ('upernet_uninet_b3_160k_ade20k.py', 'data/ade/ADEChallengeData2016/images/training'),
    ('uninet_b1_in1k.py', 'data/imagenet/train'),
])
def test_train_tool_reports_missing_dataset(tmp_path, config, path):
    pytest.importorskip('mmdet')
    proc = run_tool([TOOLS / 'train.py', REPO / 'configs' / config,
                     '--work-dir', tmp_path / 'work'], cwd=tmp_path, timeout=300)
    assert proc.returncode != 0
    assert path in proc.stderr, proc.stderr[-3000:]
    assert 'Expected layout' in proc.stderr
    assert 'Traceback' not in proc.stderr


def test_test_tool_reports_missing_dataset_and_checkpoint(tmp_path):
    pytest.importorskip('mmdet')
    config = REPO / 'configs' / 'mask_rcnn_uninet_b1_1x.py'
    proc = run_tool([TOOLS / 'test.py', config, tmp_path / 'none.pth'], cwd=tmp_path)
    assert proc.returncode != 0 and 'checkpoint not found' in proc.stderr
    ckpt = tmp_path / 'model.pth'
    torch.save({'state_dict': {}}, ckpt)
    proc = run_tool([TOOLS / 'test.py', config, ckpt], cwd=tmp_path)
    assert proc.returncode != 0
    assert 'test_dataloader' in proc.stderr
    assert 'data/coco/annotations/instances_val2017.json' in proc.stderr


# -------------------------------------------------------------------------------- arguments
def test_train_arguments():
    tool = load_tool('train.py')
    parse = tool['parse_args']
    args = parse(['cfg.py'])
    assert args.resume is None and not args.amp and args.launcher == 'none'
    assert parse(['cfg.py', '--resume']).resume == 'auto'
    assert parse(['cfg.py', '--resume', 'x.pth']).resume == 'x.pth'
    assert parse(['cfg.py', '--local-rank', '1']).local_rank == 1
    assert parse(['cfg.py', '--local_rank', '1']).local_rank == 1
    args = parse(['cfg.py', '--cfg-options', 'a.b=1', 'c=x', '--launcher', 'slurm', '--amp'])
    assert args.cfg_options == {'a.b': 1, 'c': 'x'} and args.launcher == 'slurm' and args.amp


def test_train_cfg_setup(tmp_path):
    pytest.importorskip('mmdet')
    tool = load_tool('train.py')
    config = str(REPO / 'configs' / 'mask_rcnn_uninet_b1_1x.py')
    cfg = tool['setup_cfg'](tool['parse_args']([config]))
    assert cfg.work_dir == os.path.join('./work_dirs', 'mask_rcnn_uninet_b1_1x')
    assert not cfg.resume
    # --resume: the newest complete checkpoint of the work dir; none there: from the start.
    work = tmp_path / 'w'
    cfg = tool['setup_cfg'](tool['parse_args']([config, '--resume', '--work-dir', str(work)]))
    assert cfg.resume is False and cfg.load_from is None and cfg.work_dir == str(work)
    work.mkdir()
    torch.save({'state_dict': {}}, work / 'iter_2.pth')
    cfg = tool['setup_cfg'](tool['parse_args']([config, '--resume', '--work-dir', str(work)]))
    assert cfg.resume is True and cfg.load_from == str(work / 'iter_2.pth')
    cfg = tool['setup_cfg'](tool['parse_args']([config, '--resume', str(work / 'iter_2.pth')]))
    assert cfg.resume is True and cfg.load_from == str(work / 'iter_2.pth')
    with pytest.raises(SystemExit, match=r'cannot resume: checkpoint a\.pth does not exist'):
        tool['setup_cfg'](tool['parse_args']([config, '--resume', 'a.pth']))
    ft = str(REPO / 'configs' / 'uninet_b5_in1k_ft384.py')
    cfg = tool['setup_cfg'](tool['parse_args']([ft, '--cfg-options', 'finetune_from=b5.pth']))
    assert cfg.load_from == 'b5.pth' and not cfg.resume
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match='--amp needs a GPU'):
            tool['setup_cfg'](tool['parse_args']([config, '--amp']))


def test_from_scratch_warning(caplog):
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from uninet_mm.utils.tools_support import warn_if_training_from_scratch
    logger = MMLogger.get_instance('uninet_test_scratch')
    backbone = dict(type='UniNet', init_cfg=None)
    assert warn_if_training_from_scratch(Config(dict(pretrained=None,
                                                     model=dict(backbone=backbone))), logger)
    pretrained = dict(type='UniNet', init_cfg=dict(type='Pretrained', checkpoint='x.pth'))
    assert not warn_if_training_from_scratch(
        Config(dict(pretrained='x.pth', model=dict(backbone=pretrained))), logger)
    assert not warn_if_training_from_scratch(
        Config(dict(pretrained=None, resume=True, model=dict(backbone=backbone))), logger)
    assert warn_if_training_from_scratch(Config(dict(finetune_from=None)), logger)
    assert not warn_if_training_from_scratch(Config(dict(model=dict(backbone=backbone))), logger)


# ------------------------------------------------------------------------------------ FLOPs
class _ExplicitAttention(nn.Module):
    def forward(self, q, k, v):
        attn = (q @ k.transpose(-2, -1)).softmax(-1)
        return attn @ v


class _SDPA(nn.Module):
    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


def test_sdpa_counted_like_explicit_matmuls():
    from mmengine.analysis import get_model_complexity_info
    from uninet_mm.utils.flops import model_complexity
    q, k, v = torch.randn(2, 4, 50, 32), torch.randn(2, 4, 70, 32), torch.randn(2, 4, 70, 16)
    expected = 2 * 4 * 50 * 70 * (32 + 16)
    assert model_complexity(_ExplicitAttention(), (q, k, v))['flops'] == expected
    assert model_complexity(_SDPA(), (q, k, v))['flops'] == expected
    # mmengine alone does not count it, hence the extra handle.
    plain = get_model_complexity_info(_SDPA(), inputs=(q, k, v), show_table=False,
                                      show_arch=False)
    assert plain['flops'] == 0


def test_get_flops_tool_on_a_classifier(capsys):
    """The tool counts the spec's classifier FLOPs (B0 at 160 px: 0.555 G, 11,450,864 params;
    tests/test_backbone.py checks every variant against the spec)."""
    pytest.importorskip('mmpretrain')
    tool = load_tool('analysis_tools/get_flops.py')
    tool['main']([str(REPO / 'configs' / 'uninet_b0_in1k.py'), '--shape', '160',
                  '--by-module'])
    out = capsys.readouterr().out
    assert 'Flops: 0.56G' in out and 'Params: 11.45M' in out
    assert 'backbone' in out


def test_get_flops_tool_on_a_detector(capsys, tmp_path):
    """A tiny Mask R-CNN: the tool runs the detector in tensor mode (backbone, neck, heads)."""
    pytest.importorskip('mmdet')
    config = tmp_path / 'tiny.py'
    config.write_text(f"""
_base_ = [{str(REPO / 'configs' / 'mask_rcnn_uninet_b1_1x.py')!r}]
model = dict(backbone=dict(arch={dict(tiny_arch(), _delete_=True)!r}),
             neck=dict(in_channels=[32, 32, 64, 96]))
""")
    tool = load_tool('analysis_tools/get_flops.py')
    tool['main']([str(config), '--shape', '128', '160', '--by-module'])
    out = capsys.readouterr().out
    for module in ('backbone', 'neck', 'rpn_head', 'roi_head'):
        assert module in out, out


# ------------------------------------------------------------------------- end to end (slow)
TINY_DET = """
_base_ = [{base!r}]
data_root = {data_root!r}
metainfo = dict(classes={classes!r})
model = {model!r}
__pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(96, 64), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=__pipeline))
val_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=__pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + '/annotations/instances_val2017.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=1)
default_hooks = dict(logger=dict(type='LoggerHook', interval=1))
"""


@pytest.mark.slow
def test_train_then_test_tools_end_to_end(tmp_path):
    pytest.importorskip('mmdet')
    from uninet_mm.datasets import make_coco_instances
    info = make_coco_instances(tmp_path / 'coco', num_train=4, num_val=2, image_size=(64, 80))
    config = tmp_path / 'tiny.py'
    config.write_text(TINY_DET.format(
        base=str(REPO / 'configs' / 'mask_rcnn_uninet_b1_1x.py'), data_root=str(info['root']),
        classes=tuple(info['classes']),
        model=tiny_mask_rcnn_model(tiny_arch(), len(info['classes']))))
    work = tmp_path / 'work'
    proc = run_tool([TOOLS / 'train.py', config, '--work-dir', work], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    log = '\n'.join(p.read_text() for p in work.glob('*/*.log'))
    assert 'No pretrained backbone' in log  # the from-scratch warning reaches the log file
    assert 'Epoch(val) [1][2/2]' in log
    ckpt = work / 'epoch_1.pth'
    assert ckpt.is_file()

    show = tmp_path / 'show'
    proc = run_tool([TOOLS / 'test.py', config, ckpt, '--work-dir', tmp_path / 'test_work',
                     '--show-dir', show], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert 'coco/bbox_mAP:' in proc.stdout
    assert any(show.rglob('*.jpg')) or any(show.rglob('*.png'))


@pytest.mark.slow
def test_report_model_table():
    """Every row's model builds, runs and is counted, the detectors and segmentors included,
    at ``--shape 256x320``: the same code as at the paper's sizes (the default), which take
    four minutes on a CPU."""
    pytest.importorskip('mmdet')
    pytest.importorskip('mmseg')
    proc = run_tool([DEV_SCRIPTS / 'report_model_table.py', '--shape', '256x320'], cwd=REPO,
                    timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for row in ('Mask R-CNN UniNet-B1', 'Mask R-CNN UniNet-B3', 'UperNet UniNet-B1',
                'UperNet UniNet-B3'):
        assert f'| {row} | 320x256 |' in proc.stdout
    assert proc.stdout.count(' | 320x256 | ') == len(load_tool(
        'report_model_table.py', root=DEV_SCRIPTS)['ROWS'])
