"""The embedded backend: trials one after another in this process."""
from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from mmengine.logging import MMLogger

from .driver import SearchDriver
from .records import record_trial, write_log

#: ``trial_fn(tokens, index) -> result``; the result holds ``accuracy`` (fraction in [0, 1]),
#: ``flops``, ``params`` and optionally ``seconds``, ``status`` ('ok' / 'failed'), ``error``.
TrialFn = Callable[[List[int], int], Dict[str, Any]]


def run_trial_safely(trial_fn: TrialFn, tokens: List[int], index: int) -> Dict[str, Any]:
    """Run one trial; an exception becomes a failed result (KeyboardInterrupt and other
    BaseExceptions still stop the search, which then resumes from its checkpoint).

    Kept although the built-in proxy trial never raises (``run_proxy_trial`` returns its own
    failures as results): ``run_search(trial_fn=...)`` takes user trial functions, and one
    raising on one architecture must fail that trial, not end a search of hundreds.
    """
    start = time.perf_counter()
    try:
        result = dict(trial_fn(tokens, index))
    except Exception as exc:  # noqa: BLE001 -- any trial error is recorded, the search goes on
        result = dict(status='failed', error=f'{type(exc).__name__}: {exc}',
                      traceback=traceback.format_exc(limit=5))
    result.setdefault('seconds', time.perf_counter() - start)
    return result


def run_embedded(driver: SearchDriver, trial_fn: TrialFn, work_dir: str,
                 logger: Optional[MMLogger] = None) -> SearchDriver:
    """Score architectures one after another in this process until ``driver.finished``.

    Checkpoints after every scored trial, then appends the trial's line to the log; on a
    resumed driver the log is first rewritten from the checkpoint's history, so a line
    written after the last checkpoint (a kill between the two writes) is not duplicated.
    """
    logger = logger or MMLogger.get_current_instance()
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    driver.release_assignments()
    write_log(work_dir, driver.history)
    if driver.history:
        logger.info(f'resuming: {len(driver.history)} trials scored, '
                    f'{len(driver.pending_indices())} proposed and waiting '
                    f'{driver.pending_indices()}, {len(driver.updates)} {driver.searcher} '
                    f'statistics entries')
    while not driver.finished:
        proposal = driver.propose()
        if proposal is None:
            raise RuntimeError('search driver has nothing to propose before it is finished '
                               '(bug)')
        reason = driver.infeasible_reason(proposal['tokens'])
        if reason is not None:  # not trained: it cannot run where its latency counts
            result = dict(status='failed', error=reason, seconds=0.0)
        else:
            result = run_trial_safely(trial_fn, proposal['tokens'], proposal['index'])
        record = driver.complete(proposal['index'], result)
        record_trial(work_dir, driver, record, logger)
    return driver
