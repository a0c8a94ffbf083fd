"""The benchmark's measuring code (``uninet_mm.benchmark``): steps, interleaved timing, peak
memory, shares of peak and the table; the tool itself runs in one slow end-to-end test."""
import importlib.util
import logging
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from uninet_mm.benchmark import (add_peak_shares, build_model, format_table, make_step,
                                 model_keys, peak_rss_during, time_interleaved, warm_up)
from uninet_mm.benchmark.report import ratio
from uninet_mm.benchmark.worker import run, spawn

TOOL = Path(__file__).resolve().parents[1] / 'tools' / 'analysis_tools' / 'benchmark_backbone.py'


class _Counting(nn.Module):
    """Two maps out, counts forward and backward passes."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.forwards = self.backwards = 0
        self.conv.weight.register_hook(self._count_backward)

    def _count_backward(self, grad):
        self.backwards += 1
        return grad

    def forward(self, x):
        self.forwards += 1
        y = self.conv(x)
        return y, y[:, :, ::2, ::2]


def test_inference_step_runs_without_gradients():
    model = _Counting().train()
    step = make_step(model, torch.randn(1, 3, 8, 10), 'fwd')
    step()
    assert not model.training and model.forwards == 1 and model.backwards == 0
    assert model.conv.weight.grad is None


def test_training_step_runs_backward_and_clears_gradients():
    model = _Counting().eval()
    step = make_step(model, torch.randn(2, 3, 8, 10), 'train')
    step()
    step()
    assert model.training and model.forwards == 2 and model.backwards == 2
    assert model.conv.weight.grad is None  # zero_grad(set_to_none=True) after each step
    with pytest.raises(ValueError, match="'fwd' or 'train'"):
        make_step(model, torch.randn(1, 3, 8, 8), 'backward')


def test_rounds_are_interleaved_and_warm_up_is_untimed():
    calls = []
    steps = {'a': lambda: calls.append('a'), 'b': lambda: calls.append('b')}
    warm_up(steps, 2)
    assert calls == ['a', 'a', 'b', 'b']
    calls.clear()
    times = time_interleaved(steps, repeats=3)
    assert calls == ['a', 'b'] * 3
    assert {k: len(v) for k, v in times.items()} == {'a': 3, 'b': 3}
    with pytest.raises(ValueError, match='timer'):
        time_interleaved(steps, 1, timer='gpu')


def test_cpu_timer_counts_work_not_sleep():
    def busy():
        end = time.process_time() + 0.03
        while time.process_time() < end:
            pass

    times = time_interleaved({'sleep': lambda: time.sleep(0.05), 'busy': busy}, 2, timer='cpu')
    assert max(times['sleep']) < 10 < min(times['busy'])


def test_peak_rss_sees_a_short_lived_allocation():
    from uninet_mm.benchmark.measure import current_rss_bytes, release_free_heap

    def step():
        block = torch.ones(64 * 2**20)  # 256 MiB, touched
        block.add_(1)
        time.sleep(0.02)

    release_free_heap()
    base = current_rss_bytes()
    assert (peak_rss_during(step) - base) / 2**20 > 200


def test_peak_share_ratio_and_table():
    results = {('cpu', '64x64', 'uninet_b3'): dict(macs=1e9, fwd_ms=1000.0, train_ms=6000.0,
                                                   params=2e6),
               ('cpu', '64x64', 'swin_t'): dict(macs=1e9, fwd_ms=500.0)}
    add_peak_shares(results, dict(cpu=4e9))
    row = results['cpu', '64x64', 'uninet_b3']
    assert row['fwd_peak'] == pytest.approx(50.0)  # 2 FLOPs per MAC in 1 s of a 4 GFLOP/s peak
    assert row['train_peak'] == pytest.approx(25.0)  # a training step counts 3x the forward
    assert ratio(results, ('cpu', '64x64'), 'uninet_b3', 'swin_t', 'fwd_ms') == 2.0
    assert ratio(results, ('cpu', '64x64'), 'uninet_b3', 'swin_t', 'train_ms') is None
    table = format_table(results, ['cpu'], ['64x64'], ['uninet_b3', 'swin_t'])
    assert 'UniNet-B3 plain         / Swin-T: fwd ms 2.00 fwd+bwd ms -' in table


def test_model_keys_and_variants():
    keys = model_keys(['uninet_b1', 'swin_t'], ['plain', 'fused', 'sac'], 'train')
    assert keys == ['uninet_b1', 'uninet_b1:sac', 'swin_t']
    assert not any(isinstance(m, nn.BatchNorm2d) for m in build_model('uninet_b1', 'fused')
                   .modules())
    assert build_model('uninet_b1', 'sac').with_cp == 'selective'
    convs = [m for m in build_model('uninet_b1', 'channels_last').modules()
             if isinstance(m, nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last)
                         for m in convs)
    with pytest.raises(ValueError, match='plain'):
        build_model('swin_t', 'fused')
    with pytest.raises(ValueError, match='unknown model'):
        build_model('vit', 'plain')


def test_worker_measures_in_this_process_and_in_a_fresh_one(caplog):
    spec = dict(kind='macs', keys=['uninet_b1'], size=[32, 48], batch=1, threads=1)
    macs = run(spec)['macs']
    assert macs > 0
    assert spawn(spec) == dict(macs=macs)
    with caplog.at_level(logging.ERROR):
        assert spawn(dict(spec, kind='energy')) is None
    assert 'unknown measurement' in caplog.text


@pytest.mark.slow  # eight worker processes
def test_benchmark_tool_runs_uninet_variants(tmp_path):
    """The tool end to end, with one variant of each kind: plain (trains), fused (inference
    only), sac (trains, another memory profile); channels_last is built as in
    test_model_keys_and_variants and measured the same way as plain."""
    spec = importlib.util.spec_from_file_location('benchmark_backbone', TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules['benchmark_backbone'] = module
    spec.loader.exec_module(module)
    out = module.main(['--models', 'uninet_b1', '--variants', 'plain', 'fused', 'sac',
                       '--sizes', '64x96', '--device', 'cpu', '--batch', '1', '--repeats', '1',
                       '--warmup', '1', '--threads', '1',
                       '--json', str(tmp_path / 'bench.json')])
    rows = {row['variant']: row for row in out['results']}
    assert set(rows) == {'plain', 'fused', 'sac'}
    assert rows['plain']['fwd_ms'] > 0 and rows['plain']['train_ms'] > 0
    assert rows['plain']['train_mib'] > 0 and rows['plain']['macs'] > 0
    assert 0 < rows['plain']['fwd_peak'] < 100 and 0 < rows['sac']['train_peak'] < 100
    assert 'train_ms' not in rows['fused']  # an inference-only variant
    assert (tmp_path / 'bench.json').is_file()
