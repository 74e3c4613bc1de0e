"""A bare rc10 ``Checkpoint`` on a folder, with a stub trainer around a tiny model,
to exercise one checkpoint method at a time (the checkpoint shims' tests)."""

import os
from types import SimpleNamespace

import torch
from omegaconf import OmegaConf


def bare_checkpoint(folder: str, model=None, best_update: int = 0, **settings):
    """``Checkpoint`` without ``__init__``: counters and optimizer are not restored unless ``settings`` say so."""
    from mmf.common.registry import registry
    from mmf.utils.checkpoint import Checkpoint

    registry.register("data_parallel", False)
    registry.register("distributed", False)
    model = model if model is not None else torch.nn.Linear(2, 2)
    config = OmegaConf.create({"model": "stub", "checkpoint": {
        "resume": False, "resume_best": False, "resume_file": None, "resume_zoo": None, "pretrained_state_mapping": {},
        "allow_partial_load": False, "reset": {"all": False, "optimizer": True, "counts": True}, **settings}})
    checkpoint = object.__new__(Checkpoint)
    checkpoint.config, checkpoint.device, checkpoint.git_repo = config, torch.device("cpu"), None
    checkpoint.ckpt_foldername, checkpoint.ckpt_prefix = folder, ""
    checkpoint.models_foldername = os.path.join(folder, "models")
    os.makedirs(checkpoint.models_foldername, exist_ok=True)
    early_stopping = SimpleNamespace(best_monitored_iteration=best_update, best_monitored_update=best_update,
                                     best_monitored_value=0.0, init_from_checkpoint=lambda state: None)
    checkpoint.trainer = SimpleNamespace(
        model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), config=config, current_epoch=0,
        early_stopping=early_stopping, writer=SimpleNamespace(write=lambda *args, **kwargs: None))
    return checkpoint


def truncate(path: str) -> None:
    """Cut a file to half its size, as an interrupted write leaves it."""
    size = os.path.getsize(path)
    with open(path, "r+b") as handle:
        handle.truncate(size // 2)


def write_checkpoint(path: str, update, value: float = 0.0) -> None:
    """A checkpoint of ``torch.nn.Linear(2, 2)`` (weight filled with ``value``) at ``update``;
    ``update="truncated"`` leaves it cut in half."""
    weights = {"weight": torch.full((2, 2), value), "bias": torch.zeros(2)}
    torch.save({"model": weights, "num_updates": update if isinstance(update, int) else 1}, path)
    if update == "truncated":
        truncate(path)
