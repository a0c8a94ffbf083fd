"""Quickstart: train a tiny UniNet on built-in synthetic data on a CPU, evaluate, draw pictures.

    python tools/quickstart.py              # Mask R-CNN, COCO box/mask mAP  (~10-15 min, 2 cores)
    python tools/quickstart.py --task seg   # UperNet, mIoU                  (~5-10 min, 2 cores)

Steps: generate the synthetic data if missing (data/synthetic_coco or data/synthetic_ade),
train the config in configs/quickstart/, evaluate on the validation split, then write into
the work dir ``loss_curve.png`` and ``predictions/*.jpg`` (ground truth left, prediction
right, a few validation images) and print the metrics and where the pictures are.
"""
import argparse
import copy
import resource
import time
from pathlib import Path
from typing import Dict, List, Optional

from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import MMLogger, print_log

REPO = Path(__file__).resolve().parents[1]
TASKS = {
    'det': dict(config=REPO / 'configs/quickstart/mask_rcnn_uninet_tiny_synthetic.py',
                data_root='data/synthetic_coco', work_dir='work_dirs/quickstart_det',
                metrics=('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP',
                         'coco/segm_mAP_50')),
    'seg': dict(config=REPO / 'configs/quickstart/upernet_uninet_tiny_synthetic_ade.py',
                data_root='data/synthetic_ade', work_dir='work_dirs/quickstart_seg',
                metrics=('mIoU', 'aAcc', 'mAcc')),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--task', choices=sorted(TASKS), default='det',
                        help='det: Mask R-CNN (box + mask mAP); seg: UperNet (mIoU)')
    parser.add_argument('--config', default=None, help='override the quickstart config')
    parser.add_argument('--data-root', default=None, help='where the synthetic data live')
    parser.add_argument('--work-dir', default=None, help='logs, checkpoint and pictures')
    parser.add_argument('--iters', type=int, default=None,
                        help='training iterations (default: the config\'s max_iters)')
    parser.add_argument('--batch-size', type=int, default=None,
                        help='training batch size (default: the config\'s)')
    parser.add_argument('--num-train', type=int, default=None,
                        help='synthetic train images (default 400)')
    parser.add_argument('--num-val', type=int, default=None,
                        help='synthetic val images (default 50)')
    parser.add_argument('--data-seed', type=int, default=None,
                        help='seed of the synthetic data (default 0); data already in '
                        '--data-root are used as they are unless a data option is given')
    parser.add_argument('--seed', type=int, default=0, help='training seed')
    parser.add_argument('--num-vis', type=int, default=4, help='val images to draw')
    parser.add_argument('--score-thr', type=float, default=0.5,
                        help='det: lowest score drawn')
    parser.add_argument('--plain', action='store_true',
                        help='train and evaluate the plain model: without the config\'s '
                        'UniNetAccelerationHook (the speed forms it turns on, docs/speed.md)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads (default: torch\'s choice, one per core); use 1 '
                        'when other jobs share the cores')
    return parser.parse_args()


