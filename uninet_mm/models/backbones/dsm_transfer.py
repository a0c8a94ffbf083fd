"""UniNet's downsampling modules dropped into other hierarchical transformers (paper Table 11).

A hierarchical transformer (Swin, PVT) downsamples at four points: the patch embedding
(point 0, stride 4 from the image) and the three stage transitions (points 1-3, stride 2).
:class:`DSMTransferMixin` builds the installed package's own backbone and then replaces the
layers at the chosen points by UniNet DSMs (``uninet_mm.models.layers``), wrapped to speak the
base layer's interface. Everything else is the base package's code and keeps its state-dict
keys, so the base package's checkpoints load into every layer the DSMs do not replace
(:func:`load_shared_weights`).
"""
import re
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.logging import MMLogger
from torch import nn

from ..layers import DOWNSAMPLE_MODULES
from .uninet import UniNet

NUM_POINTS = 4


def _tokens(x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """(B, C, H, W) -> (B, H*W, C) contiguous tokens and (H, W)."""
    return x.flatten(2).transpose(1, 2).contiguous(), tuple(x.shape[2:])


class PatchEmbedDSM(nn.Module):
    """A DSM in place of a patch embedding: (B, a, H, W) -> ((B, H'*W', b), (H', W')),
    H' = ceil(H / stride), as the base packages' PatchEmbed returns (tokens, out_size)."""

    def __init__(self, dsm: nn.Module, out_channels: int):
        super().__init__()
        self.dsm = dsm
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        return _tokens(self.dsm(x))


class PatchMergingDSM(PatchEmbedDSM):
    """A DSM in place of a patch merging layer:
    ((B, H*W, a), (H, W)) -> ((B, H'*W', b), (H', W')), as mmcv's PatchMerging."""

    def forward(self, x: torch.Tensor, hw_shape: Sequence[int]
                ) -> Tuple[torch.Tensor, Tuple[int, int]]:
        batch, _, channels = x.shape
        x = x.transpose(1, 2).reshape(batch, channels, *hw_shape)
        return _tokens(self.dsm(x))


def build_dsm(kind: str, in_channels: int, out_channels: int, stride: int,
              norm_cfg: Optional[Dict] = None, kv_stride: int = 1) -> nn.Module:
    """A UniNet DSM (B, a, H, W) -> (B, b, ceil(H/s), ceil(W/s)); ``kv_stride`` only for the
    attention DSMs (LG, G)."""
    if kind not in DOWNSAMPLE_MODULES:
        raise ValueError(f'DSM kind must be one of {sorted(DOWNSAMPLE_MODULES)} or None, '
                         f'got {kind!r}')
    extra = {} if kind == 'L' else dict(kv_stride=kv_stride)
    if kind == 'L' and kv_stride != 1:
        raise ValueError(f'kv_stride={kv_stride} given for an L-DSM, which has no keys')
    return DOWNSAMPLE_MODULES[kind](in_channels, out_channels, stride, norm_cfg=norm_cfg,
                                    **extra)


def _check_points(name: str, values: Sequence, allowed: str) -> Tuple:
    if isinstance(values, (str, bytes)) or len(values) != NUM_POINTS:
        raise ValueError(f'{name} needs one entry per downsampling point (patch embedding, '
                         f'then the three stage transitions), {NUM_POINTS} in all; '
                         f'{allowed}; got {values!r}')
    return tuple(values)


class DSMTransferMixin:
    """Mixed in front of a base backbone class; subclasses describe the four points.

    Subclasses implement ``_downsampling_point(i) -> (module_name, in_channels,
    out_channels, stride)`` and ``_convert_checkpoint(state_dict)`` (the base package's own
    checkpoint handling: key conversion, prefix stripping).
    """

    def _replace_downsampling(self, dsms: Sequence[Optional[str]], kv_strides: Sequence[int],
                              norm_cfg: Optional[Dict]) -> None:
        dsms = _check_points('dsms', dsms, "each 'L', 'LG', 'G' or None (keep the base layer)")
        kv_strides = _check_points('dsm_kv_strides', kv_strides, 'each a positive int')
        self.dsms = dsms
        self.replaced_modules: List[str] = []
        for point, (kind, kv_stride) in enumerate(zip(dsms, kv_strides)):
            if kind is None:
                continue
            name, in_channels, out_channels, stride = self._downsampling_point(point)
            dsm = build_dsm(kind, in_channels, out_channels, stride, norm_cfg, kv_stride)
            wrapper = PatchEmbedDSM if point == 0 or self._point_takes_maps else PatchMergingDSM
            parent, _, attr = name.rpartition('.')
            setattr(self.get_submodule(parent) if parent else self, attr,
                    wrapper(dsm, out_channels))
            self.replaced_modules.append(name)
        self._init_dsms()

    #: True where the base feeds NCHW maps to every downsampling layer (PVT's patch embeds).
    _point_takes_maps = False

    def _dsm_modules(self) -> List[nn.Module]:
        return [self.get_submodule(name) for name in self.replaced_modules]

    def _init_dsms(self) -> None:
        """The UniNet reference initialisation for the DSMs (PyTorch defaults for convs)."""
        for dsm in self._dsm_modules():
            for module in dsm.modules():
                if hasattr(module, 'reset_parameters') and not isinstance(module, nn.Linear):
                    module.reset_parameters()
            dsm.apply(UniNet._init_reference_weights)

    def _pretrained_cfg(self) -> Optional[Dict]:
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            return cfg
        return None

    def init_weights(self) -> None:
        """From scratch: the base package's initialisation, then the DSMs'. With
        ``init_cfg=dict(type='Pretrained', checkpoint=...)``: the DSMs' initialisation, then
        the base package's checkpoint (in its own format) for every other layer, checked
        strictly by :func:`load_shared_weights`."""
        cfg = self._pretrained_cfg()
        if cfg is None:
            super().init_weights()
            self._init_dsms()
            return
        from mmengine.runner.checkpoint import CheckpointLoader
        logger = MMLogger.get_current_instance()
        checkpoint = CheckpointLoader.load_checkpoint(
            cfg['checkpoint'], logger=logger, map_location=cfg.get('map_location', 'cpu'))
        state_dict = checkpoint.get('state_dict', checkpoint.get('model', checkpoint))
        state_dict = self._convert_checkpoint(dict(state_dict), cfg.get('prefix'))
        self._init_dsms()
        report = load_shared_weights(self, state_dict, self.replaced_modules,
                                     *self._tolerated_keys())
        logger.info(f'{type(self).__name__}: loaded {len(report["loaded"])} tensors from '
                    f'{cfg["checkpoint"]}; the DSMs at {self.replaced_modules} start from '
                    f'scratch ({len(report["new"])} tensors) and replace the checkpoint\'s '
                    f'{report["dropped"]}; left as the base package leaves them: '
                    f'{report["tolerated"]}')
        self._is_init = True

    def _convert_checkpoint(self, state_dict: Dict[str, torch.Tensor],
                            prefix: Optional[str]) -> Dict[str, torch.Tensor]:
        return strip_prefix(state_dict, prefix)

    def _tolerated_keys(self) -> Tuple[Sequence[str], Sequence[str]]:
        """(missing, unexpected) key patterns the base package tolerates for its checkpoint
        format; none by default."""
        return (), ()


def strip_prefix(state_dict: Dict[str, torch.Tensor], prefix: Optional[str]
                 ) -> Dict[str, torch.Tensor]:
    """Keys under ``prefix`` (e.g. ``'backbone.'``) with it removed; all keys when None."""
    if not prefix:
        return state_dict
    selected = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not selected:
        raise ValueError(f'no key of the checkpoint starts with prefix {prefix!r}; first keys: '
                         f'{list(state_dict)[:5]}')
    return selected


def load_shared_weights(model: nn.Module, state_dict: Dict[str, torch.Tensor],
                        replaced_modules: Sequence[str], tolerate_missing: Sequence[str] = (),
                        tolerate_unexpected: Sequence[str] = ()) -> Dict[str, List[str]]:
    """Load a base backbone's ``state_dict`` into its DSM-equipped version ``model``.

    Keys under a replaced module (``replaced_modules``, e.g. ``'stages.0.downsample'``) are
    dropped from the checkpoint; the DSM keys there keep their values. Every other key must
    match exactly (name and shape), or nothing is loaded and a ValueError lists what differs.
    ``tolerate_missing`` / ``tolerate_unexpected``: regular expressions (``re.search``) of
    keys that the base package itself leaves missing or ignores for this checkpoint format
    (e.g. the official Swin classifier has no ``norm0``-``norm2`` of a detection backbone).

    Returns:
        ``loaded`` (checkpoint keys copied), ``dropped`` (checkpoint keys of replaced layers),
        ``new`` (model keys of the DSMs, not in any base checkpoint) and ``tolerated``
        (missing or ignored keys matched by the patterns).
    """
    prefixes = tuple(name + '.' for name in replaced_modules)
    own = model.state_dict()
    dropped = sorted(k for k in state_dict if k.startswith(prefixes))
    new = sorted(k for k in own if k.startswith(prefixes))
    shared = {k: v for k, v in state_dict.items() if not k.startswith(prefixes)}
    missing = sorted(k for k in own if not k.startswith(prefixes) and k not in shared)
    unexpected = sorted(k for k in shared if k not in own)
    tolerated = ([k for k in missing if any(re.search(p, k) for p in tolerate_missing)]
                 + [k for k in unexpected if any(re.search(p, k) for p in tolerate_unexpected)])
    missing = [k for k in missing if k not in tolerated]
    unexpected = [k for k in unexpected if k not in tolerated]
    shared = {k: v for k, v in shared.items() if k in own}
    mismatched = sorted(f'{k}: checkpoint {tuple(v.shape)}, model {tuple(own[k].shape)}'
                        for k, v in shared.items() if k in own and v.shape != own[k].shape)
    if missing or unexpected or mismatched:
        def listed(keys):
            return ', '.join(keys[:8]) + (f' ... ({len(keys)} in all)' if len(keys) > 8 else '')
        raise ValueError(
            f'{type(model).__name__}: the checkpoint does not fit the layers shared with the '
            f'base backbone (the DSMs replace {list(replaced_modules)}). '
            f'Missing: [{listed(missing)}]; unexpected: [{listed(unexpected)}]; '
            f'shape mismatch: [{listed(mismatched)}]. Use a checkpoint of the same base '
            f'architecture in the base package\'s format (set convert_weights / prefix to '
            f'match it). Nothing was loaded.')
    result = model.load_state_dict(shared, strict=False)
    assert not result.unexpected_keys, result
    assert set(result.missing_keys) <= set(new) | set(tolerated), result
    return dict(loaded=sorted(shared), dropped=dropped, new=new, tolerated=sorted(tolerated))
