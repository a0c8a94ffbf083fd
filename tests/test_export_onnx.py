"""tools/deployment/export_onnx.py: the backbone exports to ONNX with free batch, height and
width, and onnxruntime matches PyTorch at two non-square sizes it was not traced at."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from uninet_mm import UniNet
from uninet_mm.models.acceleration import fuse_for_inference

from .conftest import tiny_arch

TOOL = Path(__file__).resolve().parents[1] / 'tools' / 'deployment' / 'export_onnx.py'


def _load_tool():
    spec = importlib.util.spec_from_file_location('export_onnx', TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules['export_onnx'] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_onnx_export_is_dynamic_and_matches_pytorch(tmp_path):
    pytest.importorskip('onnxruntime', reason='install requirements/deploy.txt')
    import onnx
    tool = _load_tool()
    model = UniNet(tiny_arch(), out_indices=(1, 2, 4, 5)).eval()
    with torch.no_grad():  # non-trivial BN statistics, so the fused BNs matter
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.2)
                module.running_var.uniform_(0.5, 2)
                module.weight.uniform_(0.5, 1.5)
    path = str(tmp_path / 'tiny.onnx')
    tool.export_backbone(fuse_for_inference(model), path, shape=(96, 128))
    dims = [d.dim_param for d in onnx.load(path).graph.input[0].type.tensor_type.shape.dim]
    assert dims[0] and dims[2] and dims[3]  # symbolic batch, height, width
    report = tool.check_with_onnxruntime(model, path, [(130, 72), (75, 201)], batch=2)
    for row, size in zip(report, [(130, 72), (75, 201)]):
        assert row['size'] == size
        assert row['shapes'][0] == (2, 32, -(-size[0] // 4), -(-size[1] // 4))
        assert row['max_abs_diff'] <= 1e-4 * row['max_abs'], row
