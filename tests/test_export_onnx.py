"""tools/deployment/export_onnx.py: the backbone exports to ONNX with free batch, height and
width, and onnxruntime matches PyTorch at two non-square sizes it was not traced at; a
searched architecture is read from the config the search writes."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from uninet_mm import UniNet
from uninet_mm.models.acceleration import fuse_for_inference
from uninet_mm.search.report import cls_config_text

from .conftest import tiny_arch

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / 'tools' / 'deployment' / 'export_onnx.py'
#: Every operator whose padding or token count depends on the input size, in one tiny arch:
#: G-DSM (pads to stride multiples, 1D conv over the sequence), LSA (pads to window multiples,
#: masks the padding), LG-DSM, SA, L-DSM and DWConv. G-DSM is the last DSM: before LSA, its
#: padding made torch.export's symbolic shapes of the later stages 3.5x slower to reason about.
SIZE_DEPENDENT_ARCH = tiny_arch({4: dict(gop='LSA'), 5: dict(dsm='G')})


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
    model = UniNet(SIZE_DEPENDENT_ARCH, out_indices=(1, 2, 4, 5)).eval()
    with torch.no_grad():  # non-trivial BN statistics, so the fused BNs matter
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.2)
                module.running_var.uniform_(0.5, 2)
                module.weight.uniform_(0.5, 1.5)
    path = str(tmp_path / 'out' / 'tiny.onnx')  # a folder that does not exist yet
    sizes = [(130, 72), (75, 201)]
    report = tool.export_and_check(fuse_for_inference(model), model, path, shape=(96, 128),
                                   check_sizes=sizes)
    # loads the weights too, which the exporter may keep in a file beside it
    dims = [d.dim_param for d in onnx.load(path).graph.input[0].type.tensor_type.shape.dim]
    assert dims[0] and dims[2] and dims[3]  # symbolic batch, height, width
    # the two sizes asked for, then the smallest, where stage 4 is a single 7x7 window
    assert [row['size'] for row in report] == sizes + [(tool.MIN_SIZE, tool.MIN_SIZE + 7)]
    for row in report:
        height, width = row['size']
        assert row['shapes'][0] == (1, 32, -(-height // 4), -(-width // 4))  # traced at batch 2
        assert row['max_abs_diff'] <= 1e-4 * row['max_abs'], row


def _search_config(tmp_path, arch) -> str:
    record = dict(arch=arch, input_size=(64, 64), trial=3, accuracy=0.5, flops=1e7,
                  params=1e5, reward=0.5, t=1e7, alpha=-0.07)
    path = tmp_path / 'top1_uninet_in1k.py'
    path.write_text(cls_config_text(record, 1, tmp_path, REPO / 'configs'))
    return str(path)


def test_arch_is_read_from_a_search_config(tmp_path):
    tool = _load_tool()
    args = tool.parse_args(['--arch', _search_config(tmp_path, SIZE_DEPENDENT_ARCH),
                            '--out', str(tmp_path / 'x.onnx')])
    assert args.arch.to_dict() == UniNet(SIZE_DEPENDENT_ARCH).arch.to_dict()
    assert tool.parse_args(['--out', 'x.onnx']).arch.stages[5].gop == 'SA'  # b3 by default


@pytest.mark.parametrize('arch, message', [
    ('b9', 'Unknown UniNet arch'),
    ('missing.py', 'does not exist'),
    (tiny_arch({5: dict(gop='MLP')}), 'add --static'),
])
def test_bad_arch_is_refused_before_any_work(tmp_path, capsys, arch, message):
    tool = _load_tool()
    if isinstance(arch, dict):
        arch = _search_config(tmp_path, arch)
    with pytest.raises(SystemExit):
        tool.parse_args(['--arch', arch, '--out', str(tmp_path / 'x.onnx')])
    assert message in capsys.readouterr().err
    assert not (tmp_path / 'x.onnx').exists()


def test_export_refuses_an_input_size_dependent_graph(tmp_path):
    """An MLP stage's token count is a guard of the exported program that the ONNX graph
    drops: the dynamic export must fail its check at other sizes and leave no file."""
    tool = _load_tool()
    model = UniNet(tiny_arch({5: dict(gop='MLP')}), out_indices=(5,),
                   input_size=(96, 128)).eval()
    with pytest.raises(RuntimeError, match='--static'):
        tool.export_and_check(model, model, str(tmp_path / 'mlp.onnx'), shape=(96, 128))
    assert list(tmp_path.iterdir()) == []


def test_export_explains_a_torch_without_bounded_dynamic_dims(tmp_path, monkeypatch):
    """Older torch has a plain ``Dim.DYNAMIC`` marker without min/max: a clear error, no file."""
    tool = _load_tool()
    monkeypatch.setattr(torch.export.Dim, 'DYNAMIC', object())
    with pytest.raises(RuntimeError, match='takes no min/max'):
        tool.export_and_check(UniNet(tiny_arch()).eval(), None, str(tmp_path / 'x.onnx'),
                              shape=(96, 128))
    assert list(tmp_path.iterdir()) == []
