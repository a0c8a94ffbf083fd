"""Time the quickstart's training (configs/quickstart/) plain and with each speed variant, side
by side: same config, seed and generated data, the variants interleaved round by round
(A, B, A, B, ...), each run in a fresh process.

    python tools/analysis_tools/benchmark_training.py --tasks det seg \
        --variants plain shipped --iters 30 --warmup 5 --rounds 3 --threads 1
    # as README command 1 trains (2 threads, one data worker): compare the wall times
    python tools/analysis_tools/benchmark_training.py --tasks det --variants plain shipped \
        --iters 40 --warmup 10 --rounds 3 --threads 2 --workers 1

A run trains ``--iters`` iterations (data loading in the main process, or in ``--workers``
worker processes, forward, backward, optimizer step; no validation). Per run the tool sums
the CPU time (``time.process_time``) and the wall time of the iterations after ``--warmup``;
it prints each variant's median over the rounds, the plain / variant ratio of every round
and its median, and how far the variant's losses are from the plain model's (the same seed
gives the same data and initial weights, so they differ only by rounding, which training
amplifies over the iterations). With ``--threads 1`` the CPU time is about the time on an
idle core, whatever else shares the machine. Variants:
:data:`uninet_mm.benchmark.training.TRAINING_VARIANTS`.
"""
import argparse
import json
import platform
import statistics
from pathlib import Path
from typing import Dict, List

from uninet_mm.benchmark.measure import environment
from uninet_mm.benchmark.training import TRAINING_VARIANTS, spawn_training

REPO = Path(__file__).resolve().parents[2]
CONFIGS = dict(det=REPO / 'configs/quickstart/mask_rcnn_uninet_tiny_synthetic.py',
               seg=REPO / 'configs/quickstart/upernet_uninet_tiny_synthetic_ade.py')


def data_options(task: str, data_root: Path, num_train: int, workers: int = 0) -> Dict:
    """Generate the task's synthetic training data under ``data_root`` (if missing) and
    return the config options that point the training loader at them (loading in the main
    process, or in ``workers`` persistent worker processes)."""
    from uninet_mm.datasets import make_ade20k_semantic, make_coco_instances
    if task == 'det':
        root = data_root / 'synthetic_coco'
        make_coco_instances(root, num_train=num_train, num_val=2)
        dataset_root = str(root) + '/'
    else:
        root = data_root / 'synthetic_ade'
        make_ade20k_semantic(root, num_train=num_train, num_val=2)
        dataset_root = str(root / 'ADEChallengeData2016')
    return {'train_dataloader.dataset.data_root': dataset_root,
            'train_dataloader.num_workers': workers,
            'train_dataloader.persistent_workers': workers > 0}


def summarize(runs: Dict[str, List[Dict]], warmup: int) -> Dict:
    """Per variant: the CPU and wall seconds of the timed iterations of every round, their
    medians, the plain / variant ratios, and the losses' largest relative distance from the
    plain model's at the same iteration (first round)."""
    out = {}
    for variant, rounds in runs.items():
        cpu = [sum(r['cpu'] for r in run['records'][warmup:]) for run in rounds]
        wall = [sum(r['wall'] for r in run['records'][warmup:]) for run in rounds]
        out[variant] = dict(cpu=cpu, wall=wall, cpu_median=statistics.median(cpu),
                            wall_median=statistics.median(wall),
                            first_iter_cpu=[run['records'][0]['cpu'] for run in rounds])
    plain = out.get('plain')
    for variant, row in out.items():
        if plain is None or variant == 'plain':
            continue
        row['cpu_ratios'] = [p / v for p, v in zip(plain['cpu'], row['cpu'])]
        row['wall_ratios'] = [p / v for p, v in zip(plain['wall'], row['wall'])]
        row['cpu_ratio_median'] = statistics.median(row['cpu_ratios'])
        row['wall_ratio_median'] = statistics.median(row['wall_ratios'])
        ref, got = runs['plain'][0]['records'], runs[variant][0]['records']
        row['loss_rel_diff'] = [abs(a['loss'] - b['loss']) / abs(a['loss'])
                                for a, b in zip(ref, got)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--tasks', nargs='+', choices=sorted(CONFIGS), default=['det', 'seg'])
    parser.add_argument('--variants', nargs='+', choices=TRAINING_VARIANTS,
                        default=['plain', 'shipped'])
    parser.add_argument('--iters', type=int, default=30, help='iterations per run')
    parser.add_argument('--warmup', type=int, default=5, help='untimed first iterations')
    parser.add_argument('--rounds', type=int, default=3, help='runs of each variant')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--workers', type=int, default=0,
                        help='data loading processes (0: in the training process, whose CPU '
                        'time then includes it; with workers compare the wall times)')
    parser.add_argument('--batch-size', type=int, default=None,
                        help='training batch size (default: the config\'s)')
    parser.add_argument('--num-train', type=int, default=64, help='generated train images')
    parser.add_argument('--data-root', default='data/benchmark_training')
    parser.add_argument('--out', default=None, help='write every run\'s records as JSON')
    args = parser.parse_args()

    env = environment()
    print(f'{env["cpu"]} ({env["cpu_capability"]}), torch {env["torch"]}, '
          f'python {platform.python_version()}, {args.threads} thread(s), '
          f'load average at start {env["load_average"]}')
    results = {}
    for task in args.tasks:
        options = data_options(task, Path(args.data_root), args.num_train, args.workers)
        if args.batch_size:
            options['train_dataloader.batch_size'] = args.batch_size
        runs: Dict[str, List[Dict]] = {v: [] for v in args.variants}
        for round_index in range(args.rounds):
            for variant in args.variants:
                run = spawn_training(dict(config=str(CONFIGS[task]), cfg_options=options,
                                          variant=variant, iters=args.iters,
                                          threads=args.threads))
                if run.get('error'):
                    raise SystemExit(f'{task} {variant} failed:\n{run["error"]}')
                runs[variant].append(run)
                timed = run['records'][args.warmup:]
                print(f'{task} round {round_index} {variant:>14}: '
                      f'cpu {sum(r["cpu"] for r in timed):7.1f} s  '
                      f'wall {sum(r["wall"] for r in timed):7.1f} s  '
                      f'({len(timed)} iterations)', flush=True)
        summary = summarize(runs, args.warmup)
        results[task] = dict(runs=runs, summary=summary)
        for variant, row in summary.items():
            line = (f'{task} {variant:>14}: median cpu {row["cpu_median"]:.1f} s, wall '
                    f'{row["wall_median"]:.1f} s, first iteration cpu '
                    f'{statistics.median(row["first_iter_cpu"]):.1f} s')
            if 'cpu_ratios' in row:
                line += (f'; plain/{variant} cpu {row["cpu_ratio_median"]:.3f} '
                         f'({", ".join(f"{r:.3f}" for r in row["cpu_ratios"])}), wall '
                         f'{row["wall_ratio_median"]:.3f} '
                         f'({", ".join(f"{r:.3f}" for r in row["wall_ratios"])}); loss '
                         f'rel. diff first/last/max {row["loss_rel_diff"][0]:.1e}/'
                         f'{row["loss_rel_diff"][-1]:.1e}/{max(row["loss_rel_diff"]):.1e}')
            print(line)
    if args.out:
        Path(args.out).write_text(json.dumps(dict(args=vars(args), environment=env,
                                                  results=results), indent=1))


if __name__ == '__main__':
    main()
