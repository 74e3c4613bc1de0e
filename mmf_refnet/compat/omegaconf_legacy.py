"""rc10 was written for omegaconf 2.0: a missing key read as ``None``,
``DictConfig.pretty()`` existed (the checkpointer writes ``config.yaml`` with it)
and ``${env:VAR,default}`` was a built-in resolver. omegaconf 2.1+ raises on
missing keys, removed ``pretty()`` and the ``env`` resolver.

The missing-key fix is scoped: only attribute/item reads made *by code inside the
``mmf`` / ``mmf_cli`` packages* get ``None``; every other omegaconf user in the
process keeps 2.3 semantics. The check runs only on the error path, so normal
reads cost nothing.
"""

import os
import sys

from omegaconf import DictConfig, OmegaConf

_MMF_PACKAGES = ("mmf.", "mmf_cli.")


def _called_from_mmf(depth: int = 2) -> bool:
    module = sys._getframe(depth).f_globals.get("__name__", "")
    return module.startswith(_MMF_PACKAGES) or module in ("mmf", "mmf_cli")


def _legacy(original, missing_error):
    def read(self, key):
        try:
            return original(self, key)
        except missing_error:
            if isinstance(key, str) and key.startswith("__"):
                raise
            if _called_from_mmf():
                return None
            raise

    read.__wrapped__ = original
    return read


def _pretty(self, resolve: bool = False, sort_keys: bool = False) -> str:
    return OmegaConf.to_yaml(self, resolve=resolve, sort_keys=sort_keys)


def _env_resolver(key: str, default=None):
    """omegaconf 2.0's ``${env:VAR,default}``: empty default when none is given."""
    return os.environ.get(key, "" if default is None else default)


def register_env_resolver() -> None:
    if not OmegaConf.has_resolver("env"):
        OmegaConf.register_new_resolver("env", _env_resolver)


def apply() -> None:
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    if not hasattr(DictConfig.__getattr__, "__wrapped__"):
        DictConfig.__getattr__ = _legacy(DictConfig.__getattr__, ConfigAttributeError)
        DictConfig.__getitem__ = _legacy(DictConfig.__getitem__, ConfigKeyError)
    if not hasattr(DictConfig, "pretty"):
        DictConfig.pretty = _pretty
    register_env_resolver()
