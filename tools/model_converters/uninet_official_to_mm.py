"""Convert a checkpoint of the authors' UniNet reference code into an mmengine checkpoint.

    python tools/model_converters/uninet_official_to_mm.py SRC.pth DST.pth

The architecture is inferred from the weights and stored in ``meta['arch']``; backbone keys get
the ``backbone.`` prefix and the classifier becomes mmpretrain's ``head.fc``, so the result
loads into a classifier with ``load_from`` and into a detector or segmentor with
``init_cfg=dict(type='Pretrained', checkpoint=DST, prefix='backbone.')``.
"""
import argparse
import os.path as osp
import sys

import torch

from uninet_mm.converters import ConversionError, convert_official_state_dict
from uninet_mm.utils import extract_state_dict


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='reference checkpoint (bare state dict, or under '
                                    '"model" / "state_dict")')
    parser.add_argument('dst', help='where to write the converted checkpoint')
    parser.add_argument('--trust-source', action='store_true',
                        help='load SRC with weights_only=False; only for a file you trust, '
                             'since it may run pickled code (needed when the checkpoint also '
                             'holds e.g. an argparse.Namespace)')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not osp.isfile(args.src):
        sys.exit(f'error: checkpoint {args.src} does not exist')
    try:
        checkpoint = torch.load(args.src, map_location='cpu',
                                weights_only=not args.trust_source)
    except Exception as err:  # torch raises UnpicklingError subclasses and RuntimeError
        sys.exit(f'error: could not load {args.src} with weights_only=True ({err}).\n'
                 'If you trust this file, rerun with --trust-source.')
    try:
        converted = convert_official_state_dict(extract_state_dict(checkpoint))
    except (ConversionError, ValueError) as err:
        sys.exit(f'error: {args.src} cannot be converted: {err}')
    meta = dict(arch=converted.arch, num_classes=converted.num_classes,
                converted_from=osp.basename(args.src), converter='uninet_official_to_mm')
    torch.save(dict(meta=meta, state_dict=converted.state_dict), args.dst)
    print(f'wrote {args.dst}: {len(converted.state_dict)} tensors, '
          f'{len(converted.arch["stages"])} stages, num_classes={converted.num_classes}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
