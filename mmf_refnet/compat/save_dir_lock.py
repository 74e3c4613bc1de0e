"""rc10's ``mmf_run``/``mmf_predict`` never check whether another run is using
``env.save_dir``: two runs on one folder both exit 0, every checkpoint left is
the second run's and the first run's final restore, logs and reported metrics
come from the second's files. Now a run takes the folder's lock
(``mmf_refnet.run_lock``) before its logger or checkpoints touch it (in
``build_config``, which ``mmf_cli.run.main`` calls right before it creates the
logger), and keeps it until the process ends; a second run stops at once with an error naming the
holder (pid, host, start time, command). In a distributed run the run as a whole
holds it through rank 0 (``distributed.rank``; torchrun's ``RANK``)."""

import os

from mmf_refnet.run_lock import SaveDirLock


def run_rank(config) -> int:
    rank = config.distributed.get("rank", None) if config.get("distributed") is not None else None
    if rank is None:
        rank = os.environ.get("RANK", 0)
    return int(rank)


def lock_save_dir(config):
    """Rank 0 takes ``env.save_dir``'s lock (raises ``SaveDirLocked``); other ranks take none."""
    if run_rank(config) != 0:
        return None
    lock = SaveDirLock(str(config.env.save_dir))
    lock.acquire()
    return lock


def apply() -> None:
    import sys

    from mmf.utils import build

    original = build.build_config
    if hasattr(original, "__wrapped__"):
        return

    def build_config(configuration, *args, **kwargs):
        config = original(configuration, *args, **kwargs)
        lock_save_dir(config)
        return config

    build_config.__wrapped__ = original
    build.build_config = build_config
    run = sys.modules.get("mmf_cli.run")  # bound its own name if it was imported before the plugin
    if run is not None and getattr(run, "build_config", None) is original:
        run.build_config = build_config
