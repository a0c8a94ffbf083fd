"""Parameter and FLOP counting the way the UniNet paper counts.

The paper (like Swin, DeiT, ...) reports fvcore-style numbers: one multiply-add is one FLOP,
batch 1, convolutions, linear layers, matmuls and norms counted by their multiply-adds, attention
matmuls included, element-wise activations and pooling ignored. mmengine's
``get_model_complexity_info`` is built on ``mmengine.analysis.FlopAnalyzer`` (a port of
fvcore's counter), but its default op table has no entry for
``aten::scaled_dot_product_attention``: every attention layer written with
``F.scaled_dot_product_attention`` (UniNet's SA blocks and LG-DSMs) would be counted as zero
FLOPs and only reported as an "unsupported operator".

:func:`model_complexity` runs the same ``FlopAnalyzer`` with the extra handle from
:data:`EXTRA_FLOP_HANDLES`, so ``QK^T`` and ``attn @ V`` count as two batched matmuls exactly as
when attention is written out with ``torch.matmul`` (which mmengine already counts). It also
counts ``aten::mean`` (global average pooling written as a mean) like mmengine counts
``aten::adaptive_avg_pool2d``. With both, the classifier counts of section 1 of the spec are
matched exactly (e.g. B1 at 224: 1.118 G).
"""
import typing
from collections import Counter
from math import prod
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from torch import nn

__all__ = ['sdpa_flop_jit', 'mean_flop_jit', 'EXTRA_FLOP_HANDLES',
           'model_complexity', 'config_complexity', 'format_count']


def _shape(value: Any) -> Optional[List[int]]:
    if value.isCompleteTensor():
        return value.type().sizes()
    return None


def sdpa_flop_jit(inputs: List[Any], outputs: List[Any]) -> typing.Counter[str]:
    """FLOPs of ``aten::scaled_dot_product_attention(q, k, v, ...)``.

    For ``q`` of shape (..., Nq, d), ``k`` (..., Nk, d) and ``v`` (..., Nk, dv): ``Nq * Nk * d``
    multiply-adds for ``q @ k^T`` plus ``Nq * Nk * dv`` for ``attn @ v``, times the leading
    (batch, head) dimensions of ``q``. Scaling, masking and softmax are element-wise and, as in
    fvcore, not counted.
    """
    q_shape, k_shape, v_shape = (_shape(v) for v in inputs[:3])
    if q_shape is None or k_shape is None or v_shape is None:
        raise ValueError('scaled_dot_product_attention with inputs of unknown shape')
    num_q, dim_qk = q_shape[-2], q_shape[-1]
    num_k, dim_v = k_shape[-2], v_shape[-1]
    lead = prod(q_shape[:-2])
    return Counter({'scaled_dot_product_attention': lead * num_q * num_k * (dim_qk + dim_v)})


def mean_flop_jit(inputs: List[Any], outputs: List[Any]) -> typing.Counter[str]:
    """FLOPs of ``aten::mean``: one per input element, as mmengine/fvcore count
    ``aten::adaptive_avg_pool2d``.

    Global average pooling written as ``x.mean((2, 3))`` (UniNet's squeeze-excitation and head)
    then counts exactly like ``nn.AdaptiveAvgPool2d(1)`` in the reference implementation, whose
    counts the published FLOPs are.
    """
    in_shape = _shape(inputs[0])
    if in_shape is None:
        raise ValueError('mean over an input of unknown shape')
    return Counter({'mean': prod(in_shape)})


#: Op handles added to mmengine's defaults.
EXTRA_FLOP_HANDLES = {
    'aten::scaled_dot_product_attention': sdpa_flop_jit,
    'aten::mean': mean_flop_jit,
}


