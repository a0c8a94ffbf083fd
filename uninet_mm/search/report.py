"""What a search leaves behind: the top architectures, ready configs for them and pictures.

* ``top5.json`` (``top{k}.json``): the best distinct architectures by reward, with their log
  records and the paths of their configs.
* ``configs/top{rank}_uninet_in1k.py``: full ImageNet-1K training of the architecture with the
  project's DeiT recipe (inherits ``configs/_base_/uninet_in1k.py``) at 224 px.
* ``configs/top{rank}_mask_rcnn_1x_coco.py``: Mask R-CNN + FPN 1x on COCO with it as the
  backbone (inherits ``mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py`` and the project's
  detection pieces), FPN ``in_channels`` = the channels of stages 1, 2, 4, 5. Architectures
  with MLP stages get a fixed 800x1344 input (token mixing has weights per position), and
  none at all when those MLPs would exceed :data:`MAX_DET_MLP_PARAMS` at that size.
* ``pareto.json``: the successful trials no other beats on both objectives, accuracy (higher)
  and the reward's cost (lower: FLOPs, or the predicted latency with the latency cost), sorted
  by cost; the same for every searcher (NSGA-II's result is this front).
* ``search.png``: reward per trial with the mean reward of every PPO update (other
  searchers: of every window of results), and accuracy vs FLOPs with the Pareto front (highest accuracy for at most that many FLOPs); when the log
  has latencies (a latency table in the reward), a third panel: accuracy vs latency with
  its Pareto front.

Generated configs name the project's base configs by absolute path (they live in the work
dir, not in ``configs/``), so they load from anywhere on this machine.
"""
from __future__ import annotations

import json
import pprint
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..utils.package_data import configs_dir

#: Stages whose outputs a detector takes (strides 4, 8, 16, 32), as in configs/_base_/uninet_det.py.
DET_OUT_INDICES = (1, 2, 4, 5)
#: Fixed detector input (H, W) for architectures with MLP stages, whose token mixing has
#: weights per token position: 800 x 1344 is mmdet's 1333 x 800 rounded to multiples of 32.
MLP_DET_INPUT = (800, 1344)
#: Largest token-mixing MLP (parameters, all MLP blocks together) a generated detector may get.
#: An MLP block mixes N tokens with two N x N layers, so an MLP stage at stride 8 of an
#: 800 x 1344 image (N = 16,800) alone needs 564M parameters per block: no detection config is
#: written for such an architecture (top5.json says why).
MAX_DET_MLP_PARAMS = 100_000_000
#: Input size of the generated ImageNet configs (that of configs/_base_/uninet_in1k.py).
CLS_INPUT = (224, 224)


def top_records(history: Sequence[Dict[str, Any]], k: int) -> List[Dict[str, Any]]:
    """The ``k`` best successful trials by reward, one per distinct architecture."""
    best: Dict[str, Dict[str, Any]] = {}
    for record in history:
        if record.get('status') != 'ok' or record.get('reward') is None:
            continue
        key = json.dumps(record['arch'], sort_keys=True)
        if key not in best or record['reward'] > best[key]['reward']:
            best[key] = record
    return sorted(best.values(), key=lambda r: (-r['reward'], r['trial']))[:k]


def pareto_front(points: Sequence[Tuple[float, float]]) -> List[Tuple[float, float]]:
    """Points (flops, accuracy) that no other point beats with fewer or equal FLOPs and higher
    accuracy, sorted by FLOPs."""
    front: List[Tuple[float, float]] = []
    for flops, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or acc > front[-1][1]:
            front.append((flops, acc))
    return front


def record_cost(record: Dict[str, Any]) -> Optional[float]:
    """The record's cost in the reward's unit: predicted ms (latency cost) or FLOPs."""
    return record.get('latency_ms') if record.get('cost') == 'latency' else record.get('flops')


