"""rc10's ``Checkpoint._load_pretrained`` (``checkpoint.resume_pretrained=True``
with ``pretrained_state_mapping``) copies a checkpoint tensor only into the
parameter of the same name (``format_state_key`` can rename one key, not merge
several) and skips the rest without a word. So a model whose parameter layout
changed cannot take older checkpoints through the mapping: e.g. refnet's refiner
decoders, stacked now, kept one ``decoders.<modality>.*`` set each before, and
the fine-tuning run of a pretrained refiner started it from random weights.

The model may now upgrade the checkpoint's state dict before the copy: rc10
calls ``model.upgrade_checkpoint_state(state_dict)`` (in place) if the model
(unwrapped from DDP) has one. ``model.load_state_dict`` needs no help: there
modules convert their own keys (``_load_from_state_dict``).
"""


def apply() -> None:
    from mmf.utils.checkpoint import Checkpoint

    original = Checkpoint._load_pretrained
    if hasattr(original, "__wrapped__"):
        return

    def _load_pretrained(self, ckpt):
        model = getattr(self.trainer.model, "module", self.trainer.model)
        upgrade = getattr(model, "upgrade_checkpoint_state", None)
        if upgrade is not None:
            upgrade(ckpt)
        return original(self, ckpt)

    _load_pretrained.__wrapped__ = original
    Checkpoint._load_pretrained = _load_pretrained
