"""Does a search config's proxy task rank architectures, or seeds? Trains N random architectures
of its space once per proxy seed and prints the seed-to-seed Spearman rank correlation of their
accuracies and the spread between architectures over the spread over seeds.

    python tools/analysis_tools/proxy_noise.py CONFIG --num-archs 20 --seeds 2 \
        [--work-dir DIR] [--arch-seed 0] [--out result.json] [--shard I/N]
        [--cfg-options KEY=VALUE ...]

    python tools/analysis_tools/proxy_noise.py configs/search/uninet_search_synthetic.py \
        --num-archs 20 --seeds 2 --work-dir work_dirs/proxy_noise

Every trial is appended to DIR/proxy_noise.jsonl as it finishes; running the same command again
only runs the trials that are missing (same config, same work dir). Targets of an informative
proxy: Spearman >= 0.7 for every pair of seeds and a spread ratio >= 2. See docs/search.md.
"""
import argparse
import json
import sys
from typing import Any, Dict, List, Optional

from mmengine.config import Config, DictAction

from uninet_mm.search.config import SearchConfigError
from uninet_mm.search.proxy import ProxyConfigError
from uninet_mm.search.proxy_noise import TARGET_RATIO, TARGET_SPEARMAN, measure_proxy_noise


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Seed noise against architecture signal of a '
                                     'search config\'s proxy task')
    parser.add_argument('config', help='search config, e.g. '
                        'configs/search/uninet_search_synthetic.py')
    parser.add_argument('--num-archs', type=int, default=20,
                        help='random architectures of the space to train (default 20)')
    parser.add_argument('--seeds', type=int, default=2,
                        help='proxy seeds per architecture: 0 .. K-1 (default 2)')
    parser.add_argument('--arch-seed', type=int, default=0,
                        help='seed of the architecture sampling (default 0)')
    parser.add_argument('--work-dir', default='work_dirs/proxy_noise',
                        help='data splits, trial folders and proxy_noise.jsonl (the trials done '
                        'so far; a rerun skips them); default work_dirs/proxy_noise')
    parser.add_argument('--out', default=None, help='also write the whole result as JSON')
    parser.add_argument('--shard', default=None, metavar='I/N',
                        help='run only every N-th trial, starting at trial I (0-based), and '
                        'read the others from the work dir\'s log: N processes share a '
                        'measurement (start the others once the first has made the data); '
                        'a last run without --shard reports the whole')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, KEY=VALUE pairs '
                        '(e.g. proxy.runner.train_cfg.max_epochs=4)')
    args = parser.parse_args(argv)
    if args.num_archs < 2 or args.seeds < 2:
        parser.error('--num-archs and --seeds must be at least 2')
    if args.shard is not None:
        try:
            index, count = (int(v) for v in args.shard.split('/'))
        except ValueError:
            parser.error(f'--shard {args.shard!r}: give I/N, e.g. 0/2')
        if not 0 <= index < count:
            parser.error(f'--shard {args.shard!r}: need 0 <= I < N')
        args.shard = (index, count)
    return args


def _fmt(value: Optional[float], spec: str = '.3f') -> str:
    return '-' if value is None else format(value, spec)


def format_report(result: Dict[str, Any]) -> str:
    """The per-architecture table and the summary lines of a :func:`measure_proxy_noise`
    result."""
    seeds = result['seeds']
    lines = [f'{"#":>3} {"MFLOPs":>8} ' + ' '.join(f'{"seed " + str(s):>7}' for s in seeds)
             + f' {"mean":>6}']
    for arch in result['archs']:
        accs = [arch['accuracy'].get(s) for s in seeds]
        ok = [a for a in accs if a is not None]
        mean = sum(ok) / len(ok) if len(ok) == len(accs) else None
        flops = None if arch['flops'] is None else arch['flops'] / 1e6
        lines.append(f'{arch["index"]:>3} {_fmt(flops, ".2f"):>8} '
                     + ' '.join(f'{_fmt(a):>7}' for a in accs) + f' {_fmt(mean):>6}')
    lines.append('')
    lines.append(f'{result["num_scored"]} of {len(result["archs"])} architectures scored with '
                 f'every seed; {len(result["failures"])} failed trials')
    if result['spearman'] is not None:
        pairs = ', '.join(f'{k} {v:.3f}' for k, v in result['spearman'].items())
        lines.append(f'Spearman between seeds: {pairs} (min {result["spearman_min"]:.3f}, '
                     f'target >= {TARGET_SPEARMAN})')
        lines.append(f'spread: between architectures (std of means) {result["arch_std"]:.4f}, '
                     f'over seeds (mean std) {result["seed_std"]:.4f}, ratio '
                     f'{result["spread_ratio"]:.2f} (target >= {TARGET_RATIO}); with each '
                     f'seed\'s mean offset taken out: seed std '
                     f'{result["seed_std_centred"]:.4f}, ratio '
                     f'{result["spread_ratio_centred"]:.2f}')
        lines.append(f'accuracy {result["accuracy_min"]:.3f} .. {result["accuracy_max"]:.3f}, '
                     f'mean {result["accuracy_mean"]:.3f}')
        lines.append('meets the target' if result['meets_target'] else
                     'does NOT meet the target')
    lines.append(f'per trial: {_fmt(result["seconds_per_trial"], ".1f")} s wall, '
                 f'{_fmt(result["cpu_seconds_per_trial"], ".1f")} s CPU (this process); '
                 f'trials logged in {result["log"]}')
    return '\n'.join(lines) + '\n'


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    total = args.num_archs * args.seeds

    def progress(record: Dict[str, Any]) -> None:
        progress.count += 1
        acc = _fmt(record.get('accuracy'))
        sys.stderr.write(f'  trial {progress.count}/{total}: arch {record["index"]} seed '
                         f'{record["seed"]} {record["status"]} accuracy {acc} '
                         f'({record.get("seconds", 0):.1f} s)\n')

    progress.count = 0
    try:
        result = measure_proxy_noise(cfg, args.num_archs, args.seeds, args.work_dir,
                                     arch_seed=args.arch_seed, progress=progress,
                                     shard=args.shard)
    except (SearchConfigError, ProxyConfigError) as exc:
        sys.stderr.write(f'search config error: {exc}\n')
        return 2
    sys.stdout.write(f'proxy noise of {args.config}: {args.num_archs} architectures '
                     f'(arch seed {args.arch_seed}) x proxy seeds {result["seeds"]}\n')
    sys.stdout.write(format_report(result))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
