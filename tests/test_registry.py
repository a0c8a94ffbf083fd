"""UniNet builds from the mmdet, mmseg and mmpretrain registries: one class, registered once."""
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS as ROOT_MODELS

import uninet_mm


@pytest.mark.parametrize('scope, registry_module', [
    ('mmdet', 'mmdet.registry'), ('mmseg', 'mmseg.registry'),
    ('mmpretrain', 'mmpretrain.registry')])
def test_builds_from_downstream_registry(scope, registry_module):
    registry = __import__(registry_module, fromlist=['MODELS']).MODELS
    backbone = registry.build(dict(type='UniNet', arch='b1', frozen_stages=1))
    assert type(backbone) is uninet_mm.UniNet
    assert registry.get('UniNet') is ROOT_MODELS.get('UniNet') is uninet_mm.UniNet
    assert [m.name for m in [registry]][0] == 'model'  # the models registry, not another one


def test_custom_imports_in_a_detector_config(tmp_path):
    """A config with custom_imports builds a detector around UniNet in a fresh interpreter,
    the way tools/train.py would."""
    config = tmp_path / 'det.py'
    config.write_text(
        "_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py']\n"
        "custom_imports = dict(imports=['uninet_mm'], allow_failed_imports=False)\n"
        "model = dict(backbone=dict(_delete_=True, type='UniNet', arch='b1'),\n"
        "             neck=dict(in_channels=[48, 80, 128, 256]))\n")
    script = (
        'import sys, torch\n'
        'from mmengine.config import Config\n'
        'from mmengine.registry import init_default_scope\n'
        'from mmdet.registry import MODELS\n'
        'cfg = Config.fromfile(sys.argv[1])\n'
        'init_default_scope("mmdet")\n'
        'model = MODELS.build(cfg.model).eval()\n'
        'feats = model.extract_feat(torch.randn(1, 3, 96, 160))\n'
        'print(type(model.backbone).__name__, [tuple(f.shape) for f in feats])\n')
    result = subprocess.run([sys.executable, '-c', script, str(config)], capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip().startswith('UniNet [(1, 256, 24, 40), (1, 256, 12, 20)')


def test_unregistered_without_import_is_a_clear_build_error():
    """Without the custom import the registry names what is missing (sanity of the test above)."""
    script = ('from mmdet.registry import MODELS\n'
              'from mmengine.registry import init_default_scope\n'
              'init_default_scope("mmdet")\n'
              'MODELS.build(dict(type="UniNet"))\n')
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True)
    assert result.returncode != 0 and 'UniNet is not in the' in result.stderr


def test_config_backbone_dict_roundtrip():
    cfg = Config(dict(backbone=dict(type='UniNet', arch=dict(uninet_mm.ARCH_SETTINGS['b0']
                                                             .to_dict()), out_indices=(5,))))
    model = ROOT_MODELS.build(cfg.backbone)
    out = model.eval()(torch.randn(1, 3, 64, 64))
    assert out[0].shape == (1, 256, 2, 2)
