"""rc10 always builds its BERT-based backbones with
``XBase.from_pretrained(bert_model_name, config=...)``; in transformers 2.3
``bert_model_name: null`` meant random init, newer versions crash
(``'NoneType' object has no attribute 'endswith'``). A ``None`` name now builds
the model from its config (random init), with no hub access."""

import importlib


def _random_init_on_none(original):
    def from_pretrained(cls, name, *args, **kwargs):
        if name is None:
            config = kwargs.get("config")
            if config is None:
                raise ValueError(f"{cls.__name__}.from_pretrained(None) needs config=")
            return cls(config)
        return original.__func__(cls, name, *args, **kwargs)

    from_pretrained.__wrapped__ = original
    return classmethod(from_pretrained)


def apply() -> None:
    for module, name in (("mmf.models.vilbert", "ViLBERTBase"), ("mmf.models.visual_bert", "VisualBERTBase")):
        cls = getattr(importlib.import_module(module), name, None)
        if cls is None or hasattr(cls.__dict__.get("from_pretrained"), "__wrapped__"):
            continue
        cls.from_pretrained = _random_init_on_none(cls.from_pretrained)
