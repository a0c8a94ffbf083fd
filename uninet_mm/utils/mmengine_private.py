"""Every use of a private mmengine attribute in this package, in one place, each with the reason
no public API serves (mmengine 0.10.7). The search's proxy trials need both: thousands of short
``Runner`` lives in one process.

* :class:`QuietRunner` overrides ``Runner._log_env``: a Runner always collects and logs the
  system environment when it is built (``collect_env``: compiler and CUDA probes, about 4 s
  in a fresh process on a 2-core CPU) and has no option to skip it; the search logs the
  environment once instead of once per trial.
* :func:`forget_instances` removes one experiment's entries from the ``_instance_dict`` of
  mmengine's ``ManagerMixin`` classes (logger, message hub, visualizer, default scope):
  ``ManagerMixin`` can create and look up instances but not drop them, so without this every
  trial would keep its logger (an open log file), message hub and visualizer alive.
* :func:`history_buffer_statistics` reads ``HistoryBuffer._statistics_methods``: resume
  checkpoints name these methods, and ``HistoryBuffer.register_statistics`` can add to the
  registry but nothing public lists it (see :mod:`uninet_mm.utils.resume_safe_load`).
"""
from typing import List

from mmengine.runner import Runner

__all__ = ['QuietRunner', 'forget_instances', 'history_buffer_statistics']


class QuietRunner(Runner):
    """A Runner that skips the system environment dump (see the module docstring)."""

    def _log_env(self, env_cfg: dict) -> None:
        pass


def forget_instances(name: str) -> None:
    """Close and forget the logger, message hub, visualizer and default scope instances named
    ``name`` (a runner's ``experiment_name``)."""
    from mmengine.logging import MessageHub, MMLogger
    from mmengine.registry import DefaultScope
    from mmengine.visualization import Visualizer

    logger = MMLogger._instance_dict.pop(name, None)
    if logger is not None:
        for handler in list(logger.handlers):
            handler.close()
            logger.removeHandler(handler)
    for cls in (MessageHub, Visualizer, DefaultScope):
        cls._instance_dict.pop(name, None)


def history_buffer_statistics() -> List[str]:
    """Names of the statistics methods registered on mmengine's ``HistoryBuffer``."""
    from mmengine.logging import HistoryBuffer
    return list(HistoryBuffer._statistics_methods)
