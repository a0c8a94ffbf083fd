"""The official-checkpoint converter and the proof that converted weights compute what the
authors' reference code computes."""
import json
import subprocess
import sys

import pytest
import torch

from uninet_mm import UniNet
from uninet_mm.converters import ConversionError, convert_official_state_dict
from uninet_mm.models.acceleration import accelerate, fuse_for_inference, to_channels_last
from uninet_mm.models.backbones.dsm_transfer import strip_prefix
from uninet_mm.utils import CheckpointMismatchError

from .conftest import REPO_ROOT

TOOL = REPO_ROOT / 'tools' / 'model_converters' / 'uninet_official_to_mm.py'


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).abs().max() / expected.abs().max()).item()


@pytest.fixture(scope='module')
def tiny_a(official_fixtures):
    state_dict = torch.load(official_fixtures / 'tiny_a_official_state_dict.pth',
                            weights_only=True)
    io = torch.load(official_fixtures / 'tiny_a_official_io.pth', weights_only=True)
    arch_json = json.loads((official_fixtures / 'tiny_a_arch.json').read_text())
    return state_dict, io, arch_json


def test_inferred_arch_matches_reference_description(tiny_a):
    state_dict, _, ref = tiny_a
    arch = convert_official_state_dict(state_dict).arch
    assert arch['stem_channels'] == ref['stem_dim']
    assert arch['head_channels'] == ref['final_head_dim']
    stages = arch['stages']
    assert [s['repeats'] for s in stages] == ref['repeats']
    assert [s['expansion'] for s in stages] == ref['expansion']
    assert [s['channels'] for s in stages] == ref['channels']
    assert [s['stride'] for s in stages] == ref['strides']
    assert [s['gop'] for s in stages] == ref['block_ops']
    assert [s['dsm'] for s in stages[1:]] == ref['ds_ops']


def test_converted_tiny_a_reproduces_reference_outputs(tiny_a, tmp_path):
    """Through the CLI tool: six stage outputs and logits within 1e-4 of the reference."""
    state_dict, io, _ = tiny_a
    src, dst = tmp_path / 'official.pth', tmp_path / 'converted.pth'
    torch.save({'model': state_dict}, src)
    subprocess.run([sys.executable, str(TOOL), str(src), str(dst)], check=True)
    checkpoint = torch.load(dst, weights_only=True)
    arch = checkpoint['meta']['arch']

    model = UniNet(arch, out_indices=(0, 1, 2, 3, 4, 5, 6), with_head_conv=True,
                   init_cfg=dict(type='Pretrained', checkpoint=str(dst), prefix='backbone.'))
    model.init_weights()
    model.eval()
    classifier = torch.nn.Linear(arch['head_channels'], checkpoint['meta']['num_classes'])
    classifier.load_state_dict({'weight': checkpoint['state_dict']['head.fc.weight'],
                                'bias': checkpoint['state_dict']['head.fc.bias']})
    with torch.no_grad():
        outs = model(io['input'])
        logits = classifier(outs[6].mean((2, 3)))
    assert len(io['stage_outputs']) == 6
    for index, (out, ref) in enumerate(zip(outs[:6], io['stage_outputs'])):
        assert out.shape == ref.shape, index
        assert relative_error(out, ref) < 1e-4, f'stage {index}'
    assert relative_error(logits, io['logits']) < 1e-4


def test_parity_test_can_fail(tiny_a):
    """The parity check above notices a single perturbed weight."""
    state_dict, io, _ = tiny_a
    converted = convert_official_state_dict(state_dict)
    weights = {k: v.clone() for k, v in strip_prefix(converted.state_dict, 'backbone.').items()}
    weights['stages.5.blocks.1.token_mixer.qkv.weight'] += 0.05
    model = UniNet(converted.arch, out_indices=(5,), with_head_conv=True)
    model.load_state_dict(weights)
    with torch.no_grad():
        out = model.eval()(io['input'])[0]
    assert relative_error(out, io['stage_outputs'][5]) > 1e-3


@pytest.mark.parametrize('variant', ['b1', 'b3'])
def test_published_key_lists_convert_completely(official_fixtures, variant):
    keys = json.loads((official_fixtures / f'uninet{variant}_official_keys.json').read_text())
    state_dict = {k: torch.zeros(shape) for k, shape in keys.items()}
    converted = convert_official_state_dict(state_dict)
    assert len(converted.state_dict) == len(keys)
    assert converted.num_classes == 1000
    assert UniNet(converted.arch).arch == UniNet(variant).arch
    model = UniNet(variant, out_indices=(6,), with_head_conv=True)
    own = model.state_dict()
    backbone = strip_prefix(converted.state_dict, 'backbone.')
    assert backbone.keys() == own.keys()
    assert all(backbone[k].shape == own[k].shape for k in own)
    assert {k for k in converted.state_dict if not k.startswith('backbone.')} == {
        'head.fc.weight', 'head.fc.bias'}


