"""rc10's ``BertPreTrainedModel`` subclasses (ViLBERTBase, VisualBERTBase, M4C's
TextBert/MMT) end ``__init__`` with ``self.init_weights()``; transformers 5
requires ``post_init()`` there, otherwise ``from_pretrained`` fails with
``'ViLBERTBase' object has no attribute 'all_tied_weights_keys'``.
On transformers 5 their first ``init_weights()`` call also runs ``post_init()``."""

import importlib


def _needs_post_init() -> bool:
    import transformers

    return int(transformers.__version__.split(".")[0]) >= 5


def _classes():
    found = []
    for module, names in (
        ("mmf.models.vilbert", ("ViLBERTBase",)),
        ("mmf.models.visual_bert", ("VisualBERTBase",)),
        ("mmf.models.m4c", ("TextBert", "MMT")),
    ):
        mod = importlib.import_module(module)
        found += [getattr(mod, n) for n in names if hasattr(mod, n)]
    return found


def _with_post_init(original):
    def init_weights(self, *args, **kwargs):
        if not getattr(self, "_mmf_refnet_post_init_done", False):
            self._mmf_refnet_post_init_done = True
            self.post_init()
            return None
        return original(self, *args, **kwargs)

    init_weights.__wrapped__ = original
    return init_weights


def apply() -> None:
    if not _needs_post_init():
        return
    for cls in _classes():
        if "init_weights" in cls.__dict__ and hasattr(cls.__dict__["init_weights"], "__wrapped__"):
            continue
        cls.init_weights = _with_post_init(cls.init_weights)
