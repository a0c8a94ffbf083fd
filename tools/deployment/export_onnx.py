"""Export a UniNet backbone to ONNX (dynamic batch, height and width) and check it with
onnxruntime against PyTorch.

    python tools/deployment/export_onnx.py --arch b3 --out uninet_b3.onnx
    python tools/deployment/export_onnx.py --arch b3 --checkpoint uninet_b3_mm.pth \\
        --prefix backbone. --out uninet_b3.onnx --check-sizes 800x1333 608x1088

The exported model is the BN-fused inference copy (``fuse_for_inference``; ``--no-fuse`` keeps
the BatchNorms); it takes a float32 ``image`` (B, 3, H, W) and returns the maps of
``--out-indices`` as ``out0``, ``out1``, ... (NCHW). Export uses ``torch.onnx.export(...,
dynamo=True)`` (``torch.export`` underneath). H and W must be at least 64.

``--arch`` is a name (b0 ... b6) or a config file whose ``model.backbone`` is a UniNet, such as
the ``topN_uninet_in1k.py`` the search writes. Every architecture without MLP stages exports with
dynamic sizes (DWConv, SA and LSA blocks; L-, LG- and G-DSM). MLP stages have weights per token
position, so they need ``--static``, which exports at ``--shape`` only.
"""
import argparse
import inspect
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from uninet_mm import UniNet
from uninet_mm.models.arch_settings import ArchError, ArchSpec, parse_arch
from uninet_mm.models.acceleration import fuse_for_inference
from uninet_mm.utils.tools_support import parse_size

logger = logging.getLogger('export_onnx')

#: Smallest height / width the dynamic export accepts (below it feature maps reach size 1,
#: which torch.export specialises on).
MIN_SIZE = 64
#: Largest height / width the dynamic export promises.
MAX_SIZE = 8192


def export_backbone(model: nn.Module, path: str, shape: Tuple[int, int] = (224, 320),
                    dynamic: bool = True, opset: int = 18) -> None:
    """Write ``model`` (eval mode, (B, 3, H, W) -> tuple of maps) to ``path`` as ONNX.

    With ``dynamic``, batch, height and width are free dimensions (H, W in
    [``MIN_SIZE``, ``MAX_SIZE``]); if ``torch.export`` cannot keep them free over that range,
    this raises before writing anything.
    """
    model = model.eval()
    example = torch.randn(2, 3, *shape)  # batch 2: torch.export specialises size-1 dims
    with torch.no_grad():
        num_outputs = len(model(example))
    program = None
    if dynamic:
        # DYNAMIC hints, not named Dims: with named Dims, the padding of LSA and G-DSM to
        # window / stride multiples makes torch's constraint reporting fail ("Cannot create
        # Dim with inconsistent min=0, max=-73", torch 2.14); the hints let torch narrow the
        # ranges instead, and check_free_input_dims checks what it kept
        if not callable(torch.export.Dim.DYNAMIC):
            raise RuntimeError(f'torch {torch.__version__}: torch.export.Dim.DYNAMIC takes no '
                               'min/max here; use the project environment\'s torch '
                               '(tools/setup_env.sh) or --static')
        side = torch.export.Dim.DYNAMIC(min=MIN_SIZE, max=MAX_SIZE)
        dynamic_shapes = {'x': {0: torch.export.Dim.DYNAMIC, 2: side, 3: side}}
        program = torch.export.export(model, (example,), dynamic_shapes=dynamic_shapes,
                                      strict=False)
        check_free_input_dims(program)
    torch.onnx.export(program if dynamic else model, (example,), path, dynamo=True,
                      opset_version=opset, input_names=['image'],
                      output_names=[f'out{i}' for i in range(num_outputs)])
    dims = onnx_input_dims(path)
    if dynamic and any(isinstance(d, int) for d in (dims[0], dims[2], dims[3])):
        raise RuntimeError(f'the exported input has fixed dimensions {dims}; expected free '
                           'batch, height and width')
    logger.info('exported %s (input image: %s)', path, dims)


def check_free_input_dims(program: torch.export.ExportedProgram) -> None:
    """Raise unless the exported program keeps batch, height and width symbolic, with height
    and width valid over [``MIN_SIZE``, ``MAX_SIZE``].

    This is necessary, not sufficient: size checks inside the model (an MLP stage's token
    count) become guards of the program, which the ONNX graph drops; only running the ONNX
    graph at other sizes (:func:`export_and_check`) shows whether it still holds there.
    """
    (name,) = program.graph_signature.user_inputs
    node = next(n for n in program.graph.nodes if n.op == 'placeholder' and n.name == name)
    for axis, label in ((0, 'batch'), (2, 'height'), (3, 'width')):
        size = node.meta['val'].shape[axis]
        if not isinstance(size, torch.SymInt):
            raise RuntimeError(f'torch.export fixed the {label} at {size}: this architecture\'s '
                               'graph depends on the exact input size; export it with --static')
        valid = program.range_constraints[size.node.expr]
        if axis and (valid.lower > MIN_SIZE or valid.upper < MAX_SIZE):
            raise RuntimeError(f'the exported graph is valid for {label} in [{valid.lower}, '
                               f'{valid.upper}] only, not [{MIN_SIZE}, {MAX_SIZE}]')


