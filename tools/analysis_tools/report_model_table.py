"""Parameters and FLOPs of the UniNet detection/segmentation models next to the paper's numbers.

    python tools/analysis_tools/report_model_table.py [--by-module]

Mask R-CNN B1/B3 at 1280x800 and UperNet B1/B3 at 2048x512 (the input sizes the mm world quotes),
counted as tools/analysis_tools/get_flops.py counts (fvcore style, attention included). Rows that
differ from the paper by more than 5% are flagged; the ``--by-module`` breakdown helps to see
where a difference comes from, and the last column is the share of attention matmuls
(``scaled_dot_product_attention``), which counters without an attention handle (mmengine's
default, mmcv's hook-based counter used by mmdet 2.x / mmseg 0.x) leave out. Takes a few minutes
on a CPU.
"""
import argparse
from pathlib import Path

from mmengine.config import Config

from uninet_mm.utils.flops import config_complexity

CONFIG_DIR = Path(__file__).resolve().parents[2] / 'configs'

# name, config, (H, W), paper params (M), paper FLOPs (G)
ROWS = [
    ('Mask R-CNN UniNet-B1', 'mask_rcnn_uninet_b1_1x.py', (800, 1280), 28, 211),
    ('Mask R-CNN UniNet-B3', 'mask_rcnn_uninet_b3_1x.py', (800, 1280), 42, 270),
    ('UperNet UniNet-B1', 'upernet_uninet_b1_160k_ade20k.py', (512, 2048), 38, 877),
    ('UperNet UniNet-B3', 'upernet_uninet_b3_160k_ade20k.py', (512, 2048), 51, 940),
]
TOLERANCE = 0.05


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--by-module', action='store_true',
                        help='also print FLOPs and parameters per top-level module')
    return parser.parse_args(argv)


def _diff(ours: float, paper: float) -> str:
    rel = ours / paper - 1
    flag = '  <-- >5%' if abs(rel) > TOLERANCE else ''
    return f'{rel:+.1%}{flag}'


def main(argv=None):
    args = parse_args(argv)
    header = ('| model | input (WxH) | params (M) | paper | diff | FLOPs (G) | paper | diff '
              '| of which attention (G) |')
    lines = [header, '|' + '---|' * 9]
    details = []
    for name, config, (height, width), paper_params, paper_flops in ROWS:
        cfg = Config.fromfile(str(CONFIG_DIR / config))
        result = config_complexity(cfg, height, width)
        params, flops = result['params'] / 1e6, result['flops'] / 1e9
        attention = result['flops_by_operator'].get('scaled_dot_product_attention', 0)
        lines.append(f'| {name} | {width}x{height} | {params:.1f} | {paper_params} | '
                     f'{_diff(params, paper_params)} | {flops:.1f} | {paper_flops} | '
                     f'{_diff(flops, paper_flops)} | {attention / 1e9:.1f} |')
        if args.by_module:
            details.append(f'{name} ({config}):')
            for module in sorted(result['params_by_module']):
                module_params = result['params_by_module'][module] / 1e6
                module_flops = result['flops_by_module'].get(module, 0) / 1e9
                details.append(f'    {module:<16} params {module_params:8.2f} M   '
                               f'FLOPs {module_flops:8.2f} G')
    print('\n'.join(lines))
    if details:
        print()
        print('\n'.join(details))


if __name__ == '__main__':
    main()
