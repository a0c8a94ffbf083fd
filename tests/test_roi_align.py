"""uninet_mm.ops.roi_align against mmcv's compiled RoIAlign (average mode): the same outputs
and input gradients over generated maps and boxes (boxes partly or wholly outside the map,
empty and one-pixel boxes, both alignments, fixed and adaptive sampling, either memory
layout), and the swap into a detector's RoI heads."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from mmcv import ops as mmcv_ops  # built with its ops by tools/setup_env.sh: no skip

from uninet_mm.models.acceleration import use_separable_roi_align
from uninet_mm.ops import SeparableRoIAlign, roi_align

pytestmark = pytest.mark.usefixtures('one_thread')


@st.composite
def roi_align_cases(draw):
    num, channels = draw(st.integers(1, 2)), draw(st.integers(1, 4))
    height, width = draw(st.integers(1, 14)), draw(st.integers(1, 14))
    scale = draw(st.sampled_from([1.0, 0.5, 0.25, 0.125]))
    boxes = []
    for _ in range(draw(st.integers(0, 10))):
        # corners from 2 map pixels before the map to 2 after it, in image pixels
        coord = st.floats(-2.0 / scale, (max(height, width) + 2) / scale, width=32)
        x1, y1 = draw(coord), draw(coord)
        size = st.floats(0.0, (max(height, width) + 4) / scale, width=32)
        boxes.append([draw(st.integers(0, num - 1)), x1, y1, x1 + draw(size), y1 + draw(size)])
    return dict(shape=(num, channels, height, width), scale=scale, boxes=boxes,
                output_size=(draw(st.integers(1, 4)), draw(st.integers(1, 5))),
                sampling_ratio=draw(st.integers(0, 3)), aligned=draw(st.booleans()),
                channels_last=draw(st.booleans()), seed=draw(st.integers(0, 2**16)))


def _mmcv(x, rois, case):
    return mmcv_ops.roi_align(x, rois, case['output_size'], case['scale'],
                              case['sampling_ratio'], 'avg', case['aligned'])


def _ours(x, rois, case):
    return roi_align(x, rois, case['output_size'], case['scale'], case['sampling_ratio'],
                     case['aligned'])


@given(roi_align_cases())
def test_matches_mmcv_forward_and_backward(case):
    generator = torch.Generator().manual_seed(case['seed'])
    x = torch.randn(case['shape'], generator=generator)
    rois = torch.tensor(case['boxes'], dtype=torch.float32).reshape(-1, 5)
    out_grad = torch.randn(rois.shape[0], case['shape'][1], *case['output_size'],
                           generator=generator)
    results = []
    for fn, layout in ((_mmcv, torch.contiguous_format), (_ours, torch.channels_last
                                                         if case['channels_last']
                                                         else torch.contiguous_format)):
        leaf = x.clone().contiguous(memory_format=layout).requires_grad_(True)
        out = fn(leaf, rois, case)
        if out.numel():
            out.backward(out_grad)
        grad = leaf.grad if leaf.grad is not None else torch.zeros_like(x)
        results.append((out.detach(), grad))
    (expected, expected_grad), (got, got_grad) = results
    assert got.shape == expected.shape == (rois.shape[0], x.shape[1], *case['output_size'])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_grad, expected_grad, rtol=1e-5, atol=1e-5)


def test_matches_mmcv_on_detection_sized_rois():
    """512 RoIs of 4-140 px on a stride-4 map of a 320x384 batch, as in the quickstart's
    Mask R-CNN (the groups of similar windows and their padding are exercised)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 16, 80, 96, generator=generator, requires_grad=True)
    corner = torch.rand(512, 2, generator=generator) * torch.tensor([384.0, 320.0])
    size = torch.rand(512, 2, generator=generator) * 136 + 4
    batch = torch.randint(0, 4, (512, 1), generator=generator).float()
    rois = torch.cat([batch, corner, corner + size], 1)
    case = dict(output_size=(7, 7), scale=0.25, sampling_ratio=0, aligned=True)
    out_grad = torch.randn(512, 16, 7, 7, generator=generator)
    expected = _mmcv(x, rois, case)
    expected.backward(out_grad)
    expected_grad, x.grad = x.grad, None
    got = _ours(x, rois, case)
    got.backward(out_grad)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, expected_grad, rtol=1e-5, atol=1e-5)


def test_swap_into_a_mask_rcnn_keeps_its_roi_features():
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from .conftest import REPO_ROOT
    cfg = Config.fromfile(str(REPO_ROOT / 'configs/quickstart/mask_rcnn_uninet_tiny_synthetic.py'))
    init_default_scope('mmdet')
    extractor = MODELS.build(cfg.model.roi_head.bbox_roi_extractor)
    feats = [torch.randn(2, 64, 64 // s, 80 // s) for s in (1, 2, 4, 8)]
    rois = torch.tensor([[0, 4, 4, 60, 50], [1, 10, 3, 300, 250], [1, 100, 90, 140, 190]],
                        dtype=torch.float32) / torch.tensor([1, 4, 4, 4, 4])
    expected = extractor(feats, rois)
    assert use_separable_roi_align(extractor) == 4  # one layer per FPN level
    assert all(isinstance(layer, SeparableRoIAlign) for layer in extractor.roi_layers)
    assert use_separable_roi_align(extractor) == 0  # converting again changes nothing
    torch.testing.assert_close(extractor(feats, rois), expected, rtol=1e-5, atol=1e-6)


def test_max_mode_is_not_separable():
    with pytest.raises(ValueError, match='average-mode'):
        SeparableRoIAlign.from_mmcv(mmcv_ops.RoIAlign(7, 0.25, pool_mode='max'))
    holder = torch.nn.Sequential(mmcv_ops.RoIAlign(7, 0.25, pool_mode='max'))
    assert use_separable_roi_align(holder) == 0
