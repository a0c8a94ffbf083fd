"""RoIAlign as two small matrix products per RoI, for the CPU.

mmcv's CPU ``roi_align`` (average mode, what mmdet's RoI extractors use) loops over RoIs,
bins and sampling points on one thread, and its backward scatters every sample's gradient
on its own: in the CPU quickstart (Mask R-CNN, about 500 RoIs on a 64-channel 80x96 map) it
took a quarter of a training step's CPU time (docs/speed.md). The same function is separable:
a RoI's output is

    out[c, ph, pw] = sum_{h, w} Wy[ph, h] * x[c, h, w] * Wx[pw, w]

where ``Wy[ph, :]`` is the average over the bin's sampling rows of their bilinear weights
(``Wx`` the same along columns): bilinear weights are products of a row and a column weight,
mmcv's rules for samples outside the map (zero) or on its last row/column (clamped) act on
each axis alone, and the number of samples per bin is a product too. :func:`roi_align`
builds ``Wy`` and ``Wx``, gathers each RoI's window of the map (the rows and columns its
weights touch) and contracts it with two batched matrix products, in groups of RoIs of
similar window size; autograd gives the backward.
"""
from typing import Tuple, Union

import torch
from torch import nn

__all__ = ['roi_align', 'SeparableRoIAlign']

#: RoIs per batched product; windows are padded to the largest in their group. 32 was the
#: fastest of 8-128 on the quickstart's RoIs (2-core AMD EPYC, 1 thread, docs/speed.md).
GROUP_SIZE = 32


def _pair(size: Union[int, Tuple[int, int]]) -> Tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def axis_weights(start: torch.Tensor, size: torch.Tensor, pooled: int, length: int,
                 sampling_ratio: int) -> torch.Tensor:
    """Averaged bilinear weights along one axis.

    Args:
        start, size: (R,) RoI start and extent on this axis, in map pixels.
        pooled: output bins on this axis; ``length``: the map's extent on this axis.
        sampling_ratio: samples per bin on this axis; 0: ``ceil(size / pooled)`` per RoI.

    Returns:
        (R, pooled, length): row ``p`` holds the weights of bin ``p``'s samples divided by
        their number (samples outside ``[-1, length]`` weigh nothing, as in mmcv).
    """
    bin_size = size / pooled
    if sampling_ratio > 0:
        grid = torch.full_like(start, sampling_ratio, dtype=torch.long)
    else:
        grid = torch.ceil(size / pooled).long()
    max_grid = max(int(grid.max()) if grid.numel() else 1, 1)
    grid_f = grid.clamp(min=1).to(start.dtype)
    bins = torch.arange(pooled, dtype=start.dtype, device=start.device)[None, :, None]
    samples = torch.arange(max_grid, dtype=start.dtype, device=start.device)[None, None, :]
    # (R, pooled, max_grid), in mmcv's order of operations
    coord = (start[:, None, None] + bins * bin_size[:, None, None]
             + (samples + 0.5) * bin_size[:, None, None] / grid_f[:, None, None])
    used = ((samples < grid[:, None, None].to(start.dtype)) & (coord >= -1.0)
            & (coord <= length))
    coord = coord.clamp(min=0)
    low = coord.floor().long()
    at_end = low >= length - 1
    low = low.clamp(max=length - 1)
    high = torch.where(at_end, low, low + 1)
    frac = torch.where(at_end, torch.zeros_like(coord), coord - low.to(coord.dtype))
    scale = used.to(coord.dtype) / grid_f[:, None, None]
    weights = coord.new_zeros(start.shape[0], pooled, length)
    weights.scatter_add_(2, low, (1 - frac) * scale)
    weights.scatter_add_(2, high, frac * scale)
    return weights


