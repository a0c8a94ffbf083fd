"""The unified search space: counts, decoding into UniNet archs, presets and validation."""
import itertools
import json
import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from uninet_mm.models import UniNet, parse_arch
from uninet_mm.search import PRESETS, SearchSpace, SearchSpaceError, round_channels

from .conftest import tiny_arch

FULL = SearchSpace()


def small_base() -> dict:
    """A narrow, shallow base (the tiny test arch) so decoded networks run in milliseconds."""
    arch = tiny_arch()
    for stage, channels in zip(arch['stages'], (8, 16, 16, 32, 32, 64)):
        stage['channels'] = channels
    return arch


def test_full_space_counts_match_the_paper():
    assert [(d.stage, d.name) for d in FULL.decisions[:5]] == [
        (1, 'gop'), (1, 'dsm'), (1, 'expansion'), (1, 'width'), (1, 'repeat_delta')]
    assert len(FULL.decisions) == 25
    assert FULL.base_arch == parse_arch('b0') and FULL.input_size == (160, 160)
    per_stage = FULL.num_choices[:5]
    assert per_stage == [5, 3, 5, 5, 5] and np.prod(per_stage) == 1875
    assert FULL.size == 1875 ** 5
    assert 2e16 < FULL.size < 2.4e16  # "about 2 x 10^16 networks"
    # clamped repeats and channel rounding merge some sequences; never more than size
    assert 8e15 < FULL.num_distinct < FULL.size


def test_num_distinct_is_exact_on_a_small_space():
    space = SearchSpace(gops=('SA', 'Conv'), dsms=('L', 'LG'), expansions=(2,),
                        widths=(0.5, 0.75, 1.0), repeat_deltas=(-2, -1, 0),
                        searched_stages=(1, 4))
    archs = {repr(space.decode(tokens))
             for tokens in itertools.product(*(range(n) for n in space.num_choices))}
    assert space.size == np.prod(space.num_choices) == (2 * 2 * 3 * 3) ** 2
    assert space.num_distinct == len(archs) < space.size


def test_decode_applies_the_rules():
    tokens = [0] * len(FULL.decisions)  # SA, L, e=2, width 0.5, repeat delta -2 everywhere
    arch = FULL.decode(tokens)
    base = parse_arch('b0')
    assert arch['stages'][0] == base.to_dict()['stages'][0]  # stage 0 fixed
    assert arch['stem_channels'] == 32 and arch['head_channels'] == 1280
    for index, stage in enumerate(arch['stages'][1:], start=1):
        ref = base.stages[index]
        assert (stage['gop'], stage['dsm'], stage['expansion']) == ('SA', 'L', 2)
        assert stage['channels'] == round_channels(ref.channels * 0.5, 32)
        assert stage['channels'] % 32 == 0
        assert stage['repeats'] == max(1, ref.repeats - 2)
        assert stage['stride'] == ref.stride
    assert [s['repeats'] for s in arch['stages'][1:]] == [1, 2, 2, 2, 6]  # b0: 2, 4, 4, 4, 8
    # Conv GOP with the L-DSM rounds to multiples of 8; an attention DSM forces 32
    stage1 = FULL.decisions[:5]
    conv, lg = stage1[0].choices.index('Conv'), stage1[1].choices.index('LG')
    width_075 = stage1[3].choices.index(0.75)
    conv_l = FULL.decode([conv, 0, 0, width_075, 2] + tokens[5:])['stages'][1]
    conv_lg = FULL.decode([conv, lg, 0, width_075, 2] + tokens[5:])['stages'][1]
    assert conv_l['channels'] == 40 and conv_lg['channels'] == 64  # 48 * 0.75 = 36
    assert conv_l['repeats'] == 2


@pytest.mark.parametrize('value, divisor, expected', [
    (36, 8, 40), (36, 32, 64), (24, 32, 32), (4, 8, 8), (64, 32, 64), (72, 32, 96),
    (192, 32, 192), (60, 8, 64), (320, 32, 320)])
def test_round_channels(value, divisor, expected):
    assert round_channels(value, divisor) == expected


@settings(max_examples=200, deadline=None, database=None)  # no .hypothesis dir in the clone
@given(data=st.data(), preset=st.sampled_from(sorted(PRESETS)))
def test_every_sequence_decodes_to_a_valid_arch(data, preset):
    space = SearchSpace.preset(preset)
    tokens = [data.draw(st.integers(0, n - 1)) for n in space.num_choices]
    arch = space.decode(tokens)
    spec = parse_arch(arch)  # raises on any invalid field
    assert spec.to_dict() == arch
    for index, stage in enumerate(spec.stages):
        if index in space.searched_stages:
            assert stage.gop in space.gops and stage.dsm in space.dsms
            assert stage.expansion in space.expansions and stage.repeats >= 1
            if stage.gop in ('SA', 'LSA') or stage.dsm in ('LG', 'G'):
                assert stage.channels % 32 == 0
            else:
                assert stage.channels % 8 == 0
    assert space.stage_choices(tokens)[space.searched_stages[0]]['gop'] in space.gops


