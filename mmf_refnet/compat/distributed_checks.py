"""rc10 splits ``training.batch_size`` among the processes of a distributed run with an
integer division hidden in ``get_batch_size``: a batch size that does not divide fails in
the middle of loading the data with ``Batch size 10 must be divisible by number of GPUs 4
used.``, naming neither the key nor a value that works. Now the run stops when its config is
built, before any data or model is loaded, with the key, the value, the number of processes
and the nearest batch sizes that divide."""

from mmf_refnet.compat.distributed_eval import world


class BatchSizeSplit(ValueError):
    pass


def check_batch_size(config) -> None:
    processes, _ = world()
    if processes == 1:
        return
    batch_size = int(config.training.batch_size)
    if batch_size % processes:
        lower = batch_size - batch_size % processes
        options = " or ".join(str(size) for size in (lower, lower + processes) if size > 0)
        raise BatchSizeSplit(
            f"training.batch_size={batch_size} does not split among {processes} processes (each takes "
            f"training.batch_size / {processes} rows of every batch): set training.batch_size={options}, a multiple "
            f"of {processes}, or run with a number of processes that divides {batch_size}")


def apply() -> None:
    import sys

    from mmf.utils import build

    original = build.build_config
    if getattr(original, "_refnet_batch_split", False):
        return

    def build_config(configuration, *args, **kwargs):
        config = original(configuration, *args, **kwargs)
        check_batch_size(config)
        return config

    build_config._refnet_batch_split = True
    build.build_config = build_config
    run = sys.modules.get("mmf_cli.run")
    if run is not None and getattr(run, "build_config", None) is original:
        run.build_config = build_config