def _extent(weights: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """First index and number of indices that (R, pooled, length) ``weights`` touch per RoI
    (0 and 1 where a RoI touches nothing)."""
    touched = (weights != 0).any(1)
    length = touched.shape[1]
    hit = touched.any(1)
    first = torch.where(hit, touched.to(torch.uint8).argmax(1), 0)
    last = torch.where(hit, length - 1 - touched.flip(1).to(torch.uint8).argmax(1), first)
    return first, last - first + 1


def roi_align(input: torch.Tensor, rois: torch.Tensor,
              output_size: Union[int, Tuple[int, int]], spatial_scale: float = 1.0,
              sampling_ratio: int = 0, aligned: bool = True) -> torch.Tensor:
    """The result of mmcv's ``roi_align(..., pool_mode='avg')``, differentiable in ``input``.

    Args:
        input: (N, C, H, W) maps, either memory layout.
        rois: (R, 5) boxes ``(batch index, x1, y1, x2, y2)`` in image pixels.
        output_size: (PH, PW) bins, or one int for both.
        spatial_scale: map pixels per image pixel.
        sampling_ratio: samples per bin and axis; 0: ``ceil(roi size / bins)`` per RoI.
        aligned: shift boxes by half a pixel (detectron2's ``aligned=True``).

    Returns:
        (R, C, PH, PW).
    """
    out_h, out_w = _pair(output_size)
    num, channels, height, width = input.shape
    if rois.shape[0] == 0:
        return input.new_zeros(0, channels, out_h, out_w)
    offset = 0.5 if aligned else 0.0
    x1 = rois[:, 1] * spatial_scale - offset
    y1 = rois[:, 2] * spatial_scale - offset
    roi_w = rois[:, 3] * spatial_scale - offset - x1
    roi_h = rois[:, 4] * spatial_scale - offset - y1
    if not aligned:
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    weights_y = axis_weights(y1, roi_h, out_h, height, sampling_ratio).to(input.dtype)
    weights_x = axis_weights(x1, roi_w, out_w, width, sampling_ratio).to(input.dtype)
    first_y, rows_used = _extent(weights_y)
    first_x, cols_used = _extent(weights_x)
    batch = rois[:, 0].long()

    # a channels-last view (a copy for NCHW input) whose rows are pixels: (N*H*W, C)
    pixels = input.permute(0, 2, 3, 1).reshape(num * height * width, channels)
    outputs = []
    # groups of RoIs with similar windows; each group's windows padded to its largest
    order = torch.argsort(rows_used * cols_used)
    for idx in order.split(GROUP_SIZE):
        count = idx.numel()
        win_h, win_w = int(rows_used[idx].max()), int(cols_used[idx].max())
        rows = first_y[idx].clamp(max=height - win_h)[:, None] + torch.arange(
            win_h, device=input.device)
        cols = first_x[idx].clamp(max=width - win_w)[:, None] + torch.arange(
            win_w, device=input.device)
        index = (batch[idx, None, None] * height + rows[:, :, None]) * width + cols[:, None, :]
        window = pixels.index_select(0, index.reshape(-1))  # (R*h*w, C)
        w_y = weights_y[idx].gather(2, rows[:, None, :].expand(-1, out_h, -1))  # (R, PH, h)
        w_x = weights_x[idx].gather(2, cols[:, None, :].expand(-1, out_w, -1))  # (R, PW, w)
        # rows: (R, PH, h) @ (R, h, w*C) -> (R, PH, w, C); then columns: (R, PW, w) @
        # (R, w, PH*C) -> (R, PW, PH, C)
        by_rows = torch.bmm(w_y, window.reshape(count, win_h, win_w * channels))
        by_rows = by_rows.reshape(count, out_h, win_w, channels).transpose(1, 2)
        outputs.append(torch.bmm(w_x, by_rows.reshape(count, win_w, out_h * channels)))
    stacked = torch.cat(outputs).reshape(-1, out_w, out_h, channels)
    result = stacked.new_empty(stacked.shape).index_copy(0, order, stacked)
    return result.permute(0, 3, 2, 1).contiguous()


class SeparableRoIAlign(nn.Module):
    """mmcv's ``RoIAlign`` (average mode) whose CPU path is :func:`roi_align`; on other
    devices it calls mmcv's compiled kernel. Same arguments and state as mmcv's layer.
    :func:`uninet_mm.models.acceleration.use_separable_roi_align` puts it into a model."""

    def __init__(self, output_size: Union[int, Tuple[int, int]], spatial_scale: float = 1.0,
                 sampling_ratio: int = 0, aligned: bool = True):
        super().__init__()
        self.output_size = _pair(output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = aligned

    @classmethod
    def from_mmcv(cls, layer: nn.Module) -> 'SeparableRoIAlign':
        """The same RoIAlign as mmcv's ``layer`` (which must be in average mode)."""
        if getattr(layer, 'pool_mode', 'avg') != 'avg':
            raise ValueError(f'only average-mode RoIAlign is separable, got {layer!r}')
        return cls(layer.output_size, layer.spatial_scale, layer.sampling_ratio,
                   layer.aligned)

    def forward(self, input: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) maps and (R, 5) rois -> (R, C, PH, PW)."""
        if input.device.type == 'cpu':
            return roi_align(input, rois, self.output_size, self.spatial_scale,
                             self.sampling_ratio, self.aligned)
        from mmcv.ops import roi_align as mmcv_roi_align
        return mmcv_roi_align(input, rois, self.output_size, self.spatial_scale,
                              self.sampling_ratio, 'avg', self.aligned)

    def extra_repr(self) -> str:
        return (f'output_size={self.output_size}, spatial_scale={self.spatial_scale}, '
                f'sampling_ratio={self.sampling_ratio}, aligned={self.aligned}')
