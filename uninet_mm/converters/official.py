"""Convert a state dict of the authors' reference UniNet code into this project's layout.

The reference keeps all blocks of all stages in one flat ``blocks.N`` sequence, with each
downsampling module (DSM) at the index right before the first block of its stage. The DSMs
therefore mark the stage boundaries, which lets :func:`convert_official_state_dict` infer the
whole architecture from the weights alone.
"""
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple

import torch

from ..models.arch_settings import parse_arch

# Reference sub-key prefix -> this project's, per module kind (longest prefix wins).
CONV_BLOCK_KEYS = {
    'residual.1.': 'shortcut.proj.', 'b1.0.': 'expand.0.', 'b1.1.': 'expand.1.',
    'b1.2.': 'expand.2.', 'b2.0.': 'conv.', 'b2.1.': 'conv_norm.', 'b2.3.fc1.': 'se.fc1.',
    'b2.3.fc2.': 'se.fc2.', 'b2.4.': 'project.', 'b2.5.': 'project_norm.'}
SA_BLOCK_KEYS = {
    'pos_embed.': 'pos_embed.', 'norm1.': 'norm1.', 'attn.qkv.': 'token_mixer.qkv.',
    'attn.proj.': 'token_mixer.proj.', 'norm2.': 'norm2.', 'mlp.fc1.': 'mlp.fc1.',
    'mlp.fc2.': 'mlp.fc2.', 'gamma_1': 'layer_scale1', 'gamma_2': 'layer_scale2'}
DSM_SHORTCUT_KEYS = {'residual.0.': 'shortcut.proj.', 'residual.1.': 'shortcut.proj.'}
L_DSM_KEYS = {'downsample.0.': 'local.0.', 'downsample.1.': 'local.1.',
              'downsample.2.': 'local.2.', **DSM_SHORTCUT_KEYS}
LG_DSM_KEYS = {'q.0.': 'query.0.', 'q.1.': 'query.1.', 'q.2.': 'query.2.',
               'q_norm.': 'query_norm.', 'kv_norm.': 'kv_norm.', 'kv.': 'kv.', 'proj.': 'proj.',
               **DSM_SHORTCUT_KEYS}
TOP_LEVEL_KEYS = {'stem.0.': 'backbone.stem.conv.', 'stem.1.': 'backbone.stem.norm.',
                  'head.0.': 'backbone.head_conv.conv.', 'head.1.': 'backbone.head_conv.norm.',
                  # mmpretrain's LinearClsHead names its layer ``fc``.
                  'classifier.': 'head.fc.'}


class ConversionError(ValueError):
    """A state dict that cannot be converted; the message lists the keys concerned."""


@dataclass
class ConvertedCheckpoint:
    state_dict: 'OrderedDict[str, torch.Tensor]'
    arch: Dict
    num_classes: Optional[int]


def _rename(key: str, rules: Mapping[str, str]) -> Optional[str]:
    for old in sorted(rules, key=len, reverse=True):
        if key.startswith(old):
            return rules[old] + key[len(old):]
    return None


def _module_kind(sub_keys: List[str], shapes: Dict[str, Tuple[int, ...]]) -> str:
    """'L', 'LG' (DSMs), 'SA', 'DWConv' or 'Conv' (blocks) from one ``blocks.N``'s keys."""
    if any(k.startswith('downsample.') for k in sub_keys):
        return 'L'
    if any(k.startswith('q.') for k in sub_keys):
        return 'LG'
    if any(k.startswith('attn.') for k in sub_keys):
        return 'SA'
    if 'b2.0.weight' in shapes:
        return 'DWConv' if shapes['b2.0.weight'][1] == 1 else 'Conv'
    raise ConversionError(f'cannot tell what kind of module has keys {sorted(sub_keys)}')


def _expansion(hidden: int, channels: int):
    ratio = hidden / channels
    return int(ratio) if ratio == int(ratio) else ratio


