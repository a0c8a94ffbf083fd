"""UniNet DSMs inside the installed packages' Swin Transformer and PVT (paper Table 11).

Small widths and depths keep these fast; the classes are the real ones (the paper-size models
are built by tests/test_dsm_configs.py)."""
import pytest
import torch

pytest.importorskip('mmdet')
pytest.importorskip('mmpretrain')

from mmdet.models.backbones import PyramidVisionTransformer  # noqa: E402
from mmdet.models.backbones import SwinTransformer as MMDetSwin  # noqa: E402
from mmengine.registry import MODELS  # noqa: E402
from mmpretrain.models.backbones import SwinTransformer as MMPretrainSwin  # noqa: E402

import uninet_mm  # noqa: E402,F401  (registers the backbones)
from uninet_mm.models.backbones.dsm_transfer import (PatchEmbedDSM,  # noqa: E402
                                                     PatchMergingDSM, load_shared_weights)
from uninet_mm.models.layers import DOWNSAMPLE_MODULES  # noqa: E402

SETTINGS = {
    'lg': dict(dsms=('LG', 'LG', 'LG', 'LG'), dsm_kv_strides=(8, 1, 1, 1)),
    'l_lg': dict(dsms=('L', 'L', 'LG', 'LG')),
}
# name -> (registered type, base class, small-model kwargs, channels, replaced module names)
BACKBONES = {
    'swin_mmpretrain': (
        'SwinTransformerDSM', MMPretrainSwin,
        dict(arch=dict(embed_dims=32, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8]),
             window_size=4, drop_path_rate=0.0, pad_small_map=True),
        (32, 64, 128, 256),
        ['patch_embed', 'stages.0.downsample', 'stages.1.downsample', 'stages.2.downsample']),
    'swin_mmdet': (
        'MMDetSwinTransformerDSM', MMDetSwin,
        dict(embed_dims=32, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8], window_size=4,
             drop_path_rate=0.0),
        (32, 64, 128, 256),
        ['patch_embed', 'stages.0.downsample', 'stages.1.downsample', 'stages.2.downsample']),
    'pvt_mmdet': (
        'PyramidVisionTransformerDSM', PyramidVisionTransformer,
        dict(embed_dims=32, num_layers=[1, 1, 1, 1], num_heads=[1, 2, 4, 8],
             drop_path_rate=0.0, pretrain_img_size=64),
        (32, 64, 128, 256),
        ['layers.0.0', 'layers.1.0', 'layers.2.0', 'layers.3.0']),
}


def build(name, setting='l_lg', **kwargs):
    type_name, _, base_kwargs, _, _ = BACKBONES[name]
    return MODELS.build(dict(type=type_name, **base_kwargs, **SETTINGS[setting], **kwargs))


def build_base(name, **kwargs):
    _, base_cls, base_kwargs, _, _ = BACKBONES[name]
    return base_cls(**base_kwargs, **kwargs)


@pytest.mark.parametrize('name', sorted(BACKBONES))
@pytest.mark.parametrize('setting', sorted(SETTINGS))
def test_dsms_replace_only_the_downsampling_points(name, setting):
    model = build(name, setting)
    base = build_base(name)
    replaced = BACKBONES[name][4]
    assert model.replaced_modules == replaced
    for point, (module_name, kind) in enumerate(zip(replaced, SETTINGS[setting]['dsms'])):
        wrapper = model.get_submodule(module_name)
        expected = PatchEmbedDSM if point == 0 or name == 'pvt_mmdet' else PatchMergingDSM
        assert type(wrapper) is expected
        assert type(wrapper.dsm) is DOWNSAMPLE_MODULES[kind]
    prefixes = tuple(n + '.' for n in replaced)
    ours = {k: v.shape for k, v in model.state_dict().items() if not k.startswith(prefixes)}
    theirs = {k: v.shape for k, v in base.state_dict().items() if not k.startswith(prefixes)}
    assert ours == theirs  # every other layer is the base package's, keys and shapes


