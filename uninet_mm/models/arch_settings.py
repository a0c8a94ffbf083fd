"""Typed UniNet architecture settings: the published B0-B6 family and the search space.

An architecture is a stem width, a head width and one :class:`StageSpec` per stage. Users write
it as a name (``'b3'``) or as a plain dict::

    dict(stem_channels=32, head_channels=1280,
         stages=[dict(gop='DWConv', dsm=None, expansion=1, channels=24, repeats=2, stride=1),
                 dict(gop='DWConv', dsm='L', expansion=4, channels=56, repeats=3, stride=2),
                 ...])

:func:`parse_arch` turns either form into an :class:`ArchSpec`, validating every field with an
error that names the stage, the field, the value and what is allowed.
"""
from dataclasses import asdict, dataclass
from numbers import Real
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

#: Global operators (block types) of the search space.
GOPS = ('DWConv', 'Conv', 'SA', 'LSA', 'MLP')
#: Downsampling modules: local, local-global and global.
DSMS = ('L', 'LG', 'G')
#: GOPs and DSMs whose attention splits channels into heads of this width.
HEAD_DIM = 32
ATTENTION_GOPS = ('SA', 'LSA')
ATTENTION_DSMS = ('LG', 'G')
STRIDES = (1, 2)

STAGE_FIELDS = ('gop', 'dsm', 'expansion', 'channels', 'repeats', 'stride')
ARCH_FIELDS = ('stem_channels', 'head_channels', 'stages')


@dataclass(frozen=True)
class StageSpec:
    """One stage: ``repeats`` blocks of type ``gop`` after one ``dsm`` (None for stage 0)."""
    gop: str
    dsm: Optional[str]
    expansion: float
    channels: int
    repeats: int
    stride: int


@dataclass(frozen=True)
class ArchSpec:
    """A whole UniNet: stem width, classification head width and the stages in order."""
    stem_channels: int
    head_channels: int
    stages: Tuple[StageSpec, ...]

    @property
    def stage_channels(self) -> Tuple[int, ...]:
        return tuple(stage.channels for stage in self.stages)

    @property
    def stage_strides(self) -> Tuple[int, ...]:
        """Output stride of every stage relative to the input image (the stem halves it)."""
        strides, total = [], 2
        for stage in self.stages:
            total *= stage.stride
            strides.append(total)
        return tuple(strides)

    def to_dict(self) -> Dict[str, Any]:
        """The plain-dict form accepted by :func:`parse_arch` (e.g. for checkpoint meta)."""
        arch = asdict(self)
        arch['stages'] = [dict(stage) for stage in arch['stages']]
        return arch


def _family(repeats, channels, expansion=(1, 4, 6, 3, 2, 5), stem_channels=32) -> ArchSpec:
    """A published variant: DWConv stages 0-3, SA stages 4-5, L-DSM then LG-DSM."""
    gops = ('DWConv',) * 4 + ('SA',) * 2
    dsms = (None, 'L', 'L', 'L', 'LG', 'LG')
    strides = (1, 2, 2, 2, 1, 2)
    stages = tuple(
        StageSpec(gop=g, dsm=d, expansion=e, channels=c, repeats=r, stride=s)
        for g, d, e, c, r, s in zip(gops, dsms, expansion, channels, repeats, strides))
    return ArchSpec(stem_channels=stem_channels, head_channels=1280, stages=stages)


#: The published UniNet family (spec section 1). B0 and B1 share weights; B0 runs at 160 px.
ARCH_SETTINGS: Dict[str, ArchSpec] = {
    'b0': _family((1, 2, 4, 4, 4, 8), (24, 48, 80, 128, 128, 256)),
    'b1': _family((1, 2, 4, 4, 4, 8), (24, 48, 80, 128, 128, 256)),
    'b2': _family((2, 3, 6, 6, 6, 12), (24, 48, 80, 128, 128, 256)),
    'b3': _family((2, 3, 7, 7, 7, 14), (24, 56, 96, 160, 160, 288)),
    'b4': _family((2, 4, 9, 9, 9, 18), (32, 64, 112, 192, 192, 352)),
    'b5': _family((3, 5, 10, 10, 10, 20), (32, 64, 112, 224, 224, 448)),
    'b6': _family((4, 6, 12, 12, 12, 24), (48, 96, 160, 256, 256, 512)),
}

#: Input resolution each published variant was trained and evaluated at (square).
PAPER_INPUT_SIZES = {'b0': 160, 'b1': 224, 'b2': 256, 'b3': 288, 'b4': 320, 'b5': 384, 'b6': 448}


class ArchError(ValueError):
    """An invalid UniNet architecture; the message says what to change."""


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _stage_error(index: int, field: str, value: Any, allowed: str) -> ArchError:
    return ArchError(f'UniNet arch: stage {index} field {field!r} = {value!r} is invalid; '
                     f'{allowed}')


def _check_keys(what: str, value: Mapping, fields: Sequence[str]) -> None:
    unknown = sorted(set(value) - set(fields))
    missing = [f for f in fields if f not in value]
    if unknown or missing:
        raise ArchError(f'{what} has unknown keys {unknown} and misses {missing}; it needs '
                        f'exactly {list(fields)}')


