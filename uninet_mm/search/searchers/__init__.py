"""The searchers a :class:`~uninet_mm.search.driver.SearchDriver` can delegate to: ``ppo``
(the paper's LSTM controller trained with PPO, the default), ``random``, ``evolution``
(regularized evolution) and ``nsga2`` (optuna's NSGA-II over accuracy and cost). See
:mod:`.base` for the interface."""
from __future__ import annotations

import importlib
from typing import Any, Dict, Mapping, Tuple, Type, Union

from .base import Searcher, SearcherError

#: Searcher name -> (module, class); modules are imported on use (nsga2 needs optuna).
SEARCHERS: Dict[str, Tuple[str, str]] = {
    'ppo': ('ppo_controller', 'PPOSearcher'),
    'random': ('random_search', 'RandomSearcher'),
    'evolution': ('evolution', 'EvolutionSearcher'),
    'nsga2': ('nsga2', 'NSGA2Searcher'),
}
DEFAULT_SEARCHER = 'ppo'


def searcher_class(name: str) -> Type[Searcher]:
    """The class of searcher ``name``; an unknown name raises :class:`SearcherError`."""
    if name not in SEARCHERS:
        raise SearcherError(f'unknown searcher {name!r}; choose one of {list(SEARCHERS)}')
    module, cls = SEARCHERS[name]
    return getattr(importlib.import_module(f'{__name__}.{module}'), cls)


def split_searcher(searcher: Union[str, Mapping[str, Any], None]) -> Tuple[str, Dict[str, Any]]:
    """``'name'`` or ``dict(type='name', **settings)`` -> ``(name, settings)``."""
    if searcher is None:
        return DEFAULT_SEARCHER, {}
    if isinstance(searcher, str):
        return searcher, {}
    if not isinstance(searcher, Mapping):
        raise SearcherError(f'searcher must be a name or dict(type=NAME, ...settings), got '
                            f'{searcher!r}')
    settings = dict(searcher)
    name = settings.pop('type', DEFAULT_SEARCHER)
    if not isinstance(name, str):
        raise SearcherError(f'searcher type = {name!r} must be one of {list(SEARCHERS)}')
    return name, settings


__all__ = ['Searcher', 'SearcherError', 'SEARCHERS', 'DEFAULT_SEARCHER', 'searcher_class',
           'split_searcher']
