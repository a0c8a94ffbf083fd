"""Side-by-side speed and memory measurement of backbones (UniNet variants and their peers),
the measuring code behind ``tools/analysis_tools/benchmark_backbone.py``.

* :mod:`.models`: which backbones and speed variants can be measured, and how each is built.
* :mod:`.measure`: one step (inference forward or training forward+backward), interleaved
  latency rounds, peak memory (process RSS on CPU, the allocator's peak on CUDA), FLOP
  counts and the device's peak FLOP/s.
* :mod:`.worker`: one measurement in a fresh interpreter (``python -m
  uninet_mm.benchmark.worker``), so that memory readings and allocator state of one model do
  not leak into another's.
* :mod:`.report`: shares of peak FLOP/s, ratios and the printed table.
* :mod:`.training`: training iterations of a whole config (the quickstart's) per speed
  variant, for ``tools/analysis_tools/benchmark_training.py``.
"""
from .measure import make_step, peak_rss_during, time_interleaved, warm_up
from .models import ALL_MODELS, VARIANTS, build_model, model_keys
from .report import add_peak_shares, format_table

__all__ = ['ALL_MODELS', 'VARIANTS', 'build_model', 'model_keys', 'make_step',
           'peak_rss_during', 'time_interleaved', 'warm_up', 'add_peak_shares', 'format_table']
