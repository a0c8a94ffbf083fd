"""Developer script: parameters and FLOPs of the paper's models next to the paper's numbers,
and the model table of docs/model_zoo.md regenerated from them.

    python .dev_scripts/report_model_table.py [--only TEXT ...] [--by-module]
                                                      [--update-docs | --shape HxW]

Mask R-CNN B1/B3 at 1280x800 and UperNet B1/B3 at 2048x512 (the input sizes the mm world quotes),
the Table 10 ablations (UniNet-B0 with one DSM everywhere, 160x160) and the Table 11 transfers
(Swin-T and PVT-Tiny with DSMs, classifiers at 224x224), counted as
tools/analysis_tools/get_flops.py counts (fvcore style, attention included). Rows that differ
from the paper by more than 5% are flagged; the ``--by-module`` breakdown helps to see where a
difference comes from, and the attention column is the share of attention matmuls
(``scaled_dot_product_attention`` and explicit matmuls), which counters without an attention
handle (mmengine's default, mmcv's hook-based counter used by mmdet 2.x / mmseg 0.x) partly
leave out. ``--only`` counts the rows whose name or config contains one of the texts (the
detection and segmentation rows take a few minutes and several GB on a CPU).
``--update-docs`` writes the measured rows into docs/model_zoo.md's model table (between its
``model-table`` markers); rows not measured in this run keep the values the page has.
``--shape HxW`` counts every row at one input size instead (e.g. a quick check that all rows
still build and run: a few seconds a row); the FLOPs are then not compared with the paper's.
"""
import argparse
import re
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence

from mmengine.config import Config

from uninet_mm.utils.flops import config_complexity
from uninet_mm.utils.tools_support import parse_size

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / 'configs'
MODEL_ZOO = REPO / 'docs' / 'model_zoo.md'
TOLERANCE = 0.05
UNKNOWN = 'not given'
START, END = '<!-- model-table:start -->', '<!-- model-table:end -->'


class Row(NamedTuple):
    name: str
    config: str  # relative to configs/
    shape: tuple  # (H, W)
    paper_params: float  # M
    paper_flops: float  # G
    paper_top1: Optional[str]  # ImageNet-1K top-1 (%), None where the paper gives none
    task: str  # what top-1 means for the row: 'cls' rows have one, det/seg rows not


ROWS = [
    Row('Mask R-CNN UniNet-B1', 'mask_rcnn_uninet_b1_1x.py', (800, 1280), 28, 211, None, 'det'),
    Row('Mask R-CNN UniNet-B3', 'mask_rcnn_uninet_b3_1x.py', (800, 1280), 42, 270, None, 'det'),
    Row('UperNet UniNet-B1', 'upernet_uninet_b1_160k_ade20k.py', (512, 2048), 38, 877, None,
        'seg'),
    Row('UperNet UniNet-B3', 'upernet_uninet_b3_160k_ade20k.py', (512, 2048), 51, 940, None,
        'seg'),
    # Paper Table 10: UniNet-B0 with one DSM before every stage.
    Row('UniNet-B0, L-DSM everywhere', 'ablations/uninet_b0_l_dsm_in1k.py', (160, 160), 11.3,
        0.54, '78.5', 'cls'),
    Row('UniNet-B0, G-DSM everywhere', 'ablations/uninet_b0_g_dsm_in1k.py', (160, 160), 12.7,
        0.77, '76.8', 'cls'),
    Row('UniNet-B0, LG-DSM everywhere', 'ablations/uninet_b0_lg_dsm_in1k.py', (160, 160), 14.1,
        0.72, '78.9', 'cls'),
    # Paper Table 11: the DSMs in other backbones (baselines: Swin-T 81.2 / 4.5G / 29.0M,
    # PVT-Tiny 75.1 / 1.9G / 13.2M). The spec gives "PVT-Tiny 75.1 -> 78.6 with LG-DSM,
    # Swin-T 81.2 -> 81.9" and no other top-1: Swin's 81.9 is read as its LG-DSM row (marked *).
    Row('Swin-T + LG-DSM', 'dsm_transfer/swin_tiny_lg_dsm_in1k.py', (224, 224), 33.4, 6.4,
        '81.9*', 'cls'),
    Row('Swin-T + L->LG-DSM', 'dsm_transfer/swin_tiny_l_lg_dsm_in1k.py', (224, 224), 30.0, 4.7,
        None, 'cls'),
    Row('PVT-Tiny + LG-DSM', 'dsm_transfer/pvt_tiny_lg_dsm_in1k.py', (224, 224), 17.3, 3.1,
        '78.6', 'cls'),
    Row('PVT-Tiny + L->LG-DSM', 'dsm_transfer/pvt_tiny_l_lg_dsm_in1k.py', (224, 224), 14.3, 2.0,
        None, 'cls'),
]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--only', nargs='+', metavar='TEXT',
                        help='count only the rows whose name or config contains a TEXT')
    parser.add_argument('--by-module', action='store_true',
                        help='also print FLOPs and parameters per top-level module')
    parser.add_argument('--update-docs', action='store_true',
                        help='write the measured rows into docs/model_zoo.md\'s model table')
    parser.add_argument('--shape', type=parse_size, metavar='HxW',
                        help='count every row at this input size instead of the size the paper '
                             'quotes for it (faster; FLOPs not compared with the paper)')
    args = parser.parse_args(argv)
    if args.shape and args.update_docs:
        parser.error('--update-docs writes the paper\'s input sizes: not with --shape')
    return args


