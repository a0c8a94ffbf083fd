"""One benchmark measurement in a fresh interpreter.

``python -m uninet_mm.benchmark.worker SPEC_JSON`` runs the measurement that ``SPEC_JSON``
describes and prints ``RESULT <json>``; :func:`spawn` does this from the benchmark tool. A
fresh process per measurement keeps one model's heap, allocator caches and compiled kernels
out of the next one's memory reading, and lets a model that runs out of memory fail alone.
"""
import json
import logging
import os
import subprocess
import sys
from typing import Any, Dict, Mapping, Optional

import torch

from .measure import measure_latency, measure_macs, measure_memory

logger = logging.getLogger(__name__)
KINDS = ('latency', 'memory', 'macs')
RESULT_PREFIX = 'RESULT '


def run(spec: Mapping[str, Any]) -> Dict:
    """Run the measurement ``spec`` in this process (see :func:`spawn` for its keys)."""
    torch.set_num_threads(spec['threads'])
    size = tuple(spec['size'])
    if spec['kind'] == 'latency':
        return measure_latency(spec['keys'], size, spec['device'], spec['mode'],
                               spec['repeats'], spec['warmup'], spec['batch'],
                               spec.get('timer', 'wall'), spec.get('amp'))
    if spec['kind'] == 'memory':
        return measure_memory(spec['keys'][0], size, spec['mode'], spec['batch'])
    if spec['kind'] == 'macs':
        return measure_macs(spec['keys'][0], size, spec['batch'])
    raise ValueError(f'unknown measurement {spec["kind"]!r}; choose one of {KINDS}')


def spawn(spec: Mapping[str, Any], env: Optional[Mapping[str, str]] = None
          ) -> Optional[Dict]:
    """Run ``spec`` in a fresh interpreter; None (logged) if it fails, e.g. out of memory.

    ``spec``: ``kind`` (one of :data:`KINDS`), ``keys`` (model variants), ``size`` (H, W),
    ``batch``, ``threads``, and for latency ``device``, ``mode``, ``repeats``, ``warmup``,
    ``timer``, ``amp``; for memory ``mode``. ``env`` is added to this process's environment.
    """
    proc = subprocess.run([sys.executable, '-m', __name__, json.dumps(dict(spec))],
                          capture_output=True, text=True, env=dict(os.environ, **(env or {})))
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    logger.error('%s measurement of %s at %s failed (exit %d):\n%s', spec['kind'],
                 spec['keys'], spec['size'], proc.returncode, proc.stderr[-3000:])
    return None


if __name__ == '__main__':
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    sys.stdout.write(RESULT_PREFIX + json.dumps(run(json.loads(sys.argv[1]))) + '\n')
