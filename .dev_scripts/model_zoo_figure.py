"""Developer script: the model zoo's Figure 1, accuracy against FLOPs and against latency of
UniNet-B0..B6 and its peers, drawn from one data file, ``docs/data/model_zoo.json``.

    python .dev_scripts/model_zoo_figure.py count     # UniNet's FLOPs with the project's counter
    python .dev_scripts/model_zoo_figure.py measure   # latency of every model on this machine
    python .dev_scripts/model_zoo_figure.py plot      # docs/figures/accuracy_vs_{flops,latency}.png

The data file holds each model's published top-1 and FLOPs with their sources; ``count``
replaces UniNet's FLOPs with the project's own counts, ``measure`` adds latencies and the
machine they were measured on (forward, batch 1, fp32, one thread, the process's CPU time, the
median of interleaved rounds: robust to other jobs on the machine).
"""
import argparse
import json
import logging
import platform
import statistics
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / 'docs' / 'data' / 'model_zoo.json'
FIGURES = REPO / 'docs' / 'figures'
logger = logging.getLogger('model_zoo_figure')


class UniNetClassifier(nn.Module):
    """(B, 3, H, W) -> (B, 1000): the backbone with its head conv, pooling, a linear layer."""

    def __init__(self, arch: str):
        super().__init__()
        from uninet_mm import UniNet
        self.backbone = UniNet(arch, out_indices=(6, ), with_head_conv=True)
        self.fc = nn.Linear(1280, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.backbone(x)[0].mean((2, 3)))


def build(entry: Dict) -> nn.Module:
    """The model of a data-file entry, randomly initialised (weights do not change speed)."""
    family, name = entry['family'], entry['name']
    if family == 'UniNet':
        return UniNetClassifier(name.split('-')[1].lower())
    if family in ('EfficientNet', 'Swin'):
        import torchvision.models as tv
        return getattr(tv, entry['torchvision'])()
    if family == 'DeiT':
        from mmpretrain.models import VisionTransformer
        return nn.Sequential(VisionTransformer(arch=entry['mmpretrain_arch'],
                                               img_size=entry['input']))
    raise ValueError(f'no builder for {family} {name}')


def load(path: Path = DATA) -> Dict:
    data = json.loads(path.read_text())
    for entry in data['models']:
        missing = {'family', 'name', 'input', 'top1', 'top1_source', 'gmacs',
                   'gmacs_source'} - set(entry)
        if missing:
            raise ValueError(f'{path}: {entry.get("name")} lacks {sorted(missing)}')
    return data


def count(data: Dict) -> None:
    """UniNet's FLOPs (multiply-adds, batch 1, at its input size) with the project's counter."""
    from uninet_mm.utils.flops import model_complexity
    for entry in data['models']:
        if entry['family'] == 'UniNet':
            model = build(entry).eval()
            x = torch.randn(1, 3, entry['input'], entry['input'])
            entry['gmacs'] = round(model_complexity(model, x)['flops'] / 1e9, 3)
            entry['gmacs_source'] = 'counted by uninet_mm.utils.flops (attention included)'
            logger.info('%s: %.3f GMACs', entry['name'], entry['gmacs'])


def measure(data: Dict, repeats: int, names: Optional[List[str]] = None) -> None:
    """Forward latency (ms) of every model at batch 1 and its own input size."""
    from uninet_mm.benchmark.measure import environment, make_step, time_interleaved, warm_up
    torch.set_num_threads(1)
    entries = [e for e in data['models'] if names is None or e['name'] in names]
    steps = {}
    for entry in entries:
        x = torch.randn(1, 3, entry['input'], entry['input'])
        steps[entry['name']] = make_step(build(entry), x, 'fwd')
    warm_up(steps, 1)
    times = time_interleaved(steps, repeats, timer='cpu')
    for entry in entries:
        entry['latency_ms'] = round(statistics.median(times[entry['name']]), 1)
    env = environment()
    data['latency'] = dict(machine=f'{env["cpu"]} ({env["cpu_capability"]})',
                           torch=env['torch'], python=platform.python_version(),
                           setting=f'forward, batch 1, fp32, 1 thread, CPU time, median of '
                                   f'{repeats} interleaved rounds')


def plot(data: Dict, out_dir: Path = FIGURES) -> List[Path]:
    """One picture per x axis (FLOPs; latency where measured): a line per family."""
    import matplotlib
    matplotlib.use('Agg', force=True)
    import matplotlib.pyplot as plt

    written = []
    axes = [('gmacs', 'FLOPs (G multiply-adds)', 'accuracy_vs_flops.png')]
    if any('latency_ms' in e for e in data['models']):
        axes.append(('latency_ms', f'latency (ms): {data["latency"]["machine"]}, '
                                   f'{data["latency"]["setting"]}', 'accuracy_vs_latency.png'))
    families = list(dict.fromkeys(e['family'] for e in data['models']))
    for key, label, name in axes:
        fig, ax = plt.subplots(figsize=(8, 5.5))
        for family in families:
            points = sorted((e[key], e['top1'], e['name']) for e in data['models']
                            if e['family'] == family and key in e)
            bold = family == 'UniNet'
            ax.plot([p[0] for p in points], [p[1] for p in points], marker='o',
                    linewidth=2.5 if bold else 1.2, color='tab:red' if bold else None,
                    label=family)
            for x, y, text in points:
                ax.annotate(text.split('-')[-1], (x, y), textcoords='offset points',
                            xytext=(4, -10), fontsize=7)
        ax.set_xscale('log')
        ax.set_xlabel(label, fontsize=8)
        ax.set_ylabel('ImageNet-1K top-1 (%), as published')
        ax.grid(True, alpha=0.3, which='both')
        ax.legend()
        fig.tight_layout()
        out_dir.mkdir(parents=True, exist_ok=True)
        fig.savefig(out_dir / name, dpi=100)
        plt.close(fig)
        written.append(out_dir / name)
    return written


def main(argv: Optional[List[str]] = None) -> None:
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('command', choices=['count', 'measure', 'plot'])
    parser.add_argument('--data', type=Path, default=DATA)
    parser.add_argument('--out-dir', type=Path, default=FIGURES)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--only', nargs='+', default=None, help='measure these models only')
    args = parser.parse_args(argv)
    data = load(args.data)
    if args.command == 'plot':
        for path in plot(data, args.out_dir):
            logger.info('wrote %s', path)
        return
    count(data) if args.command == 'count' else measure(data, args.repeats, args.only)
    args.data.write_text(json.dumps(data, indent=1) + '\n')
    logger.info('updated %s', args.data)


if __name__ == '__main__':
    main()
