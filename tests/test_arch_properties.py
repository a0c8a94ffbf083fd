"""Property-based tests (hypothesis) of architecture dicts and input sizes.

* A valid arch, at any input size from 32 to 1333 (square or not), runs forward and backward
  and returns maps of the documented shape: ``ceil(H / stride)`` x ``ceil(W / stride)`` with the
  stage's channels, for every stage.
* An invalid arch (one field of one stage made wrong) raises :class:`ArchError` when the model
  is built, naming the stage and the field -- never an error from inside a forward.

Widths stay tiny, and global attention / token-mixing MLPs are only drawn where their token
count keeps an example fast (the sizes are drawn first); this bounds the run time, not which
archs are valid. The hypothesis profile (tests/conftest.py) is derandomized with a fixed
number of examples, so CI runs the same cases every time.
"""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from uninet_mm import UniNet
from uninet_mm.models.arch_settings import ArchError, parse_arch

# Token budgets per example (cost grows with the product of query and key counts).
GLOBAL_ATTENTION_PAIRS = 2 ** 20
LOCAL_TOKENS = 2 ** 15
DENSE_CONV_PIXELS = 2 ** 16
# Maps larger than this get the narrowest, shallowest stages.
LARGE_MAP = 2 ** 16


def ceil_div(size: int, stride: int) -> int:
    return -(-size // stride)


@st.composite
def sizes(draw):
    height = draw(st.integers(32, 1333))
    width = height if draw(st.booleans()) else draw(st.integers(32, 1333))
    return height, width


@st.composite
def valid_arch(draw, size):
    """A valid arch for an input of ``size``, with attention only where it is cheap."""
    num_stages = draw(st.integers(1, 6))
    stem = 8
    height, width = ceil_div(size[0], 2), ceil_div(size[1], 2)
    stages = []
    for index in range(num_stages):
        stride = 1 if index == 0 else draw(st.sampled_from([1, 2]))
        in_tokens = height * width
        height, width = ceil_div(height, stride), ceil_div(width, stride)
        tokens = height * width
        dsm = None
        if index > 0:
            dsms = ['L'] + (['LG', 'G'] if in_tokens * tokens <= GLOBAL_ATTENTION_PAIRS else [])
            dsm = draw(st.sampled_from(dsms))
        gops = ['DWConv']
        if tokens <= DENSE_CONV_PIXELS:
            gops.append('Conv')
        if tokens <= LOCAL_TOKENS:
            gops.append('LSA')
        if tokens * tokens <= GLOBAL_ATTENTION_PAIRS:
            gops += ['SA', 'MLP']
        gop = draw(st.sampled_from(gops))
        large = tokens > LARGE_MAP
        if gop in ('SA', 'LSA') or dsm in ('LG', 'G'):
            channels = 32  # one attention head
        else:
            channels = draw(st.sampled_from([8] if large else [8, 16, 24]))
        if index == 0 and gop in ('SA', 'LSA', 'MLP'):
            stem = channels  # a transformer stage 0 keeps the stem's width
        expansion = draw(st.sampled_from([1, 2] if large else [1, 1.5, 2, 3]))
        repeats = 1 if large else draw(st.integers(1, 2))
        stages.append(dict(gop=gop, dsm=dsm, expansion=expansion, channels=channels,
                           repeats=repeats, stride=stride))
    return dict(stem_channels=stem, head_channels=16, stages=stages)


@st.composite
def size_and_arch(draw):
    size = draw(sizes())
    return size, draw(valid_arch(size))


@settings(max_examples=min(15, settings().max_examples))
@given(size_and_arch())
def test_valid_arch_runs_with_documented_shapes(case):
    (height, width), arch = case
    num_stages = len(arch['stages'])
    uses_mlp = any(s['gop'] == 'MLP' for s in arch['stages'])
    model = UniNet(arch, out_indices=tuple(range(num_stages)), drop_path_rate=0.1,
                   input_size=(height, width) if uses_mlp else None).train()
    x = torch.randn(2, 3, height, width, requires_grad=True)
    outs = model(x)

    strides = model.arch.stage_strides
    assert strides == tuple(2 * math.prod(s['stride'] for s in arch['stages'][:i + 1])
                            for i in range(num_stages))
    for out, stage, stride, info in zip(outs, arch['stages'], strides, model.feature_info):
        assert out.shape == (2, stage['channels'], ceil_div(height, stride),
                             ceil_div(width, stride))
        assert info['reduction'] == stride and info['num_chs'] == stage['channels']
        assert out.is_contiguous()
    sum((o * torch.randn_like(o)).sum() for o in outs).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ----------------------------------------------------------------------------- invalid archs
# (field, bad value, applies to stage 0 / later stages, text the message must contain)
BAD_FIELDS = [
    ('gop', 'Attention', None, "allowed: ['DWConv'"),
    ('gop', None, None, "allowed: ['DWConv'"),
    ('dsm', 'L', 'first', 'stage 0 has no downsampling module'),
    ('dsm', None, 'later', "allowed for stages 1+: ['L', 'LG', 'G']"),
    ('dsm', 'X', 'later', "allowed for stages 1+"),
    ('expansion', 0, None, 'positive number'),
    ('expansion', -2, None, 'positive number'),
    ('expansion', '4', None, 'positive number'),
    ('expansion', 0.01, None, 'would be 0; use an expansion of at least'),
    ('channels', 0, None, 'positive int'),
    ('channels', 2.5, None, 'positive int'),
    ('channels', 48, 'attention', 'divisible by 32 (e.g. 32 or 64)'),
    ('repeats', 0, None, 'positive int'),
    ('repeats', True, None, 'positive int'),
    ('stride', 3, 'later', 'allowed: [1, 2]'),
    ('stride', 2, 'first', 'its stride must be 1'),
]


@st.composite
def invalid_case(draw):
    size = (32, 32)
    arch = draw(valid_arch(size))
    field, value, where, expected = draw(st.sampled_from(BAD_FIELDS + [
        ('channels', 'mismatch', 'first-mixer', "receives the stem's"),
        ('keys', 'extra', None, 'unknown keys'),
        ('keys', 'missing', None, 'misses'),
    ]))
    stages = arch['stages']
    if where == 'first':
        index = 0
    elif where == 'later':
        if len(stages) == 1:
            stages.append(dict(gop='DWConv', dsm='L', expansion=2, channels=16, repeats=1,
                               stride=2))
        index = draw(st.integers(1, len(stages) - 1))
    else:
        index = draw(st.integers(0, len(stages) - 1))
    stage = stages[index]
    if where == 'attention':
        stage.update(gop='SA', channels=value)
        field_name = 'channels'
    elif where == 'first-mixer':
        index, stage = 0, stages[0]
        stage.update(gop='LSA', channels=64)
        arch['stem_channels'] = 32
        field_name = 'channels'
    elif field == 'keys':
        if value == 'extra':
            stage['kernel_size'] = 5
        else:
            del stage[draw(st.sampled_from(sorted(stage)))]
        field_name = None
    else:
        stage[field] = value
        field_name = field
    return arch, index, field_name, expected


@given(invalid_case())
def test_invalid_arch_is_refused_before_any_forward(case):
    arch, index, field, expected = case
    with pytest.raises(ArchError) as info:
        UniNet(arch)
    message = str(info.value)
    assert f'stage {index}' in message, message
    if field is not None:
        assert f'field {field!r}' in message, message
    assert expected in message, message
    with pytest.raises(ArchError):
        parse_arch(arch)  # the same check, without building anything
