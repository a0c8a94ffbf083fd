"""Strict loading of pretrained backbone weights, with errors that say what does not fit."""
import logging
from typing import Any, Dict, List, Mapping, MutableMapping, Optional

import torch
from mmengine.logging import print_log
from torch import nn


class CheckpointMismatchError(ValueError):
    """A checkpoint whose keys or shapes do not fit the model it is loaded into."""


def extract_state_dict(checkpoint: Dict) -> Dict[str, torch.Tensor]:
    """The weights of a checkpoint saved bare or under ``state_dict`` / ``model``."""
    for key in ('state_dict', 'model'):
        if isinstance(checkpoint.get(key), dict):
            return checkpoint[key]
    return checkpoint


def _listing(keys: List[str], limit: int = 10) -> str:
    shown = ', '.join(map(str, keys[:limit]))
    return shown + (f', ... ({len(keys) - limit} more)' if len(keys) > limit else '')


def load_pretrained_backbone(model: nn.Module, checkpoint: str, prefix: Optional[str] = None,
                             map_location: str = 'cpu') -> None:
    """Load ``checkpoint`` (its ``prefix`` part, e.g. ``'backbone.'``) into ``model`` strictly.

    Classification head-conv weights are skipped, with a log line, when the model was built
    without a head conv. Anything else that is missing, unexpected or of another shape raises
    :class:`CheckpointMismatchError` listing the keys, before any weight is changed.
    """
    # Imported here: mmengine.runner pulls in the whole training stack (and OpenCV).
    from mmengine.runner.checkpoint import CheckpointLoader

    loaded = CheckpointLoader.load_checkpoint(checkpoint, map_location=map_location)
    state_dict = extract_state_dict(loaded)
    meta = loaded.get('meta', {}) if isinstance(loaded, dict) else {}
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        selected = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if not selected:
            heads = sorted({k.split('.')[0] + '.' for k in state_dict})
            raise CheckpointMismatchError(
                f'No key of {checkpoint} starts with prefix {prefix!r}; its keys start with '
                f'{_listing(heads)}. Set init_cfg.prefix to one of those, or convert an '
                f'official checkpoint with tools/model_converters/uninet_official_to_mm.py')
    else:
        selected = dict(state_dict)

    own = model.state_dict()
    skipped = [k for k in selected
               if k.startswith('head_conv.') and getattr(model, 'head_conv', 1) is None]
    missing = [k for k in own if k not in selected]
    unexpected = [k for k in selected if k not in own and k not in skipped]
    mismatched = [f'{k}: checkpoint {tuple(selected[k].shape)} vs model {tuple(own[k].shape)}'
                  for k in own if k in selected and selected[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        lines = [f'Checkpoint {checkpoint} does not fit {type(model).__name__}'
                 + (f' (the checkpoint was made for arch {meta["arch"]})'
                    if isinstance(meta, dict) and 'arch' in meta else '') + ':']
        if mismatched:
            lines.append(f'  {len(mismatched)} shape mismatches: {_listing(mismatched)}')
        if missing:
            lines.append(f'  {len(missing)} model keys missing from it: {_listing(missing)}')
        if unexpected:
            lines.append(f'  {len(unexpected)} checkpoint keys the model has no place for: '
                         f'{_listing(unexpected)}')
        lines.append('Check that the config arch matches the checkpoint, and the prefix.')
        raise CheckpointMismatchError('\n'.join(lines))
    model.load_state_dict({k: selected[k] for k in own}, strict=True)
    print_log(f'Loaded {len(own)} pretrained tensors from {checkpoint}'
              + (f' (skipped {len(skipped)} head-conv tensors: with_head_conv=False)'
                 if skipped else ''), logger='current', level=logging.INFO)


class PretrainedConfigError(ValueError):
    """``pretrained`` and ``model.backbone.init_cfg`` ask for different checkpoints."""


def pretrained_entry(init_cfg: Any) -> Optional[MutableMapping]:
    """The ``Pretrained`` entry of a backbone ``init_cfg`` (a dict or a list of dicts), or None.

    A dict with a ``checkpoint`` but no ``type`` (what ``--cfg-options
    model.backbone.init_cfg.checkpoint=PATH`` makes of a backbone without an ``init_cfg``) is
    one: its ``type`` becomes ``'Pretrained'``. A missing ``prefix`` becomes ``'backbone.'``,
    the prefix of the checkpoints mmpretrain, mmdet and mmseg save. The entry is updated in
    place and returned.
    """
    for entry in init_cfg if isinstance(init_cfg, list) else [init_cfg]:
        if not isinstance(entry, MutableMapping):
            continue
        if 'checkpoint' in entry and 'type' not in entry:
            entry['type'] = 'Pretrained'
        if entry.get('type') == 'Pretrained':
            entry.setdefault('prefix', 'backbone.')
            return entry
    return None


def _drop_entry(backbone: MutableMapping, entry: Mapping) -> None:
    """Remove ``entry`` from the backbone's ``init_cfg`` (None when nothing is left)."""
    init = backbone.get('init_cfg')
    rest = [e for e in init if e is not entry] if isinstance(init, list) else []
    backbone['init_cfg'] = rest or None


def apply_pretrained(cfg: Any, cfg_options: Optional[Mapping] = None) -> Optional[str]:
    """Make the backbone's ``init_cfg`` load the checkpoint the user asked for; return its path.

    Run on the final config (after ``--cfg-options``), since a config file evaluates its own
    expressions when it is parsed and never sees later overrides. A user can set the checkpoint

    * as ``pretrained = 'PATH'`` in a config file or ``--cfg-options pretrained=PATH``: the
      backbone gets ``init_cfg=dict(type='Pretrained', checkpoint=PATH, prefix='backbone.')``
      (``pretrained=None`` on the command line turns loading off);
    * through ``model.backbone.init_cfg`` (in the file or as ``--cfg-options
      model.backbone.init_cfg.checkpoint=PATH``): kept as given; a missing ``type`` becomes
      ``'Pretrained'`` and a missing ``prefix`` ``'backbone.'``, and ``pretrained`` is set to it.

    Both on the command line with different paths raise :class:`PretrainedConfigError`.
    Configs without a ``pretrained`` key (ImageNet training) are left alone.
    """
    backbone = cfg.get('model', {}).get('backbone')
    if 'pretrained' not in cfg or not isinstance(backbone, MutableMapping):
        return None
    options = dict(cfg_options or {})
    init_from_cli = any(k == 'model.backbone.init_cfg' or k.startswith('model.backbone.init_cfg.')
                        for k in options)
    pretrained = cfg.get('pretrained') or None
    entry = pretrained_entry(backbone.get('init_cfg'))
    from_init = entry.get('checkpoint') if entry is not None else None

    if init_from_cli and 'pretrained' in options:
        if pretrained != from_init:
            raise PretrainedConfigError(
                f'--cfg-options sets pretrained={pretrained!r} and model.backbone.init_cfg '
                f'with checkpoint={from_init!r}; give only one of them')
    elif init_from_cli or (pretrained is None and 'pretrained' not in options):
        cfg['pretrained'] = from_init  # the init_cfg decides
        if from_init is None and entry is not None:  # a Pretrained entry without checkpoint
            _drop_entry(backbone, entry)
        return from_init
    if pretrained is None:
        backbone['init_cfg'] = None
        return None
    if from_init is not None and from_init != pretrained:
        print_log(f'pretrained = {pretrained!r} replaces the checkpoint {from_init!r} of '
                  'model.backbone.init_cfg', logger='current', level=logging.WARNING)
    backbone['init_cfg'] = dict(entry or {}, type='Pretrained', checkpoint=pretrained,
                                prefix=(entry or {}).get('prefix', 'backbone.'))
    return pretrained