# ----------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------
def _rescale_schedule(cfg: Config, iters: int) -> None:
    """Set max_iters and stretch the iteration-based LR schedule and hooks to match."""
    old = cfg.train_cfg.max_iters
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters
    for sched in cfg.param_scheduler:
        for key in ('begin', 'end'):
            if key in sched and sched[key] is not None:
                sched[key] = min(iters, max(0, round(sched[key] * iters / old)))
        if 'T_max' in sched:
            sched['T_max'] = sched['end'] - sched['begin']
    # Keep the warm-up non-empty for very short runs.
    first = cfg.param_scheduler[0]
    if first.get('end', 1) <= first.get('begin', 0):
        first['end'] = first['begin'] + 1
    cfg.default_hooks.checkpoint.interval = iters
    cfg.default_hooks.logger.interval = max(1, min(cfg.default_hooks.logger.interval,
                                                   iters // 10 or 1))


def build_config(task: str, config: Optional[str] = None, data_root: Optional[str] = None,
                 work_dir: Optional[str] = None, iters: Optional[int] = None,
                 seed: int = 0, batch_size: Optional[int] = None,
                 plain: bool = False) -> Config:
    """The quickstart config of ``task`` with data root, work dir and length filled in;
    ``plain`` drops its ``UniNetAccelerationHook``."""
    spec = TASKS[task]
    cfg = Config.fromfile(str(config or spec['config']))
    cfg.work_dir = str(work_dir or spec['work_dir'])
    data_root = str(data_root or spec['data_root'])
    if task == 'det':
        root = data_root.rstrip('/') + '/'
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            cfg[loader].dataset.data_root = root
        for evaluator in ('val_evaluator', 'test_evaluator'):
            cfg[evaluator].ann_file = root + 'annotations/instances_val2017.json'
    else:
        root = str(Path(data_root) / 'ADEChallengeData2016')
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            cfg[loader].dataset.data_root = root
    if iters is not None:
        _rescale_schedule(cfg, iters)
    if batch_size is not None:
        cfg.train_dataloader.batch_size = batch_size
    cfg.randomness = dict(seed=seed)
    if plain:
        from uninet_mm.utils.tools_support import without_acceleration_hooks
        cfg.custom_hooks = without_acceleration_hooks(cfg)
    return cfg


class PhaseTimer(Hook):
    """Wall time from the start of training to the first validation."""

    def __init__(self) -> None:
        self.train_start = self.train_end = None

    def before_train(self, runner) -> None:
        self.train_start = time.perf_counter()

    def before_val(self, runner) -> None:
        if self.train_end is None:
            self.train_end = time.perf_counter()


def make_data(task: str, data_root: str, num_train: Optional[int] = None,
              num_val: Optional[int] = None, data_seed: Optional[int] = None) -> dict:
    """Generate the task's synthetic data set unless it is there already.

    Data already generated under ``data_root`` for this task are used as they are when no
    data option is given; otherwise the generator is asked for exactly these options
    (defaults: 400 train, 50 val images, seed 0), which regenerates only if they differ.
    """
    from uninet_mm.datasets import make_ade20k_semantic, make_coco_instances, read_manifest
    kind = 'coco' if task == 'det' else 'ade20k'
    manifest = read_manifest(data_root)
    if (manifest is not None and manifest.get('params', {}).get('kind') == kind
            and num_train is None and num_val is None and data_seed is None):
        print_log(f'using the synthetic data in {data_root} ({manifest["stats"]})',
                  logger='current')
        return dict(manifest['stats'], root=data_root, generated=False)
    options = dict(num_train=400 if num_train is None else num_train,
                   num_val=50 if num_val is None else num_val,
                   seed=0 if data_seed is None else data_seed)
    if task == 'det':
        return make_coco_instances(data_root, **options)
    return make_ade20k_semantic(data_root, **options)


def last_val_metrics(runner) -> Dict[str, float]:
    """The metrics of the runner's latest evaluation (kept by mmengine's RuntimeInfoHook)."""
    hub = runner.message_hub
    return {key[len('val/'):]: float(value.current())
            for key, value in hub.log_scalars.items() if key.startswith('val/')}


# ----------------------------------------------------------------------------------------------
# Pictures
# ----------------------------------------------------------------------------------------------
def draw_predictions(runner, task: str, out_dir: Path, num: int,
                     score_thr: float = 0.5) -> List[Path]:
    """Run the trained model on the first ``num`` val images; draw GT | prediction."""
    import mmcv
    import torch

    dataset = runner.val_dataloader.dataset
    visualizer = runner.visualizer
    visualizer.dataset_meta = dataset.metainfo
    model = runner.model
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    collate = runner.val_dataloader.collate_fn
    for idx in range(min(num, len(dataset))):
        batch = collate([dataset[idx]])
        with torch.no_grad():
            sample = model.test_step(batch)[0]
        img_path = sample.img_path
        image = mmcv.imread(img_path, channel_order='rgb')
        out_file = out_dir / (Path(img_path).stem + '.jpg')
        kwargs: Dict = dict(draw_gt=True, draw_pred=True, show=False, out_file=str(out_file))
        if task == 'det':
            kwargs['pred_score_thr'] = score_thr
        visualizer.add_datasample(Path(img_path).stem, image, data_sample=sample, **kwargs)
        written.append(out_file)
    return written


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------
def run_quickstart(task: str = 'det', config: Optional[str] = None,
                   data_root: Optional[str] = None, work_dir: Optional[str] = None,
                   iters: Optional[int] = None, num_train: Optional[int] = None,
                   num_val: Optional[int] = None, seed: int = 0, num_vis: int = 4,
                   score_thr: float = 0.5, batch_size: Optional[int] = None,
                   data_seed: Optional[int] = None, plain: bool = False) -> dict:
    """Generate data, train, evaluate and draw; returns metrics, paths and timings."""
    from mmengine.runner import Runner

    from uninet_mm.utils.plotting import plot_training_summary

    spec = TASKS[task]
    timings = {}
    start = time.perf_counter()
    data_root = str(data_root or spec['data_root'])
    data = make_data(task, data_root, num_train, num_val, data_seed)
    timings['data'] = time.perf_counter() - start

    cfg = build_config(task, config, data_root, work_dir, iters, seed, batch_size, plain)
    runner = Runner.from_cfg(copy.deepcopy(cfg))
    phases = PhaseTimer()
    runner.register_hook(phases)
    tick = time.perf_counter()
    # The iteration-based loop evaluates on the val split after the last iteration.
    runner.train()
    timings['train_and_eval'] = time.perf_counter() - tick
    timings['train'] = (phases.train_end or time.perf_counter()) - phases.train_start
    metrics = last_val_metrics(runner)

    tick = time.perf_counter()
    work = Path(cfg.work_dir)
    headline = {key: metrics[key] for key in spec['metrics'] if key in metrics}
    curve = plot_training_summary(Path(runner.log_dir) / 'vis_data' / 'scalars.json', headline,
                                  work / 'loss_curve.png',
                                  title=f'quickstart {task}: {Path(cfg.filename).stem}')
    pictures = draw_predictions(runner, task, work / 'predictions', num_vis, score_thr)
    timings['pictures'] = time.perf_counter() - tick
    timings['total'] = time.perf_counter() - start
    # CPU seconds of the main process (data workers excluded): with one thread, about the wall
    # time the run needs on a free core, whatever else shares the machine.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    timings['cpu'] = usage.ru_utime + usage.ru_stime
    print_log(f'quickstart timings (s): { {k: round(v, 1) for k, v in timings.items()} }',
              logger='current')
    checkpoint = work / f'iter_{cfg.train_cfg.max_iters}.pth'
    return dict(metrics=metrics, data=data, loss_curve=curve, predictions=pictures,
                work_dir=work, timings=timings, checkpoint=checkpoint)


def main() -> None:
    args = parse_args()
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    MMLogger.get_instance('uninet_quickstart', log_level='INFO')
    result = run_quickstart(args.task, args.config, args.data_root, args.work_dir, args.iters,
                            args.num_train, args.num_val, args.seed, args.num_vis,
                            args.score_thr, args.batch_size, args.data_seed, args.plain)
    metrics = result['metrics']
    shown = [k for k in TASKS[args.task]['metrics'] if k in metrics]
    print()
    timings = result['timings']
    print(f'UniNet quickstart ({args.task}) finished in {timings["total"] / 60:.1f} min '
          f'(training {timings["train"] / 60:.1f} min, evaluation '
          f'{(timings["train_and_eval"] - timings["train"]) / 60:.1f} min'
          + (', plain model)' if args.plain else ')'))
    for key in shown:
        print(f'  {key:<18} {metrics[key]:.3f}' if args.task == 'det'
              else f'  {key:<18} {metrics[key]:.2f}')
    print(f'  loss curve:        {result["loss_curve"]}')
    print(f'  predictions:       {result["predictions"][0].parent}/ '
          f'({len(result["predictions"])} images, ground truth left, prediction right)'
          if result['predictions'] else '')
    print(f'  checkpoint:        {result["checkpoint"]}')


if __name__ == '__main__':
    main()
