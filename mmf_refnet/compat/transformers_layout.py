"""rc10 imports the transformers 2.3 module layout: ``transformers.modeling_bert``,
``configuration_bert``, ``tokenization_auto``, ``modeling_auto``,
``configuration_auto``, plus ``BertLayerNorm`` and
``transformers.optimization.AdamW``. transformers 4 moved the modules under
``transformers.models.*`` and later removed ``BertLayerNorm`` and ``AdamW``.

Proxy modules are registered under the old names; they forward every attribute to
the new module (transformers itself is not modified), with ``BertLayerNorm`` =
``torch.nn.LayerNorm``. Where ``transformers.optimization`` lacks ``AdamW`` it gets
a subclass of ``torch.optim.AdamW`` with the old HF defaults (weight decay 0).
"""

import importlib
import sys
import types

import torch

_MOVED = {
    "transformers.modeling_bert": "transformers.models.bert.modeling_bert",
    "transformers.configuration_bert": "transformers.models.bert.configuration_bert",
    "transformers.tokenization_auto": "transformers.models.auto.tokenization_auto",
    "transformers.modeling_auto": "transformers.models.auto.modeling_auto",
    "transformers.configuration_auto": "transformers.models.auto.configuration_auto",
}
_EXTRAS = {
    "transformers.modeling_bert": {"BertLayerNorm": torch.nn.LayerNorm},
}


class _ForwardingModule(types.ModuleType):
    """A module under an old name whose attributes come from the new module."""

    def __init__(self, old_name: str, new_name: str, extras: dict):
        super().__init__(old_name)
        self.__dict__.update(extras)
        self._target_name = new_name

    def __getattr__(self, attr):
        if attr.startswith("__") and attr != "__all__":
            raise AttributeError(attr)
        target = importlib.import_module(self._target_name)
        if hasattr(target, attr):
            return getattr(target, attr)
        if attr == "ACT2FN":
            return importlib.import_module("transformers.activations").ACT2FN
        raise AttributeError(f"module {self.__name__!r} (-> {self._target_name}) has no attribute {attr!r}")


class AdamW(torch.optim.AdamW):
    """transformers 2.3's AdamW signature (``correct_bias``) on torch's AdamW."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, correct_bias=True, **kwargs):
        if not correct_bias:
            raise ValueError("AdamW(correct_bias=False) is not supported by torch.optim.AdamW")
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, **kwargs)


def apply() -> None:
    import transformers
    import transformers.optimization as optimization

    for old, new in _MOVED.items():
        if old in sys.modules:
            continue
        try:
            importlib.import_module(old)
            continue  # an old transformers that still has the module
        except ImportError:
            pass
        proxy = _ForwardingModule(old, new, _EXTRAS.get(old, {}))
        sys.modules[old] = proxy
        setattr(transformers, old.rpartition(".")[2], proxy)
    if not hasattr(optimization, "AdamW"):
        optimization.AdamW = AdamW
