"""What a checkpoint needs besides weights and optimizer for a resumed run to be
the same run: random number generator states, the training meter, and helpers
to keep evaluation from drawing random numbers.

Everything is plain data (tensors, numbers, lists, dicts), so checkpoints load
with ``torch.load(weights_only=True)``.
"""

import contextlib
import random
from collections import deque

import numpy as np
import torch


def rng_state() -> dict:
    """This process's python, numpy, torch and (if initialised) CUDA generator states."""
    numpy = np.random.get_state(legacy=False)
    numpy["state"] = {"key": torch.from_numpy(numpy["state"]["key"].astype(np.int64)), "pos": numpy["state"]["pos"]}
    return {
        "python": random.getstate(),
        "numpy": numpy,
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }


def set_rng_state(state: dict) -> None:
    random.setstate(_as_tuples(state["python"]))
    numpy = dict(state["numpy"])
    numpy["state"] = {"key": state["numpy"]["state"]["key"].numpy().astype(np.uint32),
                      "pos": int(state["numpy"]["state"]["pos"])}
    np.random.set_state(numpy)
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        for index, device_state in enumerate(cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(device_state, index)


def _as_tuples(value):
    """``random.setstate`` wants the tuples ``getstate`` gave (a checkpoint may hand back lists)."""
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuples(item) for item in value)
    return value


def gather_rng_states() -> list:
    """Every rank's ``rng_state()``, indexed by rank (a collective call in a distributed run)."""
    state = rng_state()
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [state]
    states = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(states, state)
    return states


@contextlib.contextmanager
def preserved_rng():
    """Run a block without changing any generator's state (its draws are forgotten)."""
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


def meter_state(meter) -> dict:
    """rc10 ``Meter``'s smoothed values (windows and totals) as plain data."""
    return {
        name: {"window_size": value.window_size, "values": list(value.deque),
               "averaged": list(value.averaged_value_deque), "batch_sizes": list(value.batch_sizes),
               "total": value.total, "count": value.count, "total_samples": value.total_samples}
        for name, value in meter.meters.items()
    }


def restore_meter(meter, state: dict) -> None:
    from mmf.common.meter import SmoothedValue

    meter.meters.clear()
    for name, saved in state.items():
        value = SmoothedValue(window_size=saved["window_size"])
        value.deque = deque(saved["values"], maxlen=value.window_size)
        value.averaged_value_deque = deque(saved["averaged"], maxlen=value.window_size)
        value.batch_sizes = deque(saved["batch_sizes"], maxlen=value.window_size)
        value.total, value.count, value.total_samples = saved["total"], saved["count"], saved["total_samples"]
        meter.meters[name] = value


class ReplicasDiffer(RuntimeError):
    """The processes of a distributed run hold different parameters."""


def parameter_checksum(model) -> torch.Tensor:
    """Per parameter (in ``named_parameters`` order): the sum and the sum of squares, float64."""
    module = getattr(model, "module", model)
    rows = [torch.stack([p.detach().double().sum(), p.detach().double().square().sum()]) for p in module.parameters()]
    return torch.stack(rows) if rows else torch.zeros((0, 2), dtype=torch.float64)


def check_replicas(model, update: int) -> str:
    """Every rank's parameter checksum compared with rank 0's (collective); the line to log, or
    ``ReplicasDiffer`` naming the ranks and the first parameter that differs."""
    checksum = parameter_checksum(model)
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return f"update {update}: one process, parameter checksum {float(checksum[:, 0].sum()):.10g}"
    device = next(getattr(model, "module", model).parameters()).device
    backend = str(torch.distributed.get_backend()).lower()
    local = checksum.to(device if backend == "nccl" else "cpu")
    gathered = [torch.empty_like(local) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(gathered, local)
    names = [name for name, _ in getattr(model, "module", model).named_parameters()]
    differing = [rank for rank, other in enumerate(gathered) if not torch.equal(other, gathered[0])]
    if differing:
        row = int((gathered[differing[0]] != gathered[0]).any(dim=1).nonzero()[0])
        raise ReplicasDiffer(f"update {update}: the parameters of rank(s) {differing} differ from rank 0's, first "
                             f"at {names[row]} (sum {float(gathered[differing[0]][row, 0]):.10g} vs "
                             f"{float(gathered[0][row, 0]):.10g}): the processes no longer train one model")
    return (f"update {update}: replicas identical on {len(gathered)} processes, parameter checksum "
            f"{float(gathered[0][:, 0].sum()):.10g}")
