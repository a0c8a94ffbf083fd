"""UniNet architecture search: a searcher proposes architectures, a proxy task trains and
scores each (paper section 3.4). The default searcher is the paper's, an LSTM controller
trained with PPO; ``--searcher random|evolution|nsga2`` runs another one with the same
outputs (docs/search.md).

    python tools/search.py CONFIG --work-dir DIR [--max-trials N] [--resume]
                           [--searcher ppo|random|evolution|nsga2]
                           [--backend embedded|ray] [--ray-address ADDR]
                           [--cfg-options KEY=VALUE ...]

    # built-in search on generated data: 60 architectures of 10-16 s each on a 2-core CPU
    # (the config's estimate):
    python tools/search.py configs/search/uninet_search_synthetic.py --work-dir work_dirs/search
    # the paper's search on ImageNet-1K, one trial per GPU of a Ray cluster:
    python tools/search.py configs/search/uninet_search_in1k.py --work-dir work_dirs/search_in1k \
        --backend ray --ray-address auto

Writes into DIR: search_log.jsonl (one line per scored architecture), search_state.pth (the
searcher's whole state, after every trial; --resume continues from it, with the same
searcher), results.csv (the log as a table; uninet_mm.search.records.load_search reads it
into pandas), top5.json, pareto.json, configs/top*_uninet_in1k.py and
configs/top*_mask_rcnn_1x_coco.py, search.png, search.log, vis/ (the searcher's statistics:
vis_data/scalars.json and TensorBoard events).
With --backend ray, Tune sees the reward after every validated epoch
(--cfg-options "search.scheduler.type=asha" stops weak architectures early).
A bad config (unknown GOP, t <= 0, empty choice list, missing data set, ...) stops before any
trial with a message saying what to change.
"""
import argparse
import sys

from mmengine.config import Config, DictAction

from uninet_mm.search.config import SearchConfigError
from uninet_mm.search.proxy import ProxyConfigError
from uninet_mm.search.runner import BACKENDS, run_search
from uninet_mm.search.searchers import SEARCHERS, SearcherError


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='UniNet architecture search')
    parser.add_argument('config', help='search config, e.g. configs/search/uninet_search_synthetic.py')
    parser.add_argument('--work-dir', required=True, help='folder for the search state, log, '
                        'top architectures, their configs and the pictures')
    parser.add_argument('--max-trials', type=int, default=None,
                        help='architectures to score (overrides search.max_trials)')
    parser.add_argument('--resume', action='store_true',
                        help='continue the search saved in --work-dir')
    parser.add_argument('--searcher', choices=list(SEARCHERS), default=None,
                        help='how architectures are chosen (default: the config\'s searcher '
                        'section, else ppo, the paper\'s); overrides the config\'s type')
    parser.add_argument('--backend', choices=BACKENDS, default='embedded',
                        help='embedded: trials one after another in this process; ray: Ray '
                        'Tune trials with their own resources (pip install -e ".[search]")')
    parser.add_argument('--ray-address', default=None,
                        help='Ray cluster to join (e.g. "auto"); default: start a local one')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, KEY=VALUE pairs '
                        '(e.g. search.seed=1 reward.target=20e6)')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    try:
        run_search(cfg, args.work_dir, max_trials=args.max_trials, resume=args.resume,
                   backend=args.backend, ray_address=args.ray_address,
                   searcher=args.searcher)
    except (SearchConfigError, SearcherError, ProxyConfigError, FileExistsError,
            FileNotFoundError) as exc:
        sys.stderr.write(f'search config error: {exc}\n')
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