def onnx_input_dims(path: str) -> List:
    """Dimensions of the first graph input: ints where fixed, names where symbolic."""
    import onnx
    image = onnx.load(path, load_external_data=False).graph.input[0]
    return [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim]


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


def export_and_check(deployed: nn.Module, reference: nn.Module, path: str,
                     shape: Tuple[int, int], dynamic: bool = True, opset: int = 18,
                     check_sizes: Sequence[Tuple[int, int]] = ((320, 480), (416, 608)),
                     rtol: float = 1e-4) -> List[Dict]:
    """Export ``deployed`` to ``path`` and compare onnxruntime with ``reference`` (PyTorch) at
    ``check_sizes`` (with ``dynamic``, also at ``MIN_SIZE`` x ``MIN_SIZE + 7``, where the
    smallest maps fit in a single attention window). The files are written to a scratch folder
    and moved beside ``path`` only when every check passes, so a failed export leaves nothing.

    Returns the rows of :func:`check_with_onnxruntime` with ``relative`` (max |diff| over the
    largest output) added. Raises RuntimeError on any failed check.
    """
    if dynamic:
        check_sizes = list(check_sizes) + [(MIN_SIZE, MIN_SIZE + 7)]
    # in a scratch folder beside ``path``, under its final name: the exporter may write the
    # weights to a ``<name>.data`` file that the graph refers to by name
    out_dir = os.path.dirname(os.path.abspath(path))
    os.makedirs(out_dir, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix='.export_', dir=out_dir)
    partial = os.path.join(scratch, os.path.basename(path))
    try:
        export_backbone(deployed, partial, shape, dynamic=dynamic, opset=opset)
        try:
            report = check_with_onnxruntime(reference, partial, check_sizes,
                                            batch=1 if dynamic else 2)
        except Exception as error:  # onnxruntime's errors are not RuntimeError subclasses
            raise RuntimeError(f'the exported graph does not reproduce PyTorch: {error}. '
                               + ('If the architecture depends on the exact input size, '
                                  'export it with --static.' if dynamic else '')) from error
        for row in report:
            row['relative'] = row['max_abs_diff'] / max(row['max_abs'], 1e-12)
            if row['relative'] > rtol:
                raise RuntimeError(f'onnxruntime differs from PyTorch at {row["size"]}: '
                                   f'{row["relative"]:.2e} > rtol {rtol}')
        for name in os.listdir(scratch):
            os.replace(os.path.join(scratch, name), os.path.join(out_dir, name))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    logger.info('wrote %s', path)
    return report


def load_arch(text: str) -> ArchSpec:
    """``text`` is an arch name ('b3') or a config file whose ``model.backbone`` is a UniNet
    (e.g. a search's ``topN_uninet_in1k.py``); returns the validated architecture."""
    if not text.endswith(('.py', '.json', '.yaml', '.yml')):
        return parse_arch(text)
    if not Path(text).is_file():
        raise ArchError(f'config file {text!r} does not exist')
    from mmengine.config import Config
    backbone = Config.fromfile(text).get('model', {}).get('backbone') or {}
    if str(backbone.get('type', '')).split('.')[-1] != 'UniNet':
        raise ArchError(f'{text}: model.backbone is {backbone.get("type")!r}, not a UniNet')
    default = inspect.signature(UniNet).parameters['arch'].default
    return parse_arch(backbone.get('arch', default))


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
    parser.add_argument('--arch', default='b3',
                        help="'b0' ... 'b6' (default b3), or a config file with a UniNet "
                             'backbone (e.g. a search\'s topN_uninet_in1k.py), of which only '
                             'the arch is read')
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
    try:
        args.arch = load_arch(args.arch)
    except ArchError as error:
        parser.error(f'--arch: {error}')
    mlp_stages = [i for i, stage in enumerate(args.arch.stages) if stage.gop == 'MLP']
    if mlp_stages and not args.static:
        parser.error(f'stages {mlp_stages} are MLP stages (weights per token position), which '
                     'only run at one input size: add --static --shape HxW')
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
    try:
        report = export_and_check(deployed, model, args.out, args.shape,
                                  dynamic=not args.static, opset=args.opset,
                                  check_sizes=args.check_sizes, rtol=args.rtol)
    except RuntimeError as error:
        raise SystemExit(f'export failed, nothing written: {error}')
    for row in report:
        logger.info('onnxruntime vs PyTorch at %s: max |diff| %.2e (%.1e of the largest '
                    'output), shapes %s', row['size'], row['max_abs_diff'], row['relative'],
                    row['shapes'])
    return report


if __name__ == '__main__':
    main()