@pytest.mark.parametrize('name', sorted(BACKBONES))
@pytest.mark.parametrize('setting', sorted(SETTINGS))
@pytest.mark.parametrize('size', [(64, 96), (50, 75)])
def test_non_square_inputs_and_every_out_index(name, setting, size):
    channels = BACKBONES[name][3]
    height, width = size
    for out_indices in [(0, ), (1, ), (2, ), (3, ), (0, 1, 2, 3)]:
        model = build(name, setting, out_indices=out_indices)
        model.init_weights()
        model.train()
        outs = model(torch.randn(2, 3, height, width))
        assert len(outs) == len(out_indices)
        for out, index in zip(outs, out_indices):
            stride = 4 * 2**index
            assert out.shape == (2, channels[index], -(-height // stride),
                                 -(-width // stride)), (out_indices, index)
            assert torch.isfinite(out).all()
    sum(o.float().mean() for o in outs).backward()
    for module_name in model.replaced_modules:
        grads = [p.grad for p in model.get_submodule(module_name).parameters()]
        assert grads and all(g is not None for g in grads), module_name


def _checkpoint(name, base, tmp_path):
    """The base package's own checkpoint format for each base class."""
    state = base.state_dict()
    if name == 'swin_mmpretrain':  # an mmpretrain classifier checkpoint
        state = {'backbone.' + k: v for k, v in state.items()}
        state['head.fc.weight'] = torch.zeros(10, 256)
        init = dict(type='Pretrained', checkpoint=str(tmp_path / 'ckpt.pth'), prefix='backbone.')
        extra = {}
    elif name == 'swin_mmdet':  # an mmdet detector checkpoint
        state = {'backbone.' + k: v for k, v in state.items()}
        state['neck.lateral_convs.0.conv.weight'] = torch.zeros(4, 32, 1, 1)
        init = dict(type='Pretrained', checkpoint=str(tmp_path / 'ckpt.pth'))
        extra = dict(convert_weights=False)
    else:  # mmdet's PVT keys (convert_weights=False)
        init = dict(type='Pretrained', checkpoint=str(tmp_path / 'ckpt.pth'))
        extra = dict(convert_weights=False)
    torch.save(dict(state_dict=state, meta={}), tmp_path / 'ckpt.pth')
    return init, extra


@pytest.mark.parametrize('name', sorted(BACKBONES))
def test_base_checkpoint_loads_into_every_shared_layer(name, tmp_path):
    base = build_base(name)
    with torch.no_grad():  # values no initialisation produces
        for param in base.parameters():
            param.copy_(torch.randn_like(param))
    init, extra = _checkpoint(name, base, tmp_path)
    model = build(name, 'l_lg', init_cfg=init, **extra)
    model.init_weights()
    prefixes = tuple(n + '.' for n in model.replaced_modules)
    base_state = base.state_dict()
    shared = [k for k in model.state_dict() if not k.startswith(prefixes)]
    assert len(shared) > 10
    for key, value in model.state_dict().items():
        if key.startswith(prefixes):
            assert key not in base_state
        else:
            assert torch.equal(value, base_state[key]), key

    report = load_shared_weights(build(name, 'l_lg'), dict(base_state), model.replaced_modules)
    assert set(report['loaded']) == set(shared)
    assert report['dropped'] and all(k.startswith(prefixes) for k in report['dropped'])
    assert report['new'] and all(k.startswith(prefixes) for k in report['new'])


@pytest.mark.parametrize('name', sorted(BACKBONES))
def test_unfitting_checkpoint_is_refused_untouched(name, tmp_path):
    model = build(name)
    state = dict(build_base(name).state_dict())
    first_shared = next(k for k in state if 'blocks' in k or '.1.' in k)
    state.pop(first_shared)
    state['extra.weight'] = torch.zeros(3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError) as error:
        load_shared_weights(model, state, model.replaced_modules)
    message = str(error.value)
    assert first_shared in message and 'extra.weight' in message
    assert 'Nothing was loaded' in message
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_official_swin_checkpoint_keys_the_base_ignores_are_tolerated(tmp_path):
    """mmdet's Swin reads the official classifier checkpoint through ``swin_converter``: its
    final ``norm`` and stored shift masks are ignored and the per-output norms start fresh, as
    in the base class; everything else must fit."""
    from mmdet.models.backbones.swin import swin_converter
    base = build_base('swin_mmdet', out_indices=(3, ))
    converted = {k: v for k, v in base.state_dict().items()}
    official = {}
    for key, value in converted.items():  # invert swin_converter's renames (not the orders)
        key = key.replace('stages', 'layers', 1).replace('attn.w_msa.', 'attn.')
        key = key.replace('ffn.layers.0.0.', 'mlp.fc1.').replace('ffn.layers.1.', 'mlp.fc2.')
        key = key.replace('patch_embed.projection', 'patch_embed.proj')
        official[key.replace('norm3.', 'norm.')] = value
    official['layers.0.blocks.1.attn_mask'] = torch.zeros(4, 16, 16)
    official['head.weight'] = torch.zeros(10, 256)
    assert set(swin_converter(official)) >= {'backbone.' + k for k in converted
                                             if not k.startswith('norm3')}
    torch.save(official, tmp_path / 'official.pth')
    model = build('swin_mmdet', out_indices=(0, 3), convert_weights=True,
                  init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'official.pth')))
    model.init_weights()
    blocks = [k for k in converted if '.blocks.' in k]
    for key in blocks:
        assert torch.equal(model.state_dict()[key], converted[key]), key


@pytest.mark.parametrize('registry_module', ['mmdet.registry', 'mmseg.registry',
                                             'mmpretrain.registry'])
def test_builds_from_every_downstream_registry(registry_module):
    pytest.importorskip(registry_module.split('.')[0])
    from uninet_mm.models.backbones import transfer_backbone_class
    registry = __import__(registry_module, fromlist=['MODELS']).MODELS
    for name, (type_name, base_cls, kwargs, _, _) in BACKBONES.items():
        model = registry.build(dict(type=type_name, **kwargs))
        assert type(model) is transfer_backbone_class(type_name)
        assert isinstance(model, base_cls)


def test_import_stays_light():
    """``import uninet_mm`` registers the transfer backbones without importing mmdet or
    mmpretrain; building one imports its base package."""
    import subprocess
    import sys
    code = ('import sys, uninet_mm\n'
            'from mmengine.registry import MODELS\n'
            'assert MODELS.get("PyramidVisionTransformerDSM") is not None\n'
            'assert "mmdet" not in sys.modules and "mmpretrain" not in sys.modules\n')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
