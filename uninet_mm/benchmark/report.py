"""Shares of peak FLOP/s, ratios between models and the benchmark's printed table.

Results are ``{(device, size, key): row}`` with ``row`` holding any of ``params``, ``macs``,
``fwd_ms``, ``train_ms``, ``infer_mib``, ``train_mib``, ``fwd_peak``, ``train_peak``.
"""
from typing import Dict, List, Optional, Tuple

from .models import LABELS, RATIOS, split_key

Results = Dict[Tuple[str, str, str], Dict]
FIELDS = (('fwd_ms', 'fwd ms'), ('train_ms', 'fwd+bwd ms'), ('infer_mib', 'infer MiB'),
          ('train_mib', 'train MiB'), ('fwd_peak', 'fwd %peak'), ('train_peak', 'trn %peak'))


def fmt(value: Optional[float], digits: int = 0) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def ratio(results: Results, device_size: Tuple[str, str], num: str, den: str,
          field: str) -> Optional[float]:
    """``field`` of row ``num`` over that of row ``den``; None if either is missing."""
    a = results.get(device_size + (num,), {}).get(field)
    b = results.get(device_size + (den,), {}).get(field)
    return None if a is None or b is None or b <= 0 else a / b


def add_peak_shares(results: Results, peaks: Dict[str, Optional[float]]) -> None:
    """``fwd_peak`` / ``train_peak``: % of the device's peak FLOP/s reached, counting 2 FLOPs
    per multiply-add and a training step as 3x the forward (backward ~ 2x forward)."""
    for (device, _, _), row in results.items():
        peak, macs = peaks.get(device), row.get('macs')
        if not peak or not macs:
            continue
        for mode, factor in (('fwd', 2), ('train', 6)):
            if row.get(f'{mode}_ms'):
                row[f'{mode}_peak'] = 100 * factor * macs / (row[f'{mode}_ms'] / 1e3) / peak


def format_table(results: Results, devices: List[str], sizes: List[str],
                 keys: List[str]) -> str:
    """One line per (device, size, model variant), then the ratios of :data:`RATIOS`."""
    lines = [f'{"device":6} {"size (HxW)":11} {"model":26} {"params M":>8} {"GMACs":>7} ' +
             ' '.join(f'{title:>10}' for _, title in FIELDS)]
    for device in devices:
        for size in sizes:
            for key in keys:
                row = results.get((device, size, key), {})
                name, variant = split_key(key)
                label = LABELS[name] + ('' if variant == 'plain' else f' {variant}')
                params, macs = row.get('params'), row.get('macs')
                lines.append(f'{device:6} {size:11} {label:26} '
                             f'{fmt(params and params / 1e6, 1):>8} '
                             f'{fmt(macs and macs / 1e9, 1):>7} ' +
                             ' '.join(f'{fmt(row.get(f), 1 if "peak" in f else 0):>10}'
                                      for f, _ in FIELDS))
    lines += ['', 'ratios (< 1: UniNet is faster / smaller)']
    for device in devices:
        for size in sizes:
            for num_name, den in RATIOS:
                if den not in keys:
                    continue
                for num in (k for k in keys if split_key(k)[0] == num_name):
                    values = ' '.join(
                        f'{title} {fmt(ratio(results, (device, size), num, den, f), 2)}'
                        for f, title in FIELDS[:4])
                    lines.append(f'{device:6} {size:11} {LABELS[num_name]} '
                                 f'{split_key(num)[1]:13} / {LABELS[den]}: {values}')
    return '\n'.join(lines)
