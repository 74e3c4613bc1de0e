"""Loaded at interpreter start by ``mmf_refnet_autoload.pth``.

It only installs a ``sys.meta_path`` finder (nothing heavy is imported). When a
program first imports ``mmf`` (``mmf_run``, ``mmf_predict``, ``torchrun``, a
notebook), the finder applies mmf-refnet's pre-import shims, lets MMF import,
then loads mmf-refnet (post-import shims + registration of its models, losses,
metrics and datasets). Set ``MMF_REFNET_AUTOLOAD=0`` to switch it off.
"""

import importlib.abc
import importlib.machinery
import os
import sys

# True while the hook is importing mmf: mmf_refnet then defers its own loading
# until MMF has finished importing (see mmf_refnet._bootstrap.load).
STATE = {"importing_mmf": False}


def _enabled() -> bool:
    return os.environ.get("MMF_REFNET_AUTOLOAD", "1").strip().lower() not in ("0", "false", "no", "off")


class _LoadRefnetAfterMMF(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        try:
            self._loader.exec_module(module)
        finally:
            STATE["importing_mmf"] = False
        from mmf_refnet import _bootstrap

        _bootstrap.load()

    def __getattr__(self, attr):
        return getattr(self._loader, attr)


class MMFImportHook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "mmf":
            return None
        sys.meta_path.remove(self)
        STATE["importing_mmf"] = True
        from mmf_refnet import compat

        compat.apply_pre()
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            STATE["importing_mmf"] = False
            return spec
        spec.loader = _LoadRefnetAfterMMF(spec.loader)
        return spec


def install() -> None:
    if not _enabled() or "mmf" in sys.modules:
        return
    if not any(isinstance(finder, MMFImportHook) for finder in sys.meta_path):
        sys.meta_path.insert(0, MMFImportHook())