def model_complexity(model: nn.Module, inputs: Union[torch.Tensor, Tuple[Any, ...]],
                     by_module_depth: int = 1,
                     extra_handles: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """FLOPs (multiply-adds) and parameters of ``model(*inputs)``.

    Same analysis as ``mmengine.analysis.get_model_complexity_info(model, inputs=inputs)``, plus
    ``extra_handles`` (default :data:`EXTRA_FLOP_HANDLES`; pass ``{}`` for mmengine's plain
    counts). Returns a dict with ``flops``, ``params`` (all parameters of
    ``model``, used in the forward or not, as mmengine counts them), ``flops_by_module`` and
    ``params_by_module`` (modules up to ``by_module_depth`` levels deep), ``flops_by_operator``
    (e.g. ``conv``, ``linear``, ``scaled_dot_product_attention``), and
    ``unsupported_ops`` (ops that were traced but not counted, with how often they ran).
    """
    from mmengine.analysis import FlopAnalyzer, parameter_count

    if isinstance(inputs, torch.Tensor):
        inputs = (inputs, )
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.set_op_handle(**(EXTRA_FLOP_HANDLES if extra_handles is None else extra_handles))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    analyzer.tracer_warnings('none')
    flops = analyzer.total()
    by_module = analyzer.by_module()
    params = parameter_count(model)

    def shallow(counts: Dict[str, int]) -> Dict[str, int]:
        return {name: count for name, count in counts.items()
                if name and name.count('.') < by_module_depth}

    return dict(
        flops=flops,
        params=params[''],
        flops_by_module=shallow(by_module),
        flops_by_operator=dict(analyzer.by_operator()),
        params_by_module=shallow(params),
        unsupported_ops=dict(analyzer.unsupported_ops()),
    )


def format_count(value: float, unit: str = 'G') -> str:
    """``format_count(211.3e9) == '211.30G'``; unit one of '', 'K', 'M', 'G'."""
    scale = {'': 1, 'K': 1e3, 'M': 1e6, 'G': 1e9}[unit]
    return f'{value / scale:.2f}{unit}'


def _dummy_batch(model: nn.Module, scope: str, height: int, width: int):
    """One preprocessed (inputs, data_samples) batch of a random HxW image for ``model``."""
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8)
    meta = dict(img_id=0, img_path='', ori_shape=(height, width), img_shape=(height, width),
                pad_shape=(height, width), scale_factor=(1.0, 1.0))
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample
        samples = [DetDataSample(metainfo=meta)]
    elif scope == 'mmseg':
        from mmseg.structures import SegDataSample
        samples = [SegDataSample(metainfo=meta)]
    else:
        samples = None
    data = dict(inputs=[image])
    if samples is not None:
        data['data_samples'] = samples
    preprocessor = getattr(model, 'data_preprocessor', None)
    if preprocessor is not None:
        data = preprocessor(data, False)
    else:
        data = dict(inputs=image[None].float(), data_samples=samples)
    return data['inputs'], data.get('data_samples')


def config_complexity(cfg, height: int, width: int, by_module_depth: int = 1,
                      extra_handles: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """FLOPs and parameters of the model of an mmdet/mmseg/mmpretrain ``cfg`` at HxW (batch 1).

    Like the ``get_flops`` tools of those packages: the model is built from ``cfg.model``, put in
    eval mode, an image goes through its data preprocessor (padding included) and the model runs
    in ``mode='tensor'``: backbone + neck + heads, without post-processing. For two-stage
    detectors that means the RPN's proposals (up to 1000) through the box head and the first
    100 through the mask head, as mmdet counts them; segmentors run backbone + decode head
    (the auxiliary head is a training-only branch and is not run, but its parameters count).
    Returns :func:`model_complexity`'s dict plus ``input_shape``, the padded (H, W).
    """
    from functools import partial

    from mmengine.registry import MODELS, init_default_scope

    scope = cfg.get('default_scope', None)
    if scope is not None:
        init_default_scope(scope)
    model = MODELS.build(cfg.model)
    model.eval()
    inputs, samples = _dummy_batch(model, scope, height, width)
    if samples is not None:
        model.forward = partial(model.forward, data_samples=samples, mode='tensor')
    else:
        model.forward = partial(model.forward, mode='tensor')
    result = model_complexity(model, (inputs, ), by_module_depth=by_module_depth,
                              extra_handles=extra_handles)
    result['input_shape'] = tuple(inputs.shape[-2:])
    return result
