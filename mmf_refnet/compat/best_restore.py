"""rc10's ``Checkpoint.restore`` (end of training, or early stopping) loads
``best.ckpt`` unchecked: a truncated ``best.ckpt`` lets every update train and
then crashes in the final restore, with no final model and no test run. And
``EarlyStopping.init_from_checkpoint`` forgets ``best_update`` on resume, so the
patience count restarts from update 0 and later checkpoints record best update 0.
Now:

* a resume restores ``best_update``;
* a resumed run checks ``best.ckpt`` before training: if damaged it is rebuilt
  from ``models/model_<best update>.ckpt`` (same weights) with a warning, or the
  run stops at once with an error naming both files;
* ``restore`` loads ``best.ckpt`` only when it is intact and holds the best
  update, else ``models/model_<best update>.ckpt``, each fallback with a warning
  naming both files; with neither, training's last model stays (warned).
"""

import os

from mmf_refnet import checkpoint_files
from mmf_refnet.checkpoint_files import CheckpointFileError


def _paths(checkpoint):
    update = int(checkpoint.trainer.early_stopping.best_monitored_update or 0)
    best = os.path.join(checkpoint.ckpt_foldername, checkpoint.ckpt_prefix + "best.ckpt")
    return update, best, os.path.join(checkpoint.models_foldername, f"model_{update}.ckpt")


def _holds_update(path: str, update: int) -> bool:
    if not checkpoint_files.is_intact(path):
        return False
    return not update or checkpoint_files.read_metadata(path).get("num_updates") == update


def _problem(path: str, update: int) -> str:
    if not os.path.exists(path):
        return "is missing"
    if not checkpoint_files.is_intact(path):
        return checkpoint_files.diagnose(path)
    return f"holds update {checkpoint_files.read_metadata(path).get('num_updates')}, not the best update {update}"


def best_source(checkpoint):
    """The file holding the best model: best.ckpt, else models/model_<best update>.ckpt, else None (warned)."""
    update, best, replacement = _paths(checkpoint)
    if _holds_update(best, update):
        return best
    if not os.path.exists(best) and not update:
        return None  # nothing was evaluated: rc10 keeps the last model
    if update and _holds_update(replacement, update):
        checkpoint_files.warn(f"{best} {_problem(best, update)}; restoring the best model from {replacement}")
        return replacement
    checkpoint_files.warn(f"no intact checkpoint of the best update {update}: {best} {_problem(best, update)} and "
                          f"{replacement} {_problem(replacement, update)}. The final model is training's last one, "
                          "not the best.")
    return None


def check_best_on_resume(checkpoint) -> None:
    """Before training: rebuild a damaged best.ckpt from the best update's checkpoint, or stop now."""
    update, best, replacement = _paths(checkpoint)
    if not os.path.exists(best) or checkpoint_files.is_intact(best):
        return
    problem = checkpoint_files.diagnose(best)
    if update and _holds_update(replacement, update):
        checkpoint_files.copy_file(replacement, best)
        checkpoint_files.warn(f"{best} {problem}; rebuilt it from {replacement} (the best update, {update})")
        return
    raise CheckpointFileError(
        f"{best} {problem}, and {replacement} (the checkpoint of the best update "
        f"{update}) {_problem(replacement, update)}: the best model so far is lost, and the final restore would "
        f"fail after training. Move {best} away to go on (the final model is then the best one evaluated after "
        "resuming, or the last one).")


def apply() -> None:
    from mmf.utils.checkpoint import Checkpoint
    from mmf.utils.early_stopping import EarlyStopping

    original_init_from = EarlyStopping.init_from_checkpoint
    if hasattr(original_init_from, "__wrapped__"):
        return

    def init_from_checkpoint(self, load):
        original_init_from(self, load)
        if load.get("best_update") is not None:
            self.best_monitored_update = load["best_update"]

    original_load_state_dict = Checkpoint.load_state_dict

    def load_state_dict(self):
        result = original_load_state_dict(self)
        if self.config.checkpoint.resume:
            check_best_on_resume(self)
        return result

    def restore(self):
        from mmf.utils.distributed import synchronize

        synchronize()
        self.trainer.writer.write("Restoring checkpoint")
        source = best_source(self)
        if source is not None:
            self._load(source, force=True)

    init_from_checkpoint.__wrapped__ = original_init_from
    load_state_dict.__wrapped__ = original_load_state_dict
    EarlyStopping.init_from_checkpoint = init_from_checkpoint
    Checkpoint.load_state_dict = load_state_dict
    Checkpoint.restore = restore