def test_unplaceable_keys_are_listed(tiny_a):
    state_dict = dict(tiny_a[0])
    state_dict['blocks.3.extra_thing.weight'] = torch.zeros(3)
    state_dict['dist_head.weight'] = torch.zeros(3)
    with pytest.raises(ConversionError, match=r'2 keys could not be placed: '
                                              r".*'blocks.3.extra_thing.weight'.*dist_head"):
        convert_official_state_dict(state_dict)
    with pytest.raises(ConversionError, match='not a reference UniNet state dict'):
        convert_official_state_dict({'conv1.weight': torch.zeros(1)})


def test_checkpoint_that_does_not_fit_is_refused(tiny_a, tmp_path):
    converted = convert_official_state_dict(tiny_a[0])
    path = tmp_path / 'tiny.pth'
    torch.save(dict(meta=dict(arch=converted.arch), state_dict=converted.state_dict), path)
    model = UniNet('b1', init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                       prefix='backbone.'))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError, match=r'(?s)made for arch.*shape mismatches: '
                                                      r'stem\.conv\.weight: checkpoint '
                                                      r'\(24, 3, 3, 3\) vs model \(32, 3, 3, 3\)'):
        model.init_weights()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched
    wrong_prefix = UniNet(converted.arch, init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                                        prefix='model.backbone.'))
    with pytest.raises(CheckpointMismatchError, match=r"prefix 'model.backbone.'.*backbone\."):
        wrong_prefix.init_weights()


def test_tool_reports_bad_input(tmp_path):
    bad = tmp_path / 'bad.pth'
    torch.save({'conv1.weight': torch.zeros(1)}, bad)
    result = subprocess.run([sys.executable, str(TOOL), str(bad), str(tmp_path / 'out.pth')],
                            capture_output=True, text=True)
    assert result.returncode != 0 and 'cannot be converted' in result.stderr
    assert not (tmp_path / 'out.pth').exists()
    result = subprocess.run([sys.executable, str(TOOL), str(tmp_path / 'missing.pth'),
                             str(tmp_path / 'out.pth')], capture_output=True, text=True)
    assert result.returncode != 0 and 'does not exist' in result.stderr


def _converted_tiny_a(tiny_a, **kwargs):
    """(eval-mode UniNet with the converted reference weights, classifier Linear)."""
    converted = convert_official_state_dict(tiny_a[0])
    model = UniNet(converted.arch, out_indices=(0, 1, 2, 3, 4, 5, 6), with_head_conv=True,
                   **kwargs)
    model.load_state_dict(strip_prefix(converted.state_dict, 'backbone.'))
    classifier = torch.nn.Linear(converted.arch['head_channels'], converted.num_classes)
    classifier.load_state_dict({'weight': converted.state_dict['head.fc.weight'],
                                'bias': converted.state_dict['head.fc.bias']})
    return model.eval(), classifier


def _inference_form(form: str, model: torch.nn.Module):
    if form == 'channels_last':
        return to_channels_last(model)
    if form == 'fused':
        return fuse_for_inference(model)
    if form == 'accelerate':  # fused copy in channels_last
        return accelerate(model, inference=True)
    assert form == 'compile_frozen'  # what docs/speed.md recommends for repeated inference
    return accelerate(model, inference=True, compile=True, fullgraph=True)


@pytest.mark.parametrize('form', [
    'plain', 'channels_last', 'fused', 'accelerate',
    # plain torch.compile: equal to the plain model (tests/test_acceleration.py), which equals
    # the reference (here); freezing is the form only this test covers
    pytest.param('compile_frozen', marks=pytest.mark.slow),
    'with_cp', 'with_cp_selective'])
def test_accelerated_forms_reproduce_reference_outputs(tiny_a, form):
    """Every speed/memory form of the converted model computes the reference's six stage
    outputs and logits (the acceleration tests compare the forms with the plain model; this
    compares them with the authors' code). The checkpointing forms run in train mode with
    eval-mode BatchNorms (the reference outputs are eval-mode), so checkpointing is active,
    and their backward runs through the recomputation."""
    _, io, _ = tiny_a
    torch._dynamo.reset()
    if form.startswith('with_cp'):
        model, classifier = _converted_tiny_a(
            tiny_a, with_cp='selective' if form == 'with_cp_selective' else True)
        model.train()
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eval()
        inputs = io['input'].clone().requires_grad_()
        outs = model(inputs)
    else:
        model, classifier = _converted_tiny_a(tiny_a)
        if form != 'plain':
            model = _inference_form(form, model)
        with torch.no_grad(), torch._inductor.config.patch(freezing=form == 'compile_frozen'):
            outs = model(io['input'])
    logits = classifier(outs[6].mean((2, 3)))
    for index, (out, ref) in enumerate(zip(outs[:6], io['stage_outputs'])):
        assert out.shape == ref.shape, index
        assert relative_error(out.detach(), ref) < 1e-4, f'{form}: stage {index}'
    assert relative_error(logits.detach(), io['logits']) < 1e-4, form
    if form.startswith('with_cp'):
        logits.sum().backward()
        assert torch.isfinite(inputs.grad).all() and inputs.grad.abs().sum() > 0
