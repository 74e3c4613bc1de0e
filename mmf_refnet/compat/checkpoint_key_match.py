"""rc10's ``Checkpoint._load`` loads a checkpoint's model weights with
``load_state_dict(strict=False)`` and discards the result: a checkpoint of
another model (e.g. a refnet_ms checkpoint given to the vilbert config) loads
whatever names happen to match, leaves the rest random, and the run goes on
without a word (``mmf_predict`` wrote a CSV with test AUROC 0.489 where the right
config gives 0.837). Now a checkpoint whose weight names do not match the model
is refused with an error listing the missing and unexpected names (counts and a
few examples), unless ``checkpoint.allow_partial_load=True`` asks for a partial
load (then a warning lists them). ``checkpoint.resume_pretrained`` with
``pretrained_state_mapping``, which copies chosen prefixes on purpose, is not
affected. Names are compared after the model's own ``_load_from_state_dict``
upgrades (older refiner layouts still load)."""

import torch

from mmf_refnet import checkpoint_files

EXAMPLES = 4


class CheckpointMismatchError(ValueError):
    pass


def _listing(keys, what: str) -> str:
    shown = ", ".join(keys[:EXAMPLES]) + (", ..." if len(keys) > EXAMPLES else "")
    return f"{len(keys)} {what} ({shown})"


def _saved_model_name(file) -> str:
    try:
        saved = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        return str(saved.get("config", {}).get("model") or "")
    except Exception:  # a bare state dict, a zoo name, an unreadable file: nothing to add
        return ""


def mismatch_message(file, model_name: str, total: int, missing, unexpected, saved_model: str = "") -> str:
    parts = []
    if missing:
        parts.append(_listing(missing, f"of the model's {total} weights are missing from it"))
    if unexpected:
        parts.append(_listing(unexpected, "weights in it are unknown to the model"))
    saved = f" It was saved by a run of model '{saved_model}'." if saved_model and saved_model != model_name else ""
    return (f"checkpoint {file} does not fit model '{model_name}' of this config: {'; '.join(parts)}.{saved} "
            "Load it with the config it was trained with (config.yaml next to it). To load only the matching "
            "weights on purpose, set checkpoint.allow_partial_load=True; to copy chosen parts, use "
            "checkpoint.resume_pretrained=True with checkpoint.pretrained_state_mapping.")


def key_check(checkpoint, file):
    """A load_state_dict post-hook that refuses (or, if allowed, reports) a partial load."""
    config = checkpoint.config
    allow = bool(config.checkpoint.get("allow_partial_load", False))

    def hook(module, incompatible):
        missing, unexpected = list(incompatible.missing_keys), list(incompatible.unexpected_keys)
        if not missing and not unexpected:
            return
        total = len(module.state_dict())
        message = mismatch_message(file, str(config.model), total, missing, unexpected,
                                   "" if allow else _saved_model_name(file))
        if not allow:
            raise CheckpointMismatchError(message)
        checkpoint_files.warn("checkpoint.allow_partial_load=True: " + message.split(". Load it with")[0])

    return hook


def apply() -> None:
    from mmf.utils.checkpoint import Checkpoint

    original = Checkpoint._load
    if hasattr(original, "__wrapped__"):
        return

    def _load(self, file, *args, **kwargs):
        handle = self.trainer.model.register_load_state_dict_post_hook(key_check(self, file))
        try:
            return original(self, file, *args, **kwargs)
        finally:
            handle.remove()

    _load.__wrapped__ = original
    Checkpoint._load = _load
