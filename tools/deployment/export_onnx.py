"""Export a UniNet backbone to ONNX (dynamic batch, height and width) and check it with
onnxruntime against PyTorch.

    python tools/deployment/export_onnx.py --arch b3 --out uninet_b3.onnx
    python tools/deployment/export_onnx.py --arch b3 --checkpoint uninet_b3_mm.pth \\
        --prefix backbone. --out uninet_b3.onnx --check-sizes 800x1333 608x1088

The exported model is the BN-fused inference copy (``fuse_for_inference``; ``--no-fuse`` keeps
the BatchNorms); it takes a float32 ``image`` (B, 3, H, W) and returns the maps of
``--out-indices`` as ``out0``, ``out1``, ... (NCHW). Export uses ``torch.onnx.export(...,
dynamo=True)`` (``torch.export`` underneath). H and W must be at least 64.

Architectures whose graph depends on the exact input size cannot be exported with dynamic H
and W: MLP stages (weights per token position), and G-DSM and LSA stages (their padding to
multiples of the stride / window is a shape constraint ``torch.export`` cannot solve). The
published B0-B6 (DWConv, SA, L-DSM, LG-DSM) export with dynamic sizes; for the others
``--static`` exports at ``--shape`` only.
"""
import argparse
import logging
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from uninet_mm import UniNet
from uninet_mm.models.acceleration import fuse_for_inference

logger = logging.getLogger('export_onnx')

#: Smallest height / width the dynamic export accepts (below it feature maps reach size 1,
#: which torch.export specialises on).
MIN_SIZE = 64


def parse_size(text: str) -> Tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'size must look like HxW (e.g. 800x1333), got {text!r}')
    return height, width


def export_backbone(model: nn.Module, path: str, shape: Tuple[int, int] = (224, 320),
                    dynamic: bool = True, opset: int = 18) -> None:
    """Write ``model`` (eval mode, returning a tuple of maps) to ``path`` as ONNX.

    With ``dynamic``, batch, height and width are free dimensions; if the exporter cannot keep
    them free, this raises instead of writing a fixed-size model.
    """
    import onnx
    model = model.eval()
    example = torch.randn(2, 3, *shape)  # batch 2: torch.export specialises size-1 dims
    with torch.no_grad():
        num_outputs = len(model(example))
    dynamic_shapes = None
    if dynamic:
        dims = {0: torch.export.Dim('batch', min=1, max=1024),
                2: torch.export.Dim('height', min=MIN_SIZE, max=8192),
                3: torch.export.Dim('width', min=MIN_SIZE, max=8192)}
        dynamic_shapes = {'x': dims}
        # fail here, with torch.export's message, where the ONNX exporter would quietly fall
        # back to a fixed-size graph
        torch.export.export(model, (example,), dynamic_shapes=dynamic_shapes, strict=False)
    torch.onnx.export(model, (example,), path, dynamo=True, opset_version=opset,
                      input_names=['image'],
                      output_names=[f'out{i}' for i in range(num_outputs)],
                      dynamic_shapes=dynamic_shapes)
    image = onnx.load(path, load_external_data=False).graph.input[0]
    dims = [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim]
    if dynamic and any(isinstance(d, int) for d in (dims[0], dims[2], dims[3])):
        raise RuntimeError(f'the exported input has fixed dimensions {dims}; expected free '
                           'batch, height and width')
    logger.info('wrote %s (input image: %s)', path, dims)


def check_with_onnxruntime(model: nn.Module, path: str, sizes: Sequence[Tuple[int, int]],
                           batch: int = 1, seed: int = 0) -> List[Dict]:
    """Run the ONNX file with onnxruntime and ``model`` with PyTorch on random images of each
    size; returns per size the largest absolute difference and the largest output value."""
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    generator = torch.Generator().manual_seed(seed)
    report = []
    for size in sizes:
        x = torch.randn(batch, 3, *size, generator=generator)
        with torch.no_grad():
            expected = [t.numpy() for t in model.eval()(x)]
        actual = session.run(None, {'image': x.numpy()})
        if [a.shape for a in actual] != [e.shape for e in expected]:
            raise AssertionError(f'at {size}: onnxruntime shapes {[a.shape for a in actual]} '
                                 f'!= PyTorch {[e.shape for e in expected]}')
        report.append(dict(
            size=tuple(size), shapes=[tuple(e.shape) for e in expected],
            max_abs_diff=max(float(np.abs(a - e).max()) for a, e in zip(actual, expected)),
            max_abs=max(float(np.abs(e).max()) for e in expected)))
    return report


def build_backbone(args: argparse.Namespace) -> nn.Module:
    init_cfg = None
    if args.checkpoint:
        init_cfg = dict(type='Pretrained', checkpoint=args.checkpoint, prefix=args.prefix)
    model = UniNet(args.arch, out_indices=tuple(args.out_indices),
                   with_head_conv=args.with_head_conv,
                   input_size=args.shape if args.static else None, init_cfg=init_cfg)
    model.init_weights()
    return model.eval()


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--arch', default='b3', help="'b0' ... 'b6' (default b3)")
    parser.add_argument('--checkpoint', default=None,
                        help='weights (e.g. from tools/model_converters); random if omitted')
    parser.add_argument('--prefix', default=None,
                        help="key prefix of the backbone in the checkpoint, e.g. 'backbone.'")
    parser.add_argument('--out-indices', type=int, nargs='+', default=[1, 2, 4, 5])
    parser.add_argument('--with-head-conv', action='store_true')
    parser.add_argument('--out', required=True, help='ONNX file to write')
    parser.add_argument('--shape', type=parse_size, default=(224, 320),
                        help='example input size HxW used to trace (default 224x320)')
    parser.add_argument('--static', action='store_true',
                        help='fixed batch 2 and --shape instead of dynamic sizes')
    parser.add_argument('--no-fuse', action='store_true',
                        help='keep the BatchNorms instead of folding them into the convs')
    parser.add_argument('--opset', type=int, default=18)
    parser.add_argument('--check-sizes', type=parse_size, nargs='*',
                        default=[(320, 480), (416, 608)],
                        help='sizes HxW at which onnxruntime is compared with PyTorch '
                             '(default 320x480 416x608; none to skip)')
    parser.add_argument('--rtol', type=float, default=1e-4,
                        help='allowed max |onnx - torch| relative to the largest output')
    args = parser.parse_args(argv)
    small = [s for s in [args.shape] + args.check_sizes if min(s) < MIN_SIZE]
    if small and not args.static:
        parser.error(f'sizes {small} are below {MIN_SIZE} pixels on a side')
    if args.static:
        args.check_sizes = [args.shape]
    return args


def main(argv: Optional[List[str]] = None) -> List[Dict]:
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    args = parse_args(argv)
    model = build_backbone(args)
    deployed = model if args.no_fuse else fuse_for_inference(model)
    export_backbone(deployed, args.out, args.shape, dynamic=not args.static, opset=args.opset)
    report = check_with_onnxruntime(model, args.out, args.check_sizes,
                                    batch=2 if args.static else 1)
    for row in report:
        relative = row['max_abs_diff'] / max(row['max_abs'], 1e-12)
        logger.info('onnxruntime vs PyTorch at %s: max |diff| %.2e (%.1e of the largest '
                    'output), shapes %s', row['size'], row['max_abs_diff'], relative,
                    row['shapes'])
        if relative > args.rtol:
            raise SystemExit(f'onnxruntime differs from PyTorch at {row["size"]}: '
                             f'{relative:.2e} > --rtol {args.rtol}')
    return report


if __name__ == '__main__':
    main()
