"""rc10 imports torchvision at import time (image database, encoders, HM dataset,
processors). PyPI's torchvision is a CUDA build that cannot load beside the CPU
torch wheel (``operator torchvision::nms does not exist``), and the
feature-based path never calls it.

If a working torchvision is importable we leave it alone. Otherwise a stand-in
module is registered for the names rc10 imports; *using* any of them raises an
error that says why and how to get a real torchvision.
"""

import importlib.machinery
import importlib.util
import sys
import types

_SUBMODULES = ("transforms", "models", "datasets", "datasets.folder", "utils", "ops")
_WHY = (
    "torchvision is not usable in this environment (not installed, or a build that "
    "does not match this torch). mmf-refnet's feature-based path does not need it; "
    "for raw-image MMF models install a torchvision built for your torch, e.g. "
    "`pip install torch==2.14.1 torchvision==0.29.1`."
)


class TorchvisionUnavailable(ImportError):
    pass


class _Unavailable:
    """Placeholder for any torchvision attribute: fails loudly when used."""

    def __init__(self, name: str):
        self._name = name

    def __call__(self, *args, **kwargs):
        raise TorchvisionUnavailable(f"torchvision.{self._name} was called. {_WHY}")

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Unavailable(f"{self._name}.{attr}")

    def __iter__(self):
        raise TorchvisionUnavailable(f"torchvision.{self._name} was used. {_WHY}")


class _StubModule(types.ModuleType):
    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Unavailable(f"{self.__name__.partition('.')[2] or 'torchvision'}.{attr}")


def _real_torchvision_works() -> bool:
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        import torchvision  # noqa: F401
    except Exception:
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        return False
    return True


def _install_stub() -> None:
    root = _StubModule("torchvision")
    root.__spec__ = importlib.machinery.ModuleSpec("torchvision", None, is_package=True)
    root.__path__ = []
    root.__version__ = "0.0.0+mmf_refnet_stub"
    root.mmf_refnet_stub = True
    sys.modules["torchvision"] = root
    for sub in _SUBMODULES:
        full = f"torchvision.{sub}"
        module = _StubModule(full)
        module.__spec__ = importlib.machinery.ModuleSpec(full, None, is_package=True)
        module.__path__ = []
        sys.modules[full] = module
        parent_name, _, child = full.rpartition(".")
        setattr(sys.modules[parent_name], child, module)


def _settle_transformers_flags() -> None:
    """transformers decides "torchvision is available" with ``find_spec`` (cached); ask it
    before the stand-in exists, or it would import ``torchvision.io`` from the stub."""
    try:
        from transformers.utils import import_utils
    except ImportError:
        return
    for name in ("is_torchvision_available", "is_torchvision_v2_available"):
        check = getattr(import_utils, name, None)
        if check is not None:
            check()


def apply() -> None:
    if "torchvision" in sys.modules or _real_torchvision_works():
        return
    _settle_transformers_flags()
    _install_stub()
