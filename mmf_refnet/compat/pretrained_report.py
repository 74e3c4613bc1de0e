"""rc10's ``Checkpoint._load_pretrained`` (``checkpoint.resume_pretrained=True``, e.g.
with ``checkpoint.resume_zoo=vilbert.pretrained.cc.small``) copies the tensors that
``pretrained_state_mapping`` pairs up and says nothing about the rest: a checkpoint
whose keys match no mapping (another model's zoo key, a renamed layer) leaves the
model as it was and still logs "Pretrained model loaded", and a tensor of another
size fails inside ``copy_`` with "The size of tensor a (768) must match ...".

Here the pairs are worked out first (rc10's rule, ``format_state_key`` included):
differing shapes raise an error naming the tensors and both shapes; a mapping that
pairs up nothing at all raises an error naming the mapping and the checkpoint's key
prefixes; otherwise each mapping's count is logged (``model.bert <- model.bert: 212
of 212 tensors``) with the model tensors it left untouched. Then rc10 copies.
"""

import logging

logger = logging.getLogger(__name__)


def pairs(model, own_keys, checkpoint_keys, mapping) -> dict:
    """{(own prefix, checkpoint prefix): [(own key, checkpoint key), ...]} by rc10's matching rule."""
    format_key = getattr(model, "format_state_key", lambda key: key)
    formatted = {key: format_key(key) for key in checkpoint_keys}
    found = {}
    for own_prefix, source_prefix in mapping.items():
        own, source = own_prefix + ".", source_prefix + "."
        by_rest = {key.replace(own, ""): key for key in own_keys if own in key}
        found[(own_prefix, source_prefix)] = [
            (by_rest[name.replace(source, "")], key) for key, name in formatted.items()
            if source in name and name.replace(source, "") in by_rest
        ]
    return found


def check(model, own_state, checkpoint, mapping) -> list:
    """Errors for shape mismatches or a mapping that pairs nothing; one summary line per mapping."""
    found = pairs(model, list(own_state), list(checkpoint), mapping)
    wrong = [f"{own} {tuple(own_state[own].shape)} <- {key} {tuple(checkpoint[key].shape)}"
             for matched in found.values() for own, key in matched if own_state[own].shape != checkpoint[key].shape]
    if wrong:
        raise ValueError(
            f"checkpoint.resume_pretrained: {len(wrong)} checkpoint tensors do not fit the model ({'; '.join(wrong[:5])}"
            f"{'; ...' if len(wrong) > 5 else ''}). The model config must have the checkpoint's sizes "
            "(MMF's zoo ViLBERT checkpoints are ViLBERT-base, the default model config)."
        )
    if not any(found.values()):
        prefixes = sorted({".".join(key.split(".")[:2]) for key in checkpoint})
        raise ValueError(
            f"checkpoint.resume_pretrained: checkpoint.pretrained_state_mapping ({dict(mapping)}) pairs no tensor "
            f"of the checkpoint (its keys start with {', '.join(prefixes[:8])}) with the model: nothing would load."
        )
    lines = []
    for (own_prefix, source_prefix), matched in found.items():
        targets = [key for key in own_state if own_prefix + "." in key]
        untouched = sorted(set(targets) - {own for own, _ in matched})
        line = f"{own_prefix} <- {source_prefix}: {len(matched)} of {len(targets)} tensors"
        if matched and untouched:
            line += f"; not in the checkpoint: {', '.join(untouched[:5])}{', ...' if len(untouched) > 5 else ''}"
        lines.append(line)
    return lines


def apply() -> None:
    from mmf.utils.checkpoint import Checkpoint

    original = Checkpoint._load_pretrained
    if getattr(original, "refnet_report", False):
        return

    def _load_pretrained(self, ckpt):
        model = self.trainer.model  # as rc10 sees it (a DDP wrapper has no format_state_key)
        mapping = self.trainer.config.checkpoint.pretrained_state_mapping
        for line in check(model, model.state_dict(), ckpt, mapping):
            self.trainer.writer.write(f"pretrained_state_mapping {line}")
        return original(self, ckpt)

    _load_pretrained.refnet_report = True
    Checkpoint._load_pretrained = _load_pretrained