@st.composite
def search_spaces(draw) -> SearchSpace:
    """Any valid space: subsets of the GOPs/DSMs, odd widths and deltas, any published base."""
    def subset(values):
        return tuple(draw(st.lists(st.sampled_from(values), min_size=1, unique=True)))
    return SearchSpace(
        base_arch=draw(st.sampled_from(['b0', 'b3', 'b6'])),
        gops=subset(['SA', 'LSA', 'Conv', 'DWConv', 'MLP']), dsms=subset(['L', 'LG', 'G']),
        expansions=tuple(draw(st.lists(st.integers(1, 8), min_size=1, max_size=4, unique=True))),
        widths=tuple(draw(st.lists(st.floats(0.05, 4.0), min_size=1, max_size=4, unique=True))),
        repeat_deltas=tuple(draw(st.lists(st.integers(-30, 5), min_size=1, max_size=4,
                                          unique=True))),
        searched_stages=subset([1, 2, 3, 4, 5]),
        input_size=(draw(st.integers(32, 512)), draw(st.integers(32, 512))))


@settings(max_examples=100, deadline=None, database=None)
@given(space=search_spaces(), data=st.data())
def test_any_valid_space_decodes_to_valid_archs(space, data):
    tokens = [data.draw(st.integers(0, n - 1)) for n in space.num_choices]
    parse_arch(space.decode(tokens))
    assert space.backbone_kwargs(tokens)['input_size'] == space.input_size
    assert SearchSpace.from_config(json.loads(json.dumps(space.config))).decode(tokens) == \
        space.decode(tokens)


