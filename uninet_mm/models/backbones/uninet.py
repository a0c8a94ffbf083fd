"""The UniNet backbone (Liu et al., ECCV 2022) for mmdet, mmseg and mmpretrain."""
import logging
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.utils.checkpoint as cp
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..activation_checkpointing import selective_checkpoint_context
from ..arch_settings import ArchSpec, StageSpec, parse_arch
from ..layers import DOWNSAMPLE_MODULES, ConvBlock, ConvNormAct, TransformerBlock


def _ceil_div(size: int, stride: int) -> int:
    return -(-size // stride)


class UniNetStage(nn.Module):
    """One stage: an optional downsampling module, then ``spec.repeats`` blocks.

    (B, in_channels, H, W) -> (B, spec.channels, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(self, in_channels: int, spec: StageSpec, drop_paths: Sequence[float],
                 norm_cfg: Optional[Dict], layer_scale_init_value: float,
                 hw_shape: Optional[Tuple[int, int]] = None,
                 with_cp: Union[bool, str] = False):
        super().__init__()
        self.with_cp = with_cp
        if spec.dsm is None:
            self.downsample = None
            block_in = in_channels
        else:
            self.downsample = DOWNSAMPLE_MODULES[spec.dsm](
                in_channels, spec.channels, spec.stride, norm_cfg=norm_cfg)
            block_in = spec.channels
        blocks = []
        for drop_path in drop_paths:
            if spec.gop in ('DWConv', 'Conv'):
                blocks.append(ConvBlock(block_in, spec.channels, spec.expansion,
                                        depthwise=spec.gop == 'DWConv', drop_path=drop_path,
                                        norm_cfg=norm_cfg))
            else:
                blocks.append(TransformerBlock(spec.channels, spec.expansion, mixer=spec.gop,
                                               drop_path=drop_path, hw_shape=hw_shape,
                                               layer_scale_init_value=layer_scale_init_value))
            block_in = spec.channels
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is not None:
            x = self._run(self.downsample, x)
        for block in self.blocks:
            x = self._run(block, x)
        return x

    def _run(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if not (self.with_cp and self.training and x.requires_grad):
            return module(x)
        if self.with_cp == 'selective':
            return cp.checkpoint(module, x, use_reentrant=False,
                                 context_fn=selective_checkpoint_context)
        return cp.checkpoint(module, x, use_reentrant=False)


@MODELS.register_module()
class UniNet(BaseModule):
    """UniNet backbone: a stem, six stages of searched blocks joined by downsampling modules.

    Stage outputs have strides (2, 4, 8, 16, 16, 32) for the published variants; any input
    size works (feature sizes round up, as stride-2 3x3 convs with padding 1 do).

    Args:
        arch: ``'b0'`` ... ``'b6'`` or a dict ``dict(stem_channels, head_channels, stages=[...])``
            (see :mod:`uninet_mm.models.arch_settings`).
        out_indices: stages whose outputs are returned, as a tuple of NCHW maps in this order.
            Index ``len(stages)`` (6) is the classification head conv's output and needs
            ``with_head_conv=True``. Default: stages 1, 2, 4, 5 (strides 4, 8, 16, 32).
        with_head_conv: build the classification head's 1x1 conv + norm + GELU.
        frozen_stages: -1 freezes nothing, 0 the stem, k the stem and stages 0..k-1.
        norm_eval: keep every BatchNorm (SyncBN included) in eval mode while training.
        norm_cfg: config of the 2D norm layers (the LayerNorms of attention parts stay).
        drop_path_rate: stochastic depth rate, spaced linearly from 0 over all blocks.
        with_cp: activation checkpointing of every block and DSM in training
            (``torch.utils.checkpoint``, non-reentrant): ``True`` stores only block inputs
            and recomputes whole blocks in backward; ``'selective'`` keeps the outputs of
            convolutions, matmuls, attention and training-mode BatchNorms (recomputing those
            would update their running statistics twice) and recomputes the other
            elementwise ops (LayerNorms, GELU, SE gating; see
            :mod:`uninet_mm.models.acceleration`).
        layer_scale_init_value: initial value of the transformer blocks' layer scales.
        input_size: (H, W) or int of the input images; needed only by MLP stages, whose
            token mixing has weights per token position.
        init_cfg: e.g. ``dict(type='Pretrained', checkpoint=PATH, prefix='backbone.')``;
            a checkpoint that does not fit raises an error naming the keys.
    """

    def __init__(self,
                 arch: Union[str, Mapping, ArchSpec] = 'b1',
                 out_indices: Sequence[int] = (1, 2, 4, 5),
                 with_head_conv: bool = False,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 norm_cfg: Optional[Dict] = None,
                 drop_path_rate: float = 0.0,
                 with_cp: Union[bool, str] = False,
                 layer_scale_init_value: float = 1e-6,
                 input_size: Optional[Union[int, Sequence[int]]] = None,
                 init_cfg: Optional[Union[Dict, List[Dict]]] = None):
        super().__init__(init_cfg=init_cfg)
        self.arch = parse_arch(arch)
        num_stages = len(self.arch.stages)
        self.head_index = num_stages
        self.out_indices = self._check_out_indices(out_indices, with_head_conv)
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= num_stages:
            raise ValueError(f'frozen_stages must be an int in [-1, {num_stages}] (-1: none, '
                             f'0: stem, k: stem and stages 0..k-1), got {frozen_stages!r}')
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f'drop_path_rate must be in [0, 1), got {drop_path_rate!r}')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.norm_cfg = dict(norm_cfg or dict(type='BN', requires_grad=True))
        if with_cp not in (False, True, 'selective'):
            raise ValueError(f"with_cp must be False, True or 'selective', got {with_cp!r}")
        self.with_cp = with_cp
        self.with_head_conv = with_head_conv
        self.input_size = self._check_input_size(input_size)
        self.stem = ConvNormAct(3, self.arch.stem_channels, 3, 2, self.norm_cfg)
        total_blocks = sum(stage.repeats for stage in self.arch.stages)
        rates = torch.linspace(0, drop_path_rate, total_blocks).tolist()
        self.stages = nn.ModuleList()
        in_channels, first = self.arch.stem_channels, 0
        for index, (spec, hw_shape) in enumerate(zip(self.arch.stages, self._stage_shapes())):
            if spec.gop == 'MLP' and hw_shape is None:
                raise ValueError(f'UniNet stage {index} uses the MLP GOP, whose token mixing '
                                 f'needs a fixed token count: pass input_size=(H, W)')
            self.stages.append(UniNetStage(
                in_channels, spec, rates[first:first + spec.repeats], self.norm_cfg,
                layer_scale_init_value, hw_shape=hw_shape, with_cp=with_cp))
            in_channels, first = spec.channels, first + spec.repeats
        self.head_conv = (ConvNormAct(in_channels, self.arch.head_channels, 1, 1,
                                      self.norm_cfg)
                          if with_head_conv else None)

        self.apply(self._init_reference_weights)
        self._freeze_stages()

    # ------------------------------------------------------------------ construction helpers
    def _check_out_indices(self, out_indices: Sequence[int], with_head_conv: bool
                           ) -> Tuple[int, ...]:
        if isinstance(out_indices, int):
            out_indices = (out_indices,)
        allowed = list(range(self.head_index)) + ([self.head_index] if with_head_conv else [])
        bad = [i for i in out_indices if i not in allowed]
        if not out_indices or bad or len(set(out_indices)) != len(out_indices):
            head = (f'; {self.head_index} is the head conv, available with with_head_conv=True'
                    if not with_head_conv else f' ({self.head_index} = head conv)')
            raise ValueError(f'out_indices {tuple(out_indices)} invalid: use distinct values '
                             f'from {allowed}{head}')
        return tuple(out_indices)

    @staticmethod
    def _check_input_size(input_size) -> Optional[Tuple[int, int]]:
        if input_size is None:
            return None
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        input_size = tuple(input_size)
        if len(input_size) != 2 or not all(isinstance(s, int) and s > 0 for s in input_size):
            raise ValueError(f'input_size must be an int or (H, W), got {input_size!r}')
        return input_size

    def _stage_shapes(self) -> List[Optional[Tuple[int, int]]]:
        """Feature map size of every stage for ``input_size`` (None where unknown)."""
        if self.input_size is None:
            return [None] * len(self.arch.stages)
        height, width = (_ceil_div(s, 2) for s in self.input_size)
        shapes = []
        for spec in self.arch.stages:
            height, width = _ceil_div(height, spec.stride), _ceil_div(width, spec.stride)
            shapes.append((height, width))
        return shapes

    @staticmethod
    def _init_reference_weights(module: nn.Module) -> None:
        """The reference initialisation: truncated-normal Linear, unit LayerNorm; convs keep
        PyTorch defaults and each ConvBlock zeroes its last norm itself."""
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    # ------------------------------------------------------------------ public API
    @property
    def out_channels(self) -> Tuple[int, ...]:
        """Channels of each returned map, in ``out_indices`` order."""
        return tuple(self.arch.head_channels if i == self.head_index
                     else self.arch.stages[i].channels for i in self.out_indices)

    @property
    def feature_info(self) -> List[Dict]:
        """timm-style description of each returned map: channels, stride and module name."""
        strides = self.arch.stage_strides
        info = []
        for i in self.out_indices:
            if i == self.head_index:
                info.append(dict(num_chs=self.arch.head_channels, reduction=strides[-1],
                                 module='head_conv', index=i))
            else:
                info.append(dict(num_chs=self.arch.stages[i].channels, reduction=strides[i],
                                 module=f'stages.{i}', index=i))
        return info

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(B, 3, H, W) -> tuple of (B, C_i, H_i, W_i) maps for ``out_indices``, contiguous
        (NCHW) whatever layout runs inside."""
        outs = {}
        x = self.stem(x)
        for index, stage in enumerate(self.stages):
            x = stage(x)
            outs[index] = x
        if self.head_conv is not None:
            outs[self.head_index] = self.head_conv(x)
        # NCHW out: some consumers read raw NCHW memory (e.g. mmcv's CPU RoIAlign)
        return tuple(outs[i].contiguous() for i in self.out_indices)

    # ------------------------------------------------------------------ training behaviour
    def _frozen_modules(self) -> List[nn.Module]:
        if self.frozen_stages < 0:
            return []
        return [self.stem] + list(self.stages[:self.frozen_stages])

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'UniNet':
        """Switch mode, then re-apply ``frozen_stages`` and ``norm_eval``."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    # ------------------------------------------------------------------ pretrained weights
    def init_weights(self) -> None:
        """Load a ``Pretrained`` ``init_cfg`` strictly; otherwise mmengine's initialisation.

        Works the same from this project's tools and from mmdet's, mmseg's, mmpretrain's own
        ``tools/train.py`` or ``mim train``: ``--cfg-options
        model.backbone.init_cfg.checkpoint=PATH`` loads PATH (``type`` and ``prefix`` default
        to ``'Pretrained'`` and ``'backbone.'``); a ``Pretrained`` entry without a checkpoint
        (the shipped configs) trains from scratch and says so.
        """
        from ...utils.pretrained import load_pretrained_backbone, pretrained_entry
        entry = pretrained_entry(self.init_cfg)
        if entry is not None and entry.get('checkpoint'):
            load_pretrained_backbone(self, entry['checkpoint'], prefix=entry.get('prefix'),
                                     map_location=entry.get('map_location', 'cpu'))
            self._is_init = True
            self._freeze_stages()
            return
        if entry is not None:
            print_log('UniNet: init_cfg names no checkpoint, so the backbone starts from '
                      'random weights; set model.backbone.init_cfg.checkpoint=PATH (or '
                      'pretrained=PATH with this project\'s tools) to load one',
                      logger='current', level=logging.INFO)
            self.init_cfg = None
        super().init_weights()

    def extra_repr(self) -> str:
        return f'out_indices={self.out_indices}, frozen_stages={self.frozen_stages}'
