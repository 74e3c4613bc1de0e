"""rc10 opens one ``lmdb.Environment`` per split, and MMF's configs point train,
val and test at the same ``*.lmdb``; py-lmdb >= 1.0 refuses a second open in one
process (``The environment ... is already open in this process``). All readers
of a path now share one read-only environment."""

import os
import threading

_ENVIRONMENTS: dict = {}
_LOCK = threading.Lock()


def shared_environment(path: str, **kwargs):
    import lmdb

    key = (os.path.realpath(path), os.getpid())
    with _LOCK:
        if key not in _ENVIRONMENTS:
            _ENVIRONMENTS[key] = lmdb.open(path, **kwargs)
        return _ENVIRONMENTS[key]


class _SharedLmdb:
    """Stand-in for the ``lmdb`` module inside rc10's feature reader."""

    def __init__(self, real):
        self._real = real

    def open(self, path, **kwargs):
        if kwargs.get("readonly"):
            return shared_environment(path, **kwargs)
        return self._real.open(path, **kwargs)

    def __getattr__(self, attr):
        return getattr(self._real, attr)


def apply() -> None:
    from mmf.datasets.databases.readers import feature_readers

    if not isinstance(feature_readers.lmdb, _SharedLmdb):
        feature_readers.lmdb = _SharedLmdb(feature_readers.lmdb)
