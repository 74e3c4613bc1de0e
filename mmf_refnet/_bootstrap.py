"""Loads MMF with the compat shims and registers everything mmf-refnet provides.

Safe to call many times and re-entrantly (the import hook calls it while
``import mmf_refnet`` may already be running it).
"""

import importlib
import sys

_state = {"loading": False, "loaded": False}

REGISTERING_MODULES = (
    "mmf_refnet.losses",
    "mmf_refnet.metrics",
    "mmf_refnet.models.refnet",
    "mmf_refnet.models.refnet_ms",
    "mmf_refnet.models.visual_bert_refnet",
    "mmf_refnet.models.mmbt_refnet",
    "mmf_refnet.trainer",
    "mmf_refnet.data.label_fraction",
    "mmf_refnet.data.builder",
    "mmf_refnet.data.image_text_builder",
)


def _hook_is_importing_mmf() -> bool:
    hook = sys.modules.get("_mmf_refnet_autoload")
    return bool(hook and hook.STATE["importing_mmf"])


def load() -> None:
    if _state["loaded"] or _state["loading"] or _hook_is_importing_mmf():
        return
    _state["loading"] = True
    try:
        from mmf_refnet import compat

        compat.apply_pre()
        import mmf  # noqa: F401

        compat.apply_post()
        for module in REGISTERING_MODULES:
            importlib.import_module(module)
        _state["loaded"] = True
    finally:
        _state["loading"] = False