def convert_official_state_dict(state_dict: Mapping[str, torch.Tensor]) -> ConvertedCheckpoint:
    """Map a reference UniNet state dict to ``backbone.*`` / ``head.fc.*`` keys.

    Returns the converted weights, the inferred arch dict (accepted by ``UniNet(arch=...)``)
    and the number of classes (None without a classifier).

    Raises:
        ConversionError: listing every key that could not be placed; nothing is dropped.
    """
    state_dict = {k[len('module.'):] if k.startswith('module.') else k: v
                  for k, v in state_dict.items()}
    shapes = {k: tuple(v.shape) for k, v in state_dict.items()}
    if 'stem.0.weight' not in shapes:
        raise ConversionError('not a reference UniNet state dict: no "stem.0.weight" key '
                              f'(first keys: {sorted(state_dict)[:5]})')

    blocks: Dict[int, List[str]] = {}
    for key in state_dict:
        parts = key.split('.', 2)
        if parts[0] == 'blocks' and len(parts) == 3 and parts[1].isdigit():
            blocks.setdefault(int(parts[1]), []).append(parts[2])

    converted: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    unplaced: List[str] = []
    stages: List[Dict] = []
    stem_channels = shapes['stem.0.weight'][0]
    in_channels = stem_channels
    for index in sorted(blocks):
        sub_keys = blocks[index]
        sub_shapes = {k: shapes[f'blocks.{index}.{k}'] for k in sub_keys}
        kind = _module_kind(sub_keys, sub_shapes)
        if kind in ('L', 'LG'):
            out_key = 'downsample.2.weight' if kind == 'L' else 'q.2.weight'
            stride = 2 if 'residual.1.weight' in sub_shapes else 1
            stages.append(dict(gop=None, dsm=kind, expansion=None,
                               channels=sub_shapes[out_key][0], repeats=0, stride=stride))
            target, rules = f'backbone.stages.{len(stages) - 1}.downsample.', (
                L_DSM_KEYS if kind == 'L' else LG_DSM_KEYS)
        else:
            if not stages:  # stage 0 has no DSM
                stages.append(dict(gop=None, dsm=None, expansion=None,
                                   channels=None, repeats=0, stride=1))
            stage = stages[-1]
            if kind in ('DWConv', 'Conv'):
                channels = sub_shapes['b2.4.weight'][0]
                block_in = in_channels if stage['repeats'] == 0 and stage['dsm'] is None \
                    else channels
                expansion = _expansion(sub_shapes['b2.0.weight'][0], block_in)
                rules = CONV_BLOCK_KEYS
            else:
                channels = sub_shapes['norm1.weight'][0]
                expansion = _expansion(sub_shapes['mlp.fc1.weight'][0], channels)
                rules = SA_BLOCK_KEYS
            for field, value in (('gop', kind), ('expansion', expansion),
                                 ('channels', channels)):
                if stage[field] is None:
                    stage[field] = value
                elif stage[field] != value:
                    raise ConversionError(
                        f'blocks.{index}: {field} {value!r} differs from {stage[field]!r} of the '
                        f'other blocks of stage {len(stages) - 1}; a stage must be uniform')
            target = f'backbone.stages.{len(stages) - 1}.blocks.{stage["repeats"]}.'
            stage['repeats'] += 1
            in_channels = channels
        for sub_key in sub_keys:
            new = _rename(sub_key, rules)
            if new is None:
                unplaced.append(f'blocks.{index}.{sub_key}')
            else:
                converted[target + new] = state_dict[f'blocks.{index}.{sub_key}']
        if kind in ('L', 'LG'):
            in_channels = stages[-1]['channels']

    for key, value in state_dict.items():
        if key.startswith('blocks.'):
            continue
        new = _rename(key, TOP_LEVEL_KEYS)
        if new is None:
            unplaced.append(key)
        else:
            converted[new] = value
    empty = [i for i, s in enumerate(stages) if s['repeats'] == 0]
    if unplaced or empty:
        raise ConversionError(
            (f'{len(unplaced)} keys could not be placed: {unplaced}' if unplaced else '')
            + (f' stages {empty} have a downsampling module but no blocks' if empty else ''))

    head_channels = shapes['head.0.weight'][0] if 'head.0.weight' in shapes else 1280
    arch = dict(stem_channels=stem_channels, head_channels=head_channels, stages=stages)
    parse_arch(arch)  # raises a clear ArchError for an impossible inferred layout
    num_classes = shapes['classifier.weight'][0] if 'classifier.weight' in shapes else None
    return ConvertedCheckpoint(state_dict=converted, arch=arch, num_classes=num_classes)
