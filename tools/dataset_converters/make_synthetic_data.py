"""Generate the built-in synthetic datasets (deterministic for a given seed).

    python tools/dataset_converters/make_synthetic_data.py coco --out data/synthetic_coco
    python tools/dataset_converters/make_synthetic_data.py ade20k --out data/synthetic_ade \
        --num-train 400 --num-val 50 --size 256 320 --seed 0
"""
import argparse

from uninet_mm.datasets import make_ade20k_semantic, make_coco_instances


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('kind', choices=['coco', 'ade20k'],
                        help='coco: instance segmentation in COCO format; '
                        'ade20k: semantic segmentation in the ADE20K folder layout')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--num-train', type=int, default=400)
    parser.add_argument('--num-val', type=int, default=50)
    parser.add_argument('--size', type=int, nargs=2, default=[256, 320], metavar=('H', 'W'),
                        help='image height and width')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--min-objects', type=int, default=None,
                        help='fewest objects per image (default 2 coco, 3 ade20k)')
    parser.add_argument('--max-objects', type=int, default=None,
                        help='most objects per image (default 6 coco, 8 ade20k)')
    parser.add_argument('--png', action='store_true',
                        help='coco only: save png images instead of jpg')
    parser.add_argument('--no-background-class', action='store_true',
                        help='ade20k only: background is label 0 (ignored) instead of class 1')
    parser.add_argument('--force', action='store_true',
                        help='regenerate even if the same data are already there')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    common = dict(num_train=args.num_train, num_val=args.num_val, image_size=tuple(args.size),
                  seed=args.seed, force=args.force)
    if args.kind == 'coco':
        objects = (args.min_objects or 2, args.max_objects or 6)
        info = make_coco_instances(args.out, num_objects=objects,
                                   img_format='png' if args.png else 'jpg', **common)
        detail = (f"{info['num_train_instances']} / {info['num_val_instances']} instances "
                  f'(train / val)')
    else:
        objects = (args.min_objects or 3, args.max_objects or 8)
        info = make_ade20k_semantic(args.out, num_objects=objects,
                                    background_class=not args.no_background_class, **common)
        detail = f"data_root {info['data_root']}"
    state = 'generated' if info['generated'] else 'already up to date'
    print(f"{args.kind}: {info['num_train_images']} train + {info['num_val_images']} val "
          f"images in {args.out} ({state}); {detail}; classes {list(info['classes'])}")


if __name__ == '__main__':
    main()