def select(rows: Sequence[Row], only: Optional[Sequence[str]]) -> List[Row]:
    if not only:
        return list(rows)
    chosen = [r for r in rows if any(t in r.name or t in r.config for t in only)]
    if not chosen:
        raise SystemExit(f'--only {only} matches no row; rows: {[r.name for r in rows]}')
    return chosen


def _diff(ours: float, paper: Optional[float]) -> str:
    if paper is None:
        return '-'
    rel = ours / paper - 1
    flag = '  <-- >5%' if abs(rel) > TOLERANCE else ''
    return f'{rel:+.1%}{flag}'


def _fmt(value: Optional[float], digits: int) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def top1(row: Row) -> str:
    if row.task != 'cls':
        return 'n/a'
    return UNKNOWN if row.paper_top1 is None else row.paper_top1


def measure(row: Row) -> Dict:
    cfg = Config.fromfile(str(CONFIG_DIR / row.config))
    result = config_complexity(cfg, *row.shape)
    by_op = result['flops_by_operator']
    attention = by_op.get('scaled_dot_product_attention', 0) + by_op.get('matmul', 0)
    return dict(params=result['params'] / 1e6, flops=result['flops'] / 1e9,
                attention=attention / 1e9, result=result)


def table_row(row: Row, params: float, flops: float) -> str:
    height, width = row.shape
    cls = row.task == 'cls'
    return (f'| {row.name} | {width}x{height} | {params:.{2 if cls else 1}f} | '
            f'{_fmt(row.paper_params, 1 if cls else 0)} | {flops:.{3 if cls else 1}f} | '
            f'{_fmt(row.paper_flops, 2 if cls else 0)} | {top1(row)} |')


def _key(name: str) -> str:
    return re.sub(r'[^a-z0-9>+-]', '', name.lower())


def update_model_zoo(text: str, measured: Dict[str, Dict]) -> str:
    """Page text with the table between the markers rebuilt from :data:`ROWS`: measured rows
    get this run's numbers, the others the params / FLOPs cells the page already has."""
    if START not in text or END not in text:
        raise SystemExit(f'{MODEL_ZOO} has no {START} ... {END} markers around the model table')
    head, rest = text.split(START, 1)
    table, tail = rest.split(END, 1)
    old = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) >= 5 and re.match(r'^[\d.]+$', cells[2]):
            old[_key(cells[0])] = (float(cells[2]), float(cells[4]))
    lines = ['| model | input (WxH) | params (M) | paper | FLOPs (G) | paper | paper top-1 (%) |',
             '|---|---|---|---|---|---|---|']
    for row in ROWS:
        if row.name in measured:
            values = measured[row.name]['params'], measured[row.name]['flops']
        elif _key(row.name) in old:
            values = old[_key(row.name)]
        else:
            continue
        lines.append(table_row(row, *values))
    return head + START + '\n' + '\n'.join(lines) + '\n' + END + tail


def main(argv=None):
    args = parse_args(argv)
    rows = select(ROWS, args.only)
    if args.shape:
        # the paper's FLOPs are for its sizes: their cells read '-' (parameters still compare)
        rows = [row._replace(shape=args.shape, paper_flops=None) for row in rows]
    header = ('| model | input (WxH) | params (M) | paper | diff | FLOPs (G) | paper | diff '
              '| of which attention (G) | paper top-1 (%) |')
    lines = [header, '|' + '---|' * 10]
    details, measured = [], {}
    for row in rows:
        values = measure(row)
        measured[row.name] = values
        params, flops = values['params'], values['flops']
        height, width = row.shape
        lines.append(f'| {row.name} | {width}x{height} | {params:.2f} | '
                     f'{_fmt(row.paper_params, 1)} | {_diff(params, row.paper_params)} | '
                     f'{flops:.3f} | {_fmt(row.paper_flops, 2)} | '
                     f'{_diff(flops, row.paper_flops)} | {values["attention"]:.3f} | '
                     f'{top1(row)} |')
        if args.by_module:
            result = values['result']
            details.append(f'{row.name} ({row.config}):')
            for module in sorted(result['params_by_module']):
                module_params = result['params_by_module'][module] / 1e6
                module_flops = result['flops_by_module'].get(module, 0) / 1e9
                details.append(f'    {module:<16} params {module_params:8.2f} M   '
                               f'FLOPs {module_flops:8.3f} G')
    print('\n'.join(lines))
    if details:
        print()
        print('\n'.join(details))
    if args.update_docs:
        MODEL_ZOO.write_text(update_model_zoo(MODEL_ZOO.read_text(), measured))
        print(f'\nupdated {MODEL_ZOO}')


if __name__ == '__main__':
    main()
