"""The paper's DSM experiments as configs (Tables 10 and 11): each loads, keeps its base recipe,
builds the paper-size model, trains one step and predicts on a small synthetic batch (64x64
images, batch 2; the detector with few proposals), with tests/test_configs.py's helpers."""
from pathlib import Path

import pytest
import torch

pytest.importorskip('mmdet')
pytest.importorskip('mmpretrain')

from mmengine.config import Config  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402

from .test_configs import (assert_predictions, backward_of_one_batch, build_model,  # noqa: E402
                           shrink, synthetic_batch)

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / 'configs'

ABLATIONS = {
    'ablations/uninet_b0_l_dsm_in1k.py': 'L',
    'ablations/uninet_b0_g_dsm_in1k.py': 'G',
    'ablations/uninet_b0_lg_dsm_in1k.py': 'LG',
}
TRANSFER = {
    'dsm_transfer/swin_tiny_lg_dsm_in1k.py': ('SwinTransformerDSM', ('LG', ) * 4),
    'dsm_transfer/swin_tiny_l_lg_dsm_in1k.py': ('SwinTransformerDSM', ('L', 'L', 'LG', 'LG')),
    'dsm_transfer/pvt_tiny_lg_dsm_in1k.py': ('PyramidVisionTransformerDSM', ('LG', ) * 4),
    'dsm_transfer/pvt_tiny_l_lg_dsm_in1k.py': ('PyramidVisionTransformerDSM',
                                               ('L', 'L', 'LG', 'LG')),
    'dsm_transfer/mask_rcnn_swin_tiny_l_lg_dsm_1x.py': ('MMDetSwinTransformerDSM',
                                                        ('L', 'L', 'LG', 'LG')),
}
ALL = {**ABLATIONS, **TRANSFER}


def load(name: str) -> Config:
    return Config.fromfile(str(CONFIG_DIR / name))


def test_every_dsm_config_is_listed():
    shipped = {str(p.relative_to(CONFIG_DIR)) for d in ('ablations', 'dsm_transfer')
               for p in (CONFIG_DIR / d).glob('*.py')}
    assert shipped == set(ALL)


@pytest.mark.parametrize('name', sorted(ABLATIONS))
def test_ablation_keeps_the_b0_recipe(name):
    cfg, base = load(name), load('uninet_b0_in1k.py')
    backbone = cfg.model.backbone
    assert backbone.type == 'UniNetDSMAblation' and backbone.dsm == ABLATIONS[name]
    assert backbone.arch == 'b0'
    for key in ('optim_wrapper', 'param_scheduler', 'train_cfg', 'train_dataloader',
                'val_dataloader', 'auto_scale_lr'):
        assert cfg[key] == base[key], key
    assert {k: v for k, v in cfg.model.items() if k != 'backbone'} == \
        {k: v for k, v in base.model.items() if k != 'backbone'}


