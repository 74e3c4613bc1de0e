"""rc10's ``mmf/utils/configuration.py`` does ``import demjson`` (used only for
``--config_override``); demjson 2.x cannot be built by modern setuptools
(``use_2to3 is invalid``). ``demjson3`` has the same ``decode`` API, so it is
registered under the old name."""

import sys


def apply() -> None:
    if "demjson" in sys.modules:
        return
    try:
        import demjson  # noqa: F401
    except ImportError:
        import demjson3

        sys.modules["demjson"] = demjson3
