"""Plain Python data from configs and states."""
from typing import Any, Mapping


def to_plain(value: Any) -> Any:
    """Mappings (mmengine ``ConfigDict`` too) -> dicts, lists and tuples -> lists, recursively:
    data that pickles, saves as JSON and compares equal to itself after a save and a load."""
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value
