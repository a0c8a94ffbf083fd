"""Parameters and FLOPs of the model of a detection, segmentation or classification config.

    python tools/analysis_tools/get_flops.py CONFIG --shape H W [--cfg-options ...]

Counted the way the UniNet paper counts (fvcore style, as mmengine's
``get_model_complexity_info``): one multiply-add is one FLOP, batch 1, attention matmuls
included (mmengine's counter does not know ``F.scaled_dot_product_attention``; the handle in
``uninet_mm.utils.flops`` adds it). Detectors run backbone + neck + heads in ``mode='tensor'``
like mmdet's get_flops; segmentors backbone + decode head; classifiers the whole network.
Mask R-CNN at 1280x800 is ``--shape 800 1280``; UperNet at 2048x512 is ``--shape 512 2048``.
The model is traced with autograd on (as mmengine does), so a large detector at 1280x800 needs
several GB of memory (about 9 GB for Mask R-CNN B3).
"""
import argparse

from mmengine.config import Config, DictAction

from uninet_mm.utils.flops import config_complexity, format_count


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Count the parameters and FLOPs of a model')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--shape', type=int, nargs='+', default=[800, 1280],
                        help='input height and width (one value: a square); default 800 1280')
    parser.add_argument('--by-module', action='store_true',
                        help='also list FLOPs and parameters of the top-level modules')
    parser.add_argument('--no-attention', action='store_true',
                        help='leave scaled_dot_product_attention uncounted, as mmengine does '
                        'by default (for comparison only)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, KEY=VALUE pairs')
    args = parser.parse_args(argv)
    if len(args.shape) == 1:
        args.shape = args.shape * 2
    if len(args.shape) != 2:
        parser.error('--shape takes H W or a single size')
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    height, width = args.shape
    result = config_complexity(cfg, height, width, extra_handles={} if args.no_attention
                               else None)
    line = '=' * 40
    print(line)
    print(f'Config: {args.config}')
    print(f'Input shape: {height}x{width} (HxW), after padding: '
          f'{result["input_shape"][0]}x{result["input_shape"][1]}')
    print(f'Flops: {format_count(result["flops"], "G")}')
    print(f'Params: {format_count(result["params"], "M")}')
    if args.by_module:
        for name in sorted(set(result['params_by_module']) | set(result['flops_by_module'])):
            print(f'  {name:<20} flops {format_count(result["flops_by_module"].get(name, 0)):>10}'
                  f'  params {format_count(result["params_by_module"].get(name, 0), "M"):>8}')
    if result['unsupported_ops']:
        print('Not counted (element-wise/other ops): ' + ', '.join(
            f'{op} x{n}' for op, n in sorted(result['unsupported_ops'].items())))
    print(line)


if __name__ == '__main__':
    main()
