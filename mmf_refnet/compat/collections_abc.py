"""rc10 uses ``collections.Mapping`` (``mmf/utils/logger.py``); Python 3.10 removed
the ABC aliases from ``collections``, so the first progress log raises
AttributeError. Restore the aliases rc10 uses."""

import collections
import collections.abc

_ALIASES = ("Mapping", "MutableMapping", "Sequence", "Iterable", "Callable")


def apply() -> None:
    for name in _ALIASES:
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
