"""UniNet with one fixed downsampling module before every stage: the paper's Table 10 ablation.

The published variants use L-DSM before stages 1-3 and LG-DSM before stages 4-5. The ablation
puts one kind (L, G or LG) before all five. B0's stages 1-3 have 48, 80 and 128 channels, so
attention DSMs there need two choices the paper does not state (see ``configs/ablations`` and
docs/dsm_ablations.md for the numbers behind them):

- head width: ``dsm_head_dim`` (16 divides all of 48, 80, 128, 256; heads do not change the
  parameter or FLOP count);
- keys and values: ``dsm_kv_strides`` takes them from the input average-pooled by a factor per
  DSM instead of from every input token. With all tokens, the LG-DSM before stage 1 alone costs
  2 * 1600 * 6400 * 48 = 0.98 G multiply-adds at 160 px, above the paper's 0.72 G for the
  whole network.
"""
from dataclasses import replace
from typing import Dict, List, Mapping, Sequence, Union

from mmengine.registry import MODELS

from ..arch_settings import DSMS, ArchSpec, parse_arch
from ..layers import DOWNSAMPLE_MODULES
from .uninet import UniNet


def _all_local(arch: Union[str, Mapping, ArchSpec]) -> ArchSpec:
    """``arch`` with L-DSM everywhere (valid for any channel count; the DSMs are replaced
    after the network is built)."""
    if isinstance(arch, Mapping):
        stages = arch.get('stages', ())
        arch = dict(arch, stages=[
            dict(s, dsm=None if s.get('dsm') is None else 'L') if isinstance(s, Mapping) else s
            for s in stages])
    spec = parse_arch(arch)
    return replace(spec, stages=tuple(
        stage if stage.dsm is None else replace(stage, dsm='L') for stage in spec.stages))


@MODELS.register_module()
class UniNetDSMAblation(UniNet):
    """:class:`UniNet` whose every downsampling module is ``dsm``.

    Args:
        dsm: ``'L'``, ``'LG'`` or ``'G'``, used before every stage that has a DSM.
        dsm_head_dim: head width of attention DSMs (LG, G); must divide their out channels.
        dsm_kv_strides: attention DSMs take keys and values from their input average-pooled
            by this factor: one int per DSM (stages 1, 2, ... in order), ``'stride'`` for each
            DSM's own stride (keys on the query grid), or None for every input token.
        **kwargs: as :class:`UniNet` (``arch``, ``out_indices``, ...). The DSM fields of
            ``arch`` are ignored: ``self.arch`` records ``dsm`` for every stage.
    """

    def __init__(self, dsm: str = 'LG', dsm_head_dim: int = 16,
                 dsm_kv_strides: Union[None, str, Sequence[int]] = 'stride',
                 arch: Union[str, Mapping, ArchSpec] = 'b0', **kwargs):
        if dsm not in DSMS:
            raise ValueError(f'dsm must be one of {list(DSMS)}, got {dsm!r}')
        super().__init__(arch=_all_local(arch), **kwargs)
        self.dsm = dsm
        dsm_stages = [i for i, stage in enumerate(self.stages) if stage.downsample is not None]
        kv_strides = self._kv_strides(dsm_kv_strides, dsm_stages)
        for index in dsm_stages:
            stage, stage_spec = self.stages[index], self.arch.stages[index]
            in_channels = (self.arch.stem_channels if index == 0
                           else self.arch.stages[index - 1].channels)
            extra = {}
            if dsm != 'L':
                extra = dict(head_dim=dsm_head_dim, kv_stride=kv_strides[index])
            stage.downsample = DOWNSAMPLE_MODULES[dsm](
                in_channels, stage_spec.channels, stage_spec.stride, norm_cfg=self.norm_cfg,
                **extra)
            stage.downsample.apply(self._init_reference_weights)
        self.arch = replace(self.arch, stages=tuple(
            s if s.dsm is None else replace(s, dsm=dsm) for s in self.arch.stages))
        self._freeze_stages()

    def _kv_strides(self, value: Union[None, str, Sequence[int]], dsm_stages: List[int]
                    ) -> Dict[int, int]:
        if value is None:
            return {i: 1 for i in dsm_stages}
        if value == 'stride':
            return {i: self.arch.stages[i].stride for i in dsm_stages}
        if isinstance(value, str) or len(value) != len(dsm_stages):
            raise ValueError(f"dsm_kv_strides must be None, 'stride' or one int per DSM "
                             f'({len(dsm_stages)}: stages {dsm_stages}), got {value!r}')
        return dict(zip(dsm_stages, value))

    def extra_repr(self) -> str:
        return f'dsm={self.dsm!r}, ' + super().extra_repr()

