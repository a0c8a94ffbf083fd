"""Loss curves from mmengine's json scalar logs, drawn with matplotlib (Agg backend)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

PathLike = Union[str, os.PathLike]


def find_scalar_log(src: PathLike) -> Path:
    """The scalars json of a work dir (newest run) or ``src`` itself if it is a file.

    mmengine writes ``WORK_DIR/<timestamp>/vis_data/scalars.json`` (LocalVisBackend) and
    ``WORK_DIR/<timestamp>/vis_data/<timestamp>.json`` (LoggerHook); either is accepted.
    """
    src = Path(src)
    if src.is_file():
        return src
    if not src.is_dir():
        raise FileNotFoundError(f'{src} is neither a json log nor a folder')
    candidates = list(src.glob('vis_data/scalars.json')) + list(src.glob('*/vis_data/scalars.json'))
    if not candidates:
        candidates = [p for p in list(src.glob('*/vis_data/*.json')) + list(src.glob('*/*.json'))
                      if p.stem[:8].isdigit()]
    if not candidates:
        raise FileNotFoundError(f'no mmengine scalar log (vis_data/scalars.json) under {src}')
    return max(candidates, key=lambda p: (p.stat().st_mtime, str(p)))


def load_scalars(src: PathLike) -> Tuple[List[dict], List[dict]]:
    """Read a json-lines scalar log; returns ``(train_records, val_records)``.

    Training records are the lines that carry a loss key (``loss*``, ``decode.loss_ce``); every
    other line (e.g. with ``coco/bbox_mAP`` or ``mIoU``) is a validation record.
    """
    path = find_scalar_log(src)
    train, val = [], []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        if any(is_loss_key(k) for k in record):
            train.append(record)
        else:
            val.append(record)
    return train, val


def is_loss_key(key: str) -> bool:
    """``loss``, ``loss_cls`` and prefixed keys such as ``decode.loss_ce`` (mmseg heads)."""
    return key.rsplit('.', 1)[-1].startswith('loss')


def _step(record: dict, fallback: int) -> int:
    for key in ('step', 'iter'):
        if isinstance(record.get(key), (int, float)):
            return int(record[key])
    return fallback


def _smooth(values: Sequence[float], window: int) -> List[float]:
    if window <= 1:
        return list(values)
    out, acc = [], []
    for v in values:
        acc.append(v)
        if len(acc) > window:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def loss_series(train_records: Sequence[dict],
                keys: Optional[Sequence[str]] = None) -> Dict[str, Tuple[List[int], List[float]]]:
    """``{key: (iterations, values)}`` for the loss keys (all loss keys by default)."""
    if keys is None:
        found: List[str] = []
        for record in train_records:
            found.extend(k for k in record if is_loss_key(k) and k not in found)
        keys = found
    series: Dict[str, Tuple[List[int], List[float]]] = {}
    for key in keys:
        xs, ys = [], []
        for i, record in enumerate(train_records):
            value = record.get(key)
            if isinstance(value, (int, float)):
                xs.append(_step(record, i + 1))
                ys.append(float(value))
        if xs:
            series[key] = (xs, ys)
    return series


def plot_loss_curve(src: PathLike, out_file: PathLike, keys: Optional[Sequence[str]] = None,
                    smooth: int = 1, title: Optional[str] = None,
                    with_metrics: bool = True) -> Path:
    """Plot loss vs iteration from an mmengine scalar log and save it as an image.

    Args:
        src: a work dir (the newest run in it is used) or a scalars json file.
        out_file: image to write (png, pdf, svg ... by extension).
        keys: loss keys to draw; default every loss key (``loss*``, ``decode.loss_ce`` ...),
            ``loss`` (the total) in bold.
        smooth: moving-average window in logged points (1 = none).
        title: figure title; default the log's path.
        with_metrics: add a second panel with validation metrics when the log has any.

    Returns:
        The path written.
    """
    import matplotlib
    matplotlib.use('Agg', force=True)
    import matplotlib.pyplot as plt

    path = find_scalar_log(src)
    train, val = load_scalars(path)
    series = loss_series(train, keys)
    if not series:
        raise ValueError(f'no loss values in {path}')
    metric_keys: List[str] = []
    if with_metrics:
        for record in val:
            for k, v in record.items():
                if (isinstance(v, (int, float)) and k not in ('step', 'epoch', 'iter')
                        and k not in metric_keys and ('mAP' in k or 'IoU' in k or 'Acc' in k
                                                      or 'accuracy' in k)):
                    metric_keys.append(k)
        # Keep the headline metrics readable: at most six.
        metric_keys = [k for k in metric_keys if not k.endswith(('_s', '_m', '_l'))][:6]
    ncols = 2 if metric_keys else 1
    fig, axes = plt.subplots(1, ncols, figsize=(7 * ncols, 4.5), squeeze=False)
    ax = axes[0, 0]
    for key, (xs, ys) in series.items():
        bold = key == 'loss'
        ax.plot(xs, _smooth(ys, smooth), label=key, linewidth=2.2 if bold else 1.0,
                color='black' if bold else None, alpha=1.0 if bold else 0.8)
    ax.set_xlabel('iteration')
    ax.set_ylabel('loss')
    ax.set_yscale('log' if all(min(ys) > 0 for _, ys in series.values()) else 'linear')
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or str(path), fontsize=9)
    if metric_keys:
        mx = axes[0, 1]
        points = {key: [(_step(r, i + 1), float(r[key])) for i, r in enumerate(val) if key in r]
                  for key in metric_keys}
        if all(len(p) == 1 for p in points.values()):
            # A single evaluation (e.g. after training): a bar per metric, value written on it.
            names = list(points)
            values = [points[k][0][1] for k in names]
            bars = mx.barh(range(len(names)), values, color='tab:blue', alpha=0.8)
            mx.set_yticks(range(len(names)), names, fontsize=8)
            mx.invert_yaxis()
            for bar, value in zip(bars, values):
                mx.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f' {value:.3g}',
                        va='center', fontsize=8)
            mx.set_xlim(0, max(max(values) * 1.25, 1e-3))
            mx.set_title('final evaluation', fontsize=9)
        else:
            for key, pts in points.items():
                mx.plot([p[0] for p in pts], [p[1] for p in pts], marker='o', label=key)
            mx.set_xlabel('validation step (epoch or iteration)')
            mx.set_ylabel('metric')
            mx.legend(fontsize=8)
            mx.set_title('validation', fontsize=9)
        mx.grid(True, alpha=0.3)
    fig.tight_layout()
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_file, dpi=110)
    plt.close(fig)
    return out_file


__all__ = ['find_scalar_log', 'is_loss_key', 'load_scalars', 'loss_series', 'plot_loss_curve']
