"""rc10's ``Checkpoint.load_state_dict`` resumes (``checkpoint.resume=True``) from
``current.ckpt`` whenever that file exists: a damaged ``current.ckpt`` stops the
run with torch's zip error although ``models/`` holds intact checkpoints, and a
``checkpoint.resume_file`` given with it is ignored without a word. Now:

* a damaged (or missing) ``current.ckpt`` falls back to the newest intact
  ``models/model_<update>.ckpt`` (then ``best.ckpt``), with a warning naming both
  files; when no intact checkpoint is left the run stops with an error naming
  the damaged file instead of starting over;
* ``resume=True`` continues the run in ``env.save_dir`` when it has a checkpoint
  (rc10's rule, which lets a preempted job be relaunched with the same command);
  a ``resume_file``/``resume_zoo`` given as well is then the starting point only
  of a save_dir without checkpoints, and a warning names both files when it is
  not used.
"""

import glob
import os

from mmf_refnet import checkpoint_files
from mmf_refnet.checkpoint_files import CheckpointFileError


def model_checkpoints(folder: str) -> list:
    """``models/model_<update>.ckpt`` files, newest update first."""
    paths = [path for path in glob.glob(os.path.join(folder, "model_*.ckpt")) if checkpoint_files.update_of(path)]
    return sorted(paths, key=checkpoint_files.update_of, reverse=True)


def resume_candidate(checkpoint):
    """The checkpoint a resume loads: ``current.ckpt`` (``best.ckpt`` with ``resume_best``) when intact, else the
    newest intact one in the save_dir; None when the save_dir has none; raises when all are damaged."""
    names = ("best.ckpt", "current.ckpt") if checkpoint.config.checkpoint.resume_best else ("current.ckpt", "best.ckpt")
    primary, secondary = (os.path.join(checkpoint.ckpt_foldername, checkpoint.ckpt_prefix + name) for name in names)
    if checkpoint_files.is_intact(primary):
        return primary
    others = model_checkpoints(checkpoint.models_foldername) + [secondary]
    chosen = next((path for path in others if checkpoint_files.is_intact(path)), None)
    existing = [path for path in [primary] + others if os.path.exists(path)]
    if chosen is None and existing:
        problem = checkpoint_files.diagnose(primary) if os.path.exists(primary) else "is missing"
        raise CheckpointFileError(
            f"cannot resume the run in {checkpoint.ckpt_foldername}: {primary} {problem}, and no other checkpoint "
            f"there is intact ({', '.join(existing)}). Move the damaged files away to start the run over, or start "
            "from an intact checkpoint elsewhere with checkpoint.resume_file=<file> (without checkpoint.resume=True).")
    if chosen is not None and chosen != primary:
        problem = checkpoint_files.diagnose(primary) if os.path.exists(primary) else "is missing"
        checkpoint_files.warn(f"{primary} {problem}; resuming from {chosen}, the newest intact checkpoint in "
                              f"{checkpoint.ckpt_foldername}")
    return chosen


def apply() -> None:
    from mmf.utils.checkpoint import Checkpoint

    original = Checkpoint.load_state_dict
    if hasattr(original, "__wrapped__"):
        return

    def load_state_dict(self):
        settings = self.config.checkpoint
        if settings.resume:
            chosen = resume_candidate(self)
            if chosen is not None:
                start = settings.resume_file or settings.resume_zoo
                if start:
                    checkpoint_files.warn(
                        f"checkpoint.resume=True and {self.ckpt_foldername} holds this run's checkpoint {chosen}: "
                        f"continuing that run; {start} (checkpoint.resume_file/resume_zoo) is the starting point only "
                        "when the save_dir has no checkpoint yet. To start from it instead, drop checkpoint.resume=True "
                        "or use another env.save_dir.")
                self._load(chosen)
                return None
        return original(self)  # no checkpoint of this run: rc10 loads resume_file / resume_zoo, or nothing

    load_state_dict.__wrapped__ = original
    Checkpoint.load_state_dict = load_state_dict