def _parse_stage(index: int, stage: Any) -> StageSpec:
    if isinstance(stage, StageSpec):
        stage = asdict(stage)
    if not isinstance(stage, Mapping):
        raise ArchError(f'UniNet arch: stage {index} must be a dict with keys {STAGE_FIELDS}, '
                        f'got {type(stage).__name__}')
    _check_keys(f'UniNet arch: stage {index}', stage, STAGE_FIELDS)
    gop, dsm, expansion = stage['gop'], stage['dsm'], stage['expansion']
    channels, repeats, stride = stage['channels'], stage['repeats'], stage['stride']

    if gop not in GOPS:
        raise _stage_error(index, 'gop', gop, f'allowed: {list(GOPS)}')
    if index == 0 and dsm is not None:
        raise _stage_error(index, 'dsm', dsm, 'stage 0 has no downsampling module: use None')
    if index > 0 and dsm not in DSMS:
        raise _stage_error(index, 'dsm', dsm, f'allowed for stages 1+: {list(DSMS)}')
    if not isinstance(expansion, Real) or isinstance(expansion, bool) or expansion <= 0:
        raise _stage_error(index, 'expansion', expansion,
                           'must be a positive number (the search space uses 2-6)')
    if not _positive_int(channels):
        raise _stage_error(index, 'channels', channels, 'must be a positive int')
    if not _positive_int(repeats):
        raise _stage_error(index, 'repeats', repeats, 'must be a positive int')
    if stride not in STRIDES or isinstance(stride, bool):
        raise _stage_error(index, 'stride', stride, f'allowed: {list(STRIDES)}')
    if index == 0 and stride != 1:
        raise _stage_error(index, 'stride', stride,
                           'stage 0 has no downsampling module, so its stride must be 1')
    needs_heads = gop in ATTENTION_GOPS or dsm in ATTENTION_DSMS
    if needs_heads and channels % HEAD_DIM:
        user = f'gop {gop!r}' if gop in ATTENTION_GOPS else f'dsm {dsm!r}'
        lower = channels // HEAD_DIM * HEAD_DIM
        hint = f'{lower} or {lower + HEAD_DIM}' if lower else f'{HEAD_DIM}'
        raise _stage_error(index, 'channels', channels,
                           f'{user} splits channels into attention heads of width {HEAD_DIM}, '
                           f'so channels must be divisible by {HEAD_DIM} (e.g. {hint})')
    return StageSpec(gop=gop, dsm=dsm, expansion=expansion, channels=channels,
                     repeats=repeats, stride=stride)


def parse_arch(arch: Union[str, Mapping, ArchSpec]) -> ArchSpec:
    """Resolve ``arch`` (a variant name, a dict or an :class:`ArchSpec`) into a validated spec.

    Raises:
        ArchError: for an unknown name or any invalid field; the message names the stage,
            the field, the value and what is allowed.
    """
    if isinstance(arch, ArchSpec):
        arch = arch.to_dict()
    if isinstance(arch, str):
        key = arch.lower()
        if key not in ARCH_SETTINGS:
            raise ArchError(f'Unknown UniNet arch {arch!r}; choose one of '
                            f'{sorted(ARCH_SETTINGS)} or pass a dict with keys '
                            f'{list(ARCH_FIELDS)}')
        return ARCH_SETTINGS[key]
    if not isinstance(arch, Mapping):
        raise ArchError(f'UniNet arch must be a name in {sorted(ARCH_SETTINGS)} or a dict, '
                        f'got {type(arch).__name__}')
    _check_keys('UniNet arch dict', arch, ARCH_FIELDS)
    for field in ('stem_channels', 'head_channels'):
        if not _positive_int(arch[field]):
            raise ArchError(f'UniNet arch: {field!r} = {arch[field]!r} must be a positive int')
    stages = arch['stages']
    if isinstance(stages, (str, bytes)) or not hasattr(stages, '__len__') or not len(stages):
        raise ArchError('UniNet arch: "stages" must be a non-empty list of stage dicts')
    spec = ArchSpec(stem_channels=arch['stem_channels'], head_channels=arch['head_channels'],
                    stages=tuple(_parse_stage(i, s) for i, s in enumerate(stages)))
    _check_widths(spec)
    return spec


#: GOPs whose blocks keep their width (no shortcut projection), so their input must have it.
TOKEN_MIXER_GOPS = ('SA', 'LSA', 'MLP')


def _check_widths(spec: ArchSpec) -> None:
    """Checks that need the neighbouring widths: what each block receives and builds.

    Stage 0 has no downsampling module, so its first block receives the stem's channels. A
    DWConv/Conv block can change the width (its shortcut projects), a transformer block cannot:
    with another width it would build and then fail inside the first convolution of forward.
    A hidden width ``int(in_channels * expansion)`` below 1 would build zero-channel layers.
    """
    first = spec.stages[0]
    if first.gop in TOKEN_MIXER_GOPS and first.channels != spec.stem_channels:
        raise _stage_error(
            0, 'channels', first.channels,
            f'stage 0 has no downsampling module, so its first block receives the stem\'s '
            f'{spec.stem_channels} channels, and gop {first.gop!r} keeps the width: set stage 0 '
            f'channels to {spec.stem_channels}, stem_channels to {first.channels}, or use gop '
            f"'DWConv'/'Conv' (which project the shortcut)")
    in_channels = spec.stem_channels
    for index, stage in enumerate(spec.stages):
        block_in = in_channels if stage.dsm is None else stage.channels
        narrowest = min(block_in, stage.channels)
        if int(narrowest * stage.expansion) < 1:
            raise _stage_error(
                index, 'expansion', stage.expansion,
                f'the hidden width int({narrowest} * {stage.expansion}) would be 0; use an '
                f'expansion of at least {1 / narrowest:.3g} (the search space uses 2-6)')
        in_channels = stage.channels