def pareto_records(history: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Successful records on the (accuracy up, cost down) Pareto front, sorted by cost: each
    has a higher accuracy than every record with at most its cost (the first of equals)."""
    ok = [r for r in history if r.get('status') == 'ok' and r.get('accuracy') is not None
          and record_cost(r) is not None]
    front: List[Dict[str, Any]] = []
    for record in sorted(ok, key=lambda r: (record_cost(r), -r['accuracy'], r['trial'])):
        if not front or record['accuracy'] > front[-1]['accuracy']:
            front.append(record)
    return front


def write_pareto(history: Sequence[Dict[str, Any]], work_dir: str) -> List[Dict[str, Any]]:
    """Write ``pareto.json`` (see the module docstring); returns its entries."""
    keys = ('trial', 'accuracy', 'flops', 'latency_ms', 'cost', 'reward', 'params', 'tokens',
            'arch', 'searcher')
    entries = [{k: r.get(k) for k in keys} for r in pareto_records(history)]
    (Path(work_dir) / 'pareto.json').write_text(json.dumps(entries, indent=2))
    return entries


def _header(record: Dict[str, Any], rank: int, work_dir: Path) -> str:
    size = 'x'.join(str(s) for s in record['input_size'])
    unit = 'ms' if record.get('cost') == 'latency' else 'FLOPs'
    text = (f'# Architecture {rank} of the UniNet search in {work_dir}: trial {record["trial"]}, '
            f'proxy top-1 {record["accuracy"]:.4f},\n# {record["flops"] / 1e6:.2f}M FLOPs and '
            f'{record["params"] / 1e6:.3f}M params at {size} (proxy), reward '
            f'{record["reward"]:.4f} (t={record["t"]:g} {unit}, alpha={record["alpha"]}).\n')
    if record.get('latency_ms') is not None:
        table = record.get('latency_table') or {}
        h, w = table.get('input_size', ('?', '?'))
        text += (f'# Predicted latency {record["latency_ms"]:.2f} ms: backbone at {h}x{w}, batch '
                 f'{table.get("batch")}, {table.get("dtype")}, {table.get("mode")}, on '
                 f'{table.get("device")} ({table.get("device_name")}), table '
                 f'{table.get("path")} (sha256 {table.get("sha256")}).\n')
    return text


def _has_mlp(arch: Dict[str, Any]) -> bool:
    return any(stage['gop'] == 'MLP' for stage in arch['stages'])


def det_mlp_params(arch: Dict[str, Any], size: Tuple[int, int] = MLP_DET_INPUT) -> int:
    """Parameters of the token-mixing MLPs of ``arch`` built for an HxW input."""
    from ..models.arch_settings import parse_arch

    spec = parse_arch(arch)
    total = 0
    for stage, stride in zip(spec.stages, spec.stage_strides):
        if stage.gop == 'MLP':
            tokens = -(-size[0] // stride) * -(-size[1] // stride)
            total += stage.repeats * 2 * (tokens * tokens + tokens)
    return total


def cls_config_text(record: Dict[str, Any], rank: int, work_dir: Path, configs: Path) -> str:
    arch = record['arch']
    return (_header(record, rank, work_dir)
            + '# Full ImageNet-1K training with the project\'s DeiT recipe at 224 px.\n'
            + f"_base_ = ['{configs / '_base_' / 'uninet_in1k.py'}']\n\n"
            + f'searched_arch = {pprint.pformat(arch, indent=4, sort_dicts=False)}\n\n'
            + 'model = dict(\n'
            + '    # _delete_: the base config names its arch (a string); this one is a dict.\n'
            + f'    backbone=dict(arch=dict(searched_arch, _delete_=True), '
            f'input_size={CLS_INPUT}),\n'
            + f"    head=dict(in_channels={arch['head_channels']}))\n")


def det_config_text(record: Dict[str, Any], rank: int, work_dir: Path, configs: Path) -> str:
    arch = record['arch']
    in_channels = [arch['stages'][i]['channels'] for i in DET_OUT_INDICES]
    text = (_header(record, rank, work_dir)
            + '# Mask R-CNN + FPN, 1x schedule on COCO, with this architecture as the backbone\n'
            + '# (trained from scratch unless init_cfg points at its ImageNet checkpoint).\n'
            + "_base_ = [\n    'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',\n"
            + f"    '{configs / '_base_' / 'uninet_adamw.py'}',\n"
            + f"    '{configs / '_base_' / 'uninet_det.py'}',\n]\n\n"
            + f'searched_arch = {pprint.pformat(arch, indent=4, sort_dicts=False)}\n\n')
    if _has_mlp(arch):
        height, width = MLP_DET_INPUT
        text += ('# MLP stages mix a fixed number of tokens: every image is resized to '
                 f'{width}x{height}\n# (aspect ratio not kept) and the backbone built for '
                 'that size.\n'
                 f'backbone_input_size = {MLP_DET_INPUT}\n'
                 'train_pipeline = [\n'
                 f"    dict(t, scale=({width}, {height}), keep_ratio=False) "
                 "if t['type'] == 'Resize' else t\n"
                 '    for t in _base_.train_pipeline\n]\n'
                 'test_pipeline = [\n'
                 f"    dict(t, scale=({width}, {height}), keep_ratio=False) "
                 "if t['type'] == 'Resize' else t\n"
                 '    for t in _base_.test_pipeline\n]\n'
                 'train_dataloader = dict(dataset=dict(pipeline=train_pipeline))\n'
                 'val_dataloader = dict(dataset=dict(pipeline=test_pipeline))\n'
                 'test_dataloader = val_dataloader\n\n')
        backbone_extra = ', input_size=backbone_input_size'
    else:
        backbone_extra = ''
    text += ('model = dict(\n'
             f'    backbone=dict(_base_.uninet_det_backbone, arch=searched_arch'
             f'{backbone_extra}),\n'
             f'    neck=dict(in_channels={in_channels}))\n\n'
             'optim_wrapper = _base_.uninet_det_optim_wrapper\n'
             'param_scheduler = _base_.uninet_param_scheduler_1x\n'
             'train_cfg = dict(max_epochs=12)\n'
             'auto_scale_lr = dict(enable=True, base_batch_size=16)\n')
    return text


def write_top(history: Sequence[Dict[str, Any]], work_dir: str, k: int = 5
              ) -> List[Dict[str, Any]]:
    """Write ``top{k}.json`` and the two configs of every top architecture; returns the
    entries of the json file."""
    work_dir = Path(work_dir)
    configs, out = configs_dir(), work_dir / 'configs'
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for rank, record in enumerate(top_records(history, k), start=1):
        cls_path = out / f'top{rank}_uninet_in1k.py'
        det_path = out / f'top{rank}_mask_rcnn_1x_coco.py'
        cls_path.write_text(cls_config_text(record, rank, work_dir, configs))
        entry = dict(rank=rank, **record, cls_config=str(cls_path), det_config=None)
        mlp_params = det_mlp_params(record['arch'])
        if mlp_params <= MAX_DET_MLP_PARAMS:
            det_path.write_text(det_config_text(record, rank, work_dir, configs))
            entry['det_config'] = str(det_path)
        else:
            entry['det_config_skipped'] = (
                f'MLP stages would need {mlp_params / 1e6:.0f}M token-mixing parameters at '
                f'{MLP_DET_INPUT[1]}x{MLP_DET_INPUT[0]} (limit {MAX_DET_MLP_PARAMS / 1e6:.0f}M)')
        entries.append(entry)
    (work_dir / f'top{k}.json').write_text(json.dumps(entries, indent=2))
    return entries


def update_curve(updates: Sequence[Dict[str, Any]]) -> List[float]:
    """Mean reward of the architectures of every PPO update (other searchers: of every
    statistics window), in order."""
    return [float(u['mean_reward']) for u in updates]


def plot_search(history: Sequence[Dict[str, Any]], updates: Sequence[Dict[str, Any]],
                path: str, top: Optional[Sequence[Dict[str, Any]]] = None) -> None:
    """Reward vs trial (with each update's mean), accuracy vs FLOPs with the Pareto front and,
    when the log has latencies, accuracy vs latency with its Pareto front."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    ok = [r for r in history if r.get('status') == 'ok']
    failed = [r for r in history if r.get('status') != 'ok']
    timed = [r for r in ok if r.get('latency_ms') is not None]
    cost = history[0].get('cost', 'flops') if history else 'flops'
    fig, axes = plt.subplots(1, 3 if timed else 2, figsize=(18 if timed else 12, 4.5))
    ax_r, ax_a = axes[0], axes[1]
    ax_r.scatter([r['trial'] for r in ok], [r['reward'] for r in ok], s=10, alpha=0.5,
                 label='trial')
    if failed:
        ax_r.scatter([r['trial'] for r in failed],
                     [r['reward'] if r['reward'] is not None else 0.0 for r in failed],
                     s=18, marker='x', color='red', label='failed trial')
    if updates:
        mids = [(u['first_trial'] + u['last_trial']) / 2 for u in updates]
        searcher = updates[0].get('searcher', 'ppo')
        ax_r.plot(mids, update_curve(updates), 'o-', color='black',
                  label='mean reward of a PPO update' if searcher == 'ppo'
                  else f'mean reward of a window ({searcher})')
    ax_r.set_xlabel('trial')
    ax_r.set_ylabel('reward  a * (t / f) ^ alpha' + ('  (f: latency)' if cost == 'latency'
                                                     else '  (f: FLOPs)'))
    ax_r.set_title('reward vs trial')
    ax_r.legend(loc='lower right', fontsize=8)

    points = [(r['flops'] / 1e6, r['accuracy']) for r in ok]
    if points:
        ax_a.scatter(*zip(*points), s=10, alpha=0.5, label='trial')
        front = pareto_front(points)
        ax_a.step(*zip(*front), where='post', color='black', label='Pareto front')
    if top:
        ax_a.scatter([r['flops'] / 1e6 for r in top], [r['accuracy'] for r in top], s=60,
                     facecolors='none', edgecolors='red', label=f'top {len(top)} by reward')
    if history and cost == 'flops':
        ax_a.axvline(history[0]['t'] / 1e6, linestyle='--', color='gray', label='target t')
    ax_a.set_xlabel('FLOPs (M multiply-adds at the proxy input size)')
    ax_a.set_ylabel('proxy top-1 accuracy')
    ax_a.set_title('accuracy vs FLOPs')
    ax_a.legend(loc='lower right', fontsize=8)
    if timed:
        _plot_latency(axes[2], timed, top, history[0]['t'] if cost == 'latency' else None)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_latency(ax, timed: Sequence[Dict[str, Any]], top: Optional[Sequence[Dict[str, Any]]],
                  target_ms: Optional[float]) -> None:
    points = [(r['latency_ms'], r['accuracy']) for r in timed]
    ax.scatter(*zip(*points), s=10, alpha=0.5, label='trial')
    ax.step(*zip(*pareto_front(points)), where='post', color='black', label='Pareto front')
    top = [r for r in (top or []) if r.get('latency_ms') is not None]
    if top:
        ax.scatter([r['latency_ms'] for r in top], [r['accuracy'] for r in top], s=60,
                   facecolors='none', edgecolors='red', label=f'top {len(top)} by reward')
    if target_ms is not None:
        ax.axvline(target_ms, linestyle='--', color='gray', label='target t')
    table = timed[0].get('latency_table') or {}
    size = 'x'.join(str(s) for s in table.get('input_size', ()))
    ax.set_xlabel(f'predicted latency (ms; backbone at {size}, {table.get("device")}, '
                  f'{table.get("dtype")}, {table.get("mode")})')
    ax.set_ylabel('proxy top-1 accuracy')
    ax.set_title('accuracy vs latency')
    ax.legend(loc='lower right', fontsize=8)


def write_outputs(history: Sequence[Dict[str, Any]], updates: Sequence[Dict[str, Any]],
                  work_dir: str, k: int = 5) -> Dict[str, Any]:
    """top{k}.json, pareto.json, the configs and search.png; returns the top entries and the
    paths."""
    top = write_top(history, work_dir, k)
    write_pareto(history, work_dir)
    picture = str(Path(work_dir) / 'search.png')
    plot_search(history, updates, picture, top)
    return dict(top=top, picture=picture, top_json=str(Path(work_dir) / f'top{k}.json'),
                pareto_json=str(Path(work_dir) / 'pareto.json'))