def _plain(value):
    """Config values as plain Python, without the ``_scope_`` marks that ``mmpretrain::`` /
    ``mmdet::`` inheritance adds."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != '_scope_'}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _without(cfg_dict, *keys):
    return {k: v for k, v in _plain(cfg_dict).items() if k not in keys}


def test_swin_configs_keep_mmpretrain_recipe():
    import mmpretrain
    swin = Config.fromfile(str(Path(mmpretrain.__file__).parent / '.mim' / 'configs' /
                               'swin_transformer' / 'swin-tiny_16xb64_in1k.py'))
    for name in ('dsm_transfer/swin_tiny_lg_dsm_in1k.py',
                 'dsm_transfer/swin_tiny_l_lg_dsm_in1k.py'):
        cfg = load(name)
        for key in ('optim_wrapper', 'param_scheduler', 'train_cfg', 'train_dataloader',
                    'val_dataloader'):
            assert _plain(cfg[key]) == _plain(swin[key]), key
        assert _without(cfg.model, 'backbone') == _without(swin.model, 'backbone')
        assert _without(cfg.model.backbone, 'type', 'dsms', 'dsm_kv_strides') == \
            _without(swin.model.backbone, 'type')


def test_detection_config_swaps_only_the_backbone():
    import mmdet
    base = Config.fromfile(str(Path(mmdet.__file__).parent / '.mim' / 'configs' / 'swin' /
                               'mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py'))
    cfg = load('dsm_transfer/mask_rcnn_swin_tiny_l_lg_dsm_1x.py')
    assert _without(cfg.model, 'backbone') == _without(base.model, 'backbone')
    assert _without(cfg.model.backbone, 'type', 'dsms') == _without(base.model.backbone, 'type')
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'
    assert cfg.model.backbone.convert_weights is True
    for key in ('optim_wrapper', 'param_scheduler', 'train_cfg', 'train_dataloader'):
        assert _plain(cfg[key]) == _plain(base[key]), key


@pytest.mark.parametrize('name', sorted(ALL))
def test_dsm_config_train_step_and_inference(name):
    torch.manual_seed(0)
    cfg = load(name)
    shrink(cfg)
    backbone_cfg = cfg.model.backbone
    if backbone_cfg.get('init_cfg', {}).get('type') == 'Pretrained':
        # Test-only: the official Swin-T checkpoint URL cannot be fetched here.
        backbone_cfg.init_cfg = None
    if backbone_cfg.type == 'SwinTransformerDSM':
        # Test-only: mmpretrain's Swin refuses maps smaller than its 7x7 window (64 px input).
        backbone_cfg.pad_small_map = True
    model = build_model(cfg)
    backbone = model.backbone
    expected = ALL[name]
    if name in TRANSFER:
        assert type(backbone).__name__ == expected[0]
        assert backbone.dsms == expected[1]
    else:
        assert backbone.dsm == expected
    model.train()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    data = synthetic_batch(cfg, model)
    backward_of_one_batch(model, data, optim_wrapper)
    dsm_params = ([p for name_ in backbone.replaced_modules
                   for p in backbone.get_submodule(name_).parameters()]
                  if name in TRANSFER else
                  [p for s in backbone.stages[1:] for p in s.downsample.parameters()])
    assert dsm_params and all(p.grad is not None for p in dsm_params), 'a DSM gets no gradient'
    optim_wrapper.step()
    optim_wrapper.zero_grad()
    assert_predictions(model, data, cfg)


# ------------------------------------------------------------------------------- the tools
def test_get_flops_prints_the_dsm_models(capsys):
    from .test_tools import load_tool
    tool = load_tool('analysis_tools/get_flops.py')
    tool['main']([str(CONFIG_DIR / 'ablations' / 'uninet_b0_lg_dsm_in1k.py'), '--shape', '160'])
    out = capsys.readouterr().out
    assert 'Flops: 0.67G' in out and 'Params: 11.51M' in out
    # Swin's last stage needs at least its 7x7 window: 224x288 -> 7x9 (PVT takes any size).
    for name, shape in (('dsm_transfer/pvt_tiny_l_lg_dsm_in1k.py', ('64', '96')),
                        ('dsm_transfer/swin_tiny_l_lg_dsm_in1k.py', ('224', '288'))):
        tool['main']([str(CONFIG_DIR / name), '--shape', *shape, '--by-module'])
        out = capsys.readouterr().out
        assert f'Input shape: {shape[0]}x{shape[1]}' in out and 'backbone' in out
        flops = float(out.split('Flops: ')[1].split('G')[0])
        assert flops > 0


def test_report_table_rows_and_model_zoo_update():
    from .test_tools import DEV_SCRIPTS, load_tool
    tool = load_tool('report_model_table.py', root=DEV_SCRIPTS)
    rows = {row.config: row for row in tool['ROWS']}
    assert set(ALL) - {'dsm_transfer/mask_rcnn_swin_tiny_l_lg_dsm_1x.py'} <= set(rows)
    assert tool['top1'](rows['ablations/uninet_b0_g_dsm_in1k.py']) == '76.8'
    assert tool['top1'](rows['dsm_transfer/pvt_tiny_l_lg_dsm_in1k.py']) == 'not given'
    assert tool['top1'](rows['mask_rcnn_uninet_b1_1x.py']) == 'n/a'

    page = (REPO / 'docs' / 'model_zoo.md').read_text()
    lines = page.split(tool['START'])[1].split(tool['END'])[0].strip().splitlines()
    assert len(lines) == 2 + len(tool['ROWS'])  # header, rule, one line per row
    # Regenerating with one freshly measured row changes that row only.
    row = rows['ablations/uninet_b0_l_dsm_in1k.py']
    updated = tool['update_model_zoo'](page, {row.name: dict(params=1.0, flops=2.0)})
    new_lines = updated.split(tool['START'])[1].split(tool['END'])[0].strip().splitlines()
    changed = [(a, b) for a, b in zip(lines, new_lines) if a != b]
    assert len(changed) == 1 and '| 1.00 |' in changed[0][1] and '| 2.000 |' in changed[0][1]
    assert tool['update_model_zoo'](page, {}) == page  # the page is the tool's output
