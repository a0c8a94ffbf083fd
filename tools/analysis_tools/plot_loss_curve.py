"""Plot loss vs iteration from an mmengine training log.

    python tools/analysis_tools/plot_loss_curve.py work_dirs/quickstart_det --out curve.png
    python tools/analysis_tools/plot_loss_curve.py work_dirs/x/20240101_000000/vis_data/scalars.json
"""
import argparse

from uninet_mm.utils.plotting import plot_loss_curve


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='work dir (newest run is used) or a scalars json file')
    parser.add_argument('--out', default='loss_curve.png', help='output image')
    parser.add_argument('--keys', nargs='+', default=None,
                        help='loss keys to plot (default: every loss* key)')
    parser.add_argument('--smooth', type=int, default=1, help='moving-average window')
    parser.add_argument('--title', default=None)
    parser.add_argument('--no-metrics', action='store_true',
                        help='do not add the validation metrics panel')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    out = plot_loss_curve(args.src, args.out, keys=args.keys, smooth=args.smooth,
                          title=args.title, with_metrics=not args.no_metrics)
    print(f'loss curve written to {out}')


if __name__ == '__main__':
    main()
