"""rc10's ``Checkpoint`` writes ``config.yaml``, ``models/model_<update>.ckpt``,
``best.ckpt``, ``current.ckpt`` and ``<model>_final.pth`` in place (``torch.save``
or ``open(..., "w")`` on the final name): a run killed while saving leaves half a
file, and the next ``checkpoint.resume=True`` fails on it. Now every file is
written to a temporary file in the same folder, fsync'ed and renamed over the
old one (``mmf_refnet.checkpoint_files``), so a kill leaves the previous version
intact. ``best.ckpt`` and ``current.ckpt`` are copies of the ``model_<update>.ckpt``
just written (one serialisation where rc10 made three). ``<model>_final.pth`` holds the model's
own keys after a distributed run too (rc10 saved DDP's ``module.*`` keys). Temporaries left by a
killed run are removed when the next run's ``Checkpoint`` starts. The saved dict
is rc10's (same keys)."""

import os

from omegaconf import OmegaConf

from mmf_refnet import checkpoint_files


def checkpoint_dict(checkpoint, update, iteration):
    """The dict rc10 saves: model, optimizer, counters, early-stopping state and config."""
    from mmf.common.registry import registry

    trainer = checkpoint.trainer
    model = trainer.model
    if registry.get("data_parallel") or registry.get("distributed"):
        model = model.module
    state = {
        "model": model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "best_iteration": trainer.early_stopping.best_monitored_iteration,
        "current_iteration": iteration,
        "current_epoch": trainer.current_epoch,
        "num_updates": update,
        "best_update": trainer.early_stopping.best_monitored_update,
        "best_metric_value": trainer.early_stopping.best_monitored_value,
        "config": OmegaConf.to_container(checkpoint.config, resolve=True),
    }
    if checkpoint.git_repo:
        state.update(checkpoint._get_vcs_fields())
    return state


def save(self, update, iteration=None, update_best=False):
    from mmf.utils.distributed import is_master

    if not is_master():
        return
    iteration = iteration or update
    model_path = os.path.join(self.models_foldername, f"model_{update}.ckpt")
    checkpoint_files.save_checkpoint(checkpoint_dict(self, update, iteration), model_path)
    if update_best:
        checkpoint_files.copy_file(model_path, os.path.join(self.ckpt_foldername, self.ckpt_prefix + "best.ckpt"))
    checkpoint_files.copy_file(model_path, os.path.join(self.ckpt_foldername, self.ckpt_prefix + "current.ckpt"))


def save_config(self):
    from mmf.utils.distributed import is_master

    if is_master():
        path = os.path.join(self.ckpt_foldername, "config.yaml")
        checkpoint_files.write_text(path, OmegaConf.to_yaml(self.config, resolve=True))


def finalize(self):
    """``<model>_final.pth``: the model's own keys, also when DDP wraps it (rc10 saved ``module.*``
    keys after a distributed run, which no 1-process run and no ``pretrained_state_mapping`` reads)."""
    from mmf.utils.distributed import is_master

    if is_master():
        model = self.trainer.model
        checkpoint_files.save_checkpoint(getattr(model, "module", model).state_dict(), self.pth_filepath)


def apply() -> None:
    from mmf.utils.checkpoint import Checkpoint

    original_init = Checkpoint.__init__
    if hasattr(original_init, "__wrapped__"):
        return

    def __init__(self, trainer):
        original_init(self, trainer)  # calls save_config (atomic below)
        for folder in (self.ckpt_foldername, self.models_foldername):
            checkpoint_files.remove_stale_temporaries(folder)

    __init__.__wrapped__ = original_init
    Checkpoint.__init__ = __init__
    Checkpoint.save = save
    Checkpoint.save_config = save_config
    Checkpoint.finalize = finalize
