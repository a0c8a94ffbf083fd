"""The quickstart's summary picture: the loss curves that mmengine's ``LocalVisBackend``
logged (``vis_data/scalars.json``) beside the final evaluation metrics.

Curves alone come from mmengine's visualizer backends (TensorBoard, enabled in the shipped
configs) or from mmdet's ``analyze_logs.py plot_curve``; neither puts the final metrics on the
same picture, which is all this module adds.
"""
import json
import os
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple, Union

PathLike = Union[str, os.PathLike]
Curve = Tuple[List[int], List[float]]


def read_scalars(path: PathLike) -> List[dict]:
    """The records of a ``scalars.json`` written by ``LocalVisBackend`` (one json per line)."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def is_loss_key(key: str) -> bool:
    """``loss``, ``loss_cls`` and prefixed keys such as ``decode.loss_ce`` (mmseg heads)."""
    return key.rsplit('.', 1)[-1].startswith('loss')


def loss_curves(records: List[dict]) -> Dict[str, Curve]:
    """``{loss key: (steps, values)}`` for every loss key of the training records."""
    curves: Dict[str, Curve] = {}
    for record in records:
        for key, value in record.items():
            if is_loss_key(key) and isinstance(value, (int, float)):
                steps, values = curves.setdefault(key, ([], []))
                steps.append(int(record['step']))
                values.append(float(value))
    return curves


def plot_training_summary(scalars: PathLike, metrics: Mapping[str, float], out_file: PathLike,
                          title: Optional[str] = None) -> Path:
    """Loss curves (left; the total ``loss`` in bold) and one bar per final metric (right).

    Args:
        scalars: a ``vis_data/scalars.json`` of a training run.
        metrics: the final evaluation, e.g. ``{'coco/bbox_mAP': 0.59}``.
        out_file: the image to write (png, jpg, pdf, svg by extension).
        title: title of the loss panel; default the log's path.
    """
    import matplotlib
    matplotlib.use('Agg', force=True)
    import matplotlib.pyplot as plt

    curves = loss_curves(read_scalars(scalars))
    if not curves:
        raise ValueError(f'no loss values in {scalars}')
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(14, 4.5))
    for key, (steps, values) in curves.items():
        total = key == 'loss'
        loss_ax.plot(steps, values, label=key, linewidth=2.2 if total else 1.0,
                     color='black' if total else None, alpha=1.0 if total else 0.8)
    loss_ax.set(xlabel='iteration', ylabel='loss')
    loss_ax.set_yscale('log' if all(min(v) > 0 for _, v in curves.values()) else 'linear')
    loss_ax.grid(True, alpha=0.3)
    loss_ax.legend(fontsize=8)
    loss_ax.set_title(title or str(scalars), fontsize=9)

    names = list(metrics)
    values = [float(metrics[name]) for name in names]
    bars = metric_ax.barh(range(len(names)), values, color='tab:blue', alpha=0.8)
    metric_ax.set_yticks(range(len(names)), names, fontsize=8)
    metric_ax.invert_yaxis()
    for bar, value in zip(bars, values):
        metric_ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f' {value:.3g}',
                       va='center', fontsize=8)
    metric_ax.set_xlim(0, max(values + [1e-3]) * 1.25)
    metric_ax.set_title('final evaluation', fontsize=9)
    metric_ax.grid(True, alpha=0.3)

    fig.tight_layout()
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_file, dpi=110)
    plt.close(fig)
    return out_file


__all__ = ['read_scalars', 'is_loss_key', 'loss_curves', 'plot_training_summary']