def test_random_networks_build_and_run_at_a_non_square_size():
    space = SearchSpace(base_arch=small_base(), input_size=(64, 96))
    rng = random.Random(0)
    seen_gops = set()
    for _ in range(20):
        tokens = space.sample(rng)
        kwargs = space.backbone_kwargs(tokens)
        assert kwargs['input_size'] == (64, 96)
        model = UniNet(**kwargs, out_indices=(1, 2, 3, 4, 5)).eval()
        with torch.no_grad():
            outs = model(torch.randn(1, 3, 64, 96))
        strides = (4, 8, 16, 16, 32)
        for out, stage, stride in zip(outs, kwargs['arch']['stages'][1:], strides):
            assert out.shape == (1, stage['channels'], -(-64 // stride), -(-96 // stride))
            assert torch.isfinite(out).all()
        seen_gops.update(s['gop'] for s in kwargs['arch']['stages'][1:])
    assert seen_gops == {'SA', 'LSA', 'Conv', 'DWConv', 'MLP'}


def test_sample_sources_are_reproducible():
    assert FULL.sample(random.Random(3)) == FULL.sample(random.Random(3))
    assert FULL.sample(np.random.default_rng(3)) == FULL.sample(np.random.default_rng(3))
    tokens = FULL.sample()
    assert all(0 <= t < n for t, n in zip(tokens, FULL.num_choices))
    with pytest.raises(TypeError, match='rng must be'):
        FULL.sample(3)


@pytest.mark.parametrize('name, gops, dsms, emitted', [
    ('conv_only', ('Conv', 'DWConv'), ('L', 'LG', 'G'), 25),
    ('transformer_only', ('SA', 'LSA'), ('L', 'LG', 'G'), 25),
    ('mlp_only', ('MLP',), ('L', 'LG', 'G'), 20),
    ('l_dsm_only', ('SA', 'LSA', 'Conv', 'DWConv', 'MLP'), ('L',), 20),
    ('lg_dsm_only', ('SA', 'LSA', 'Conv', 'DWConv', 'MLP'), ('LG',), 20),
    ('g_dsm_only', ('SA', 'LSA', 'Conv', 'DWConv', 'MLP'), ('G',), 20),
])
def test_presets_restrict_the_space(name, gops, dsms, emitted):
    space = SearchSpace.preset(name)
    assert space.gops == gops and space.dsms == dsms
    assert len(space.decisions) == emitted  # single-value decisions are fixed, not emitted
    arch = space.decode(space.sample(random.Random(0)))
    assert {s['gop'] for s in arch['stages'][1:]} <= set(gops)
    assert {s['dsm'] for s in arch['stages'][1:]} <= set(dsms)
    # the same space in one config line
    assert SearchSpace.from_config(dict(preset=name)).config == space.config
    assert SearchSpace.from_config(dict(gops=gops, dsms=dsms)).config == space.config


def test_config_round_trip_and_overrides():
    space = SearchSpace.from_config(dict(preset='conv_only', searched_stages=(5, 4),
                                         input_size=160, widths=[1.0, 1.5]))
    assert space.searched_stages == (4, 5) and space.input_size == (160, 160)
    assert space.gops == ('Conv', 'DWConv') and space.widths == (1.0, 1.5)
    again = SearchSpace.from_config(json.loads(json.dumps(space.config)))  # as a log stores it
    assert again.config == space.config and again.decisions == space.decisions
    tokens = space.sample(random.Random(1))
    assert again.decode(tokens) == space.decode(tokens)


@pytest.mark.parametrize('kwargs, pattern', [
    (dict(gops=('SA', 'Transformer')), r"'gops' has unknown values \['Transformer'\]; "
                                       r"allowed: \['DWConv', 'Conv', 'SA', 'LSA', 'MLP'\]"),
    (dict(dsms=('L', 'X')), r"'dsms' has unknown values \['X'\]; allowed: \['L', 'LG', 'G'\]"),
    (dict(gops=()), r"'gops' is an empty choice list"),
    (dict(widths=[]), r"'widths' is an empty choice list"),
    (dict(gops='SA'), r"'gops' must be a list of choices"),
    (dict(expansions=(2, 0, 4)), r"'expansions' has invalid values \[0\]; .*positive"),
    (dict(widths=(1.0, -0.5)), r"'widths' has invalid values \[-0.5\]; .*positive"),
    (dict(widths=(1.0, float('nan'))), r"'widths' has invalid values \[nan\]"),
    (dict(expansions=(True, 2)), r"'expansions' has invalid values \[True\]"),
    (dict(repeat_deltas=(0, 0.5)), r"repeat_deltas has non-int values \[0.5\]"),
    (dict(expansions=(2, 3, 2)), r"'expansions' lists 2 more than once"),
    (dict(gops=('SA', 'SA')), r"'gops' lists 'SA' more than once"),
    (dict(searched_stages=(0, 1)), r"searched_stages has invalid values \[0\]; allowed: stage "
                                   r"indices in 1..5 .*stage 0 has no downsampling"),
    (dict(searched_stages=(1, 6)), r"searched_stages has invalid values \[6\]"),
    (dict(searched_stages=(4, 4)), r"'searched_stages' lists 4 more than once"),
    (dict(searched_stages=()), r"'searched_stages' is an empty choice list"),
    (dict(input_size=(224,)), r'input_size must be a positive int or \(H, W\)'),
    (dict(input_size=0), r'input_size must be a positive int or \(H, W\)'),
    (dict(base_arch='b9'), r"base_arch is invalid: Unknown UniNet arch 'b9'"),
])
def test_invalid_settings_say_what_to_change(kwargs, pattern):
    with pytest.raises(SearchSpaceError, match=pattern):
        SearchSpace(**kwargs)
    assert issubclass(SearchSpaceError, ValueError)


def test_invalid_configs_and_presets():
    with pytest.raises(SearchSpaceError, match=r"unknown keys \['gop'\]; allowed: \['preset'"):
        SearchSpace.from_config(dict(gop=('SA',)))
    with pytest.raises(SearchSpaceError, match=r"unknown search space preset 'convs'.*conv_only"):
        SearchSpace.preset('convs')
    with pytest.raises(SearchSpaceError, match='must be a dict'):
        SearchSpace.from_config(['SA'])


def test_invalid_tokens():
    tokens = FULL.sample(random.Random(0))
    with pytest.raises(SearchSpaceError, match='decodes 25 tokens, got 24'):
        FULL.decode(tokens[:-1])
    bad = list(tokens)
    bad[1] = 3  # stage 1 dsm has 3 choices
    with pytest.raises(SearchSpaceError, match=r'token 1 \(stage 1 dsm\) = 3 is out of range; '
                                               r'allowed: ints in 0..2'):
        FULL.decode(bad)
    bad[1] = 1.0
    with pytest.raises(SearchSpaceError, match='token 1'):
        FULL.decode(bad)
    # tensors and numpy arrays decode like lists
    assert FULL.decode(torch.tensor(tokens)) == FULL.decode(np.array(tokens)) == \
        FULL.decode(tokens)
