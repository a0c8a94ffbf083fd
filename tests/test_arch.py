"""Arch settings: the published family and the validation of user-written arch dicts."""
import copy

import pytest

from uninet_mm import ARCH_SETTINGS, ArchError, UniNet, parse_arch
from uninet_mm.models.arch_settings import DSMS, GOPS

from .conftest import tiny_arch


def test_published_family_is_complete():
    assert sorted(ARCH_SETTINGS) == [f'b{i}' for i in range(7)]
    for spec in ARCH_SETTINGS.values():
        assert [s.gop for s in spec.stages] == ['DWConv'] * 4 + ['SA'] * 2
        assert [s.dsm for s in spec.stages] == [None, 'L', 'L', 'L', 'LG', 'LG']
        assert spec.stage_strides == (2, 4, 8, 16, 16, 32)


def test_name_and_dict_forms_agree():
    spec = parse_arch('B3')
    assert parse_arch(spec.to_dict()) == spec
    assert parse_arch(spec) == spec


def test_unknown_name_lists_choices():
    with pytest.raises(ArchError, match=r"'b9'.*\['b0', 'b1', 'b2', 'b3', 'b4', 'b5', 'b6'\]"):
        parse_arch('b9')


@pytest.mark.parametrize('stage, fields, pattern', [
    (4, dict(channels=100), r"stage 4 field 'channels' = 100 .*divisible by 32 .*96 or 128"),
    (3, dict(dsm='G', channels=48), r"stage 3 field 'channels' = 48 .*dsm 'G'"),
    (2, dict(gop='Transformer'), r"stage 2 field 'gop' = 'Transformer' .*'DWConv'"),
    (2, dict(dsm=None), r"stage 2 field 'dsm' = None .*\['L', 'LG', 'G'\]"),
    (0, dict(dsm='L'), r"stage 0 field 'dsm' = 'L' .*use None"),
    (0, dict(stride=2), r"stage 0 field 'stride' = 2"),
    (1, dict(stride=3), r"stage 1 field 'stride' = 3 .*\[1, 2\]"),
    (1, dict(expansion=0), r"stage 1 field 'expansion' = 0"),
    (1, dict(channels=-8), r"stage 1 field 'channels' = -8"),
    (1, dict(repeats=0), r"stage 1 field 'repeats' = 0"),
    (5, dict(repeats=1.5), r"stage 5 field 'repeats' = 1.5"),
])
def test_invalid_stage_fields_are_named(stage, fields, pattern):
    with pytest.raises(ArchError, match=pattern):
        parse_arch(tiny_arch({stage: fields}))


def test_missing_and_unknown_keys():
    arch = tiny_arch()
    del arch['stages'][1]['repeats']
    arch['stages'][1]['depth'] = 2
    with pytest.raises(ArchError, match=r"stage 1 has unknown keys \['depth'\] and misses "
                                        r"\['repeats'\]"):
        parse_arch(arch)
    with pytest.raises(ArchError, match=r"misses \['head_channels'\]"):
        parse_arch(dict(stem_channels=16, stages=arch['stages']))
    with pytest.raises(ArchError, match='non-empty list'):
        parse_arch(dict(stem_channels=16, head_channels=8, stages=[]))


def test_every_search_space_choice_builds():
    """Each GOP and DSM of the search space is accepted in an attention-width stage."""
    for gop in GOPS:
        for dsm in DSMS:
            arch = tiny_arch({4: dict(gop=gop, dsm=dsm)})
            model = UniNet(arch, input_size=(64, 96) if gop == 'MLP' else None)
            assert model.arch.stages[4].gop == gop and model.arch.stages[4].dsm == dsm


def test_backbone_arguments_are_validated():
    with pytest.raises(ValueError, match=r'out_indices \(1, 7\) invalid.*\[0, 1, 2, 3, 4, 5\]'):
        UniNet(tiny_arch(), out_indices=(1, 7))
    with pytest.raises(ValueError, match='6 is the head conv, available with with_head_conv'):
        UniNet(tiny_arch(), out_indices=(6,))
    with pytest.raises(ValueError, match=r'frozen_stages must be an int in \[-1, 6\]'):
        UniNet(tiny_arch(), frozen_stages=7)
    with pytest.raises(ValueError, match='drop_path_rate'):
        UniNet(tiny_arch(), drop_path_rate=1.5)
    with pytest.raises(ValueError, match=r'stage 4 uses the MLP GOP.*input_size'):
        UniNet(tiny_arch({4: dict(gop='MLP')}))
    with pytest.raises(ValueError, match='input_size must be'):
        UniNet(tiny_arch(), input_size=(1, 2, 3))
    with pytest.raises(ArchError):
        UniNet(copy.deepcopy(tiny_arch({5: dict(channels=33)})))
