"""Compare architecture searches (searchers x seeds) from their work dirs.

    python tools/analysis_tools/compare_searches.py WORK_DIR [WORK_DIR ...] --out DIR
                                                   [--window 30]

Runs are grouped by the searcher their search_log.jsonl names; runs of one searcher are its
seeds. Writes into DIR: compare.png (best-so-far and running mean reward against trials, mean
and min-max over runs, per searcher; the accuracy-cost Pareto fronts overlaid), compare.csv
and compare.md (per searcher: runs, trials, best reward and mean reward of the last WINDOW
trials as mean +- std over runs, trial seconds per run). See docs/search.md.
"""
import argparse
import sys
from pathlib import Path

from uninet_mm.search.compare import DEFAULT_WINDOW, compare_searches


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Compare architecture searches')
    parser.add_argument('work_dirs', nargs='+', help='search work dirs (tools/search.py '
                        '--work-dir), any searchers, any seeds')
    parser.add_argument('--out', required=True, help='folder for compare.png/.csv/.md')
    parser.add_argument('--window', type=int, default=DEFAULT_WINDOW,
                        help=f'trials in the running mean and the last-trials column '
                        f'(default {DEFAULT_WINDOW})')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.window < 1:
        sys.stderr.write('--window must be >= 1\n')
        return 2
    try:
        result = compare_searches(args.work_dirs, args.out, window=args.window)
    except (FileNotFoundError, ValueError) as exc:
        sys.stderr.write(f'compare_searches: {exc}\n')
        return 2
    sys.stdout.write(Path(result['table']).read_text())
    sys.stdout.write(f'picture {result["picture"]}\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
