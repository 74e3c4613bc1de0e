"""The PyPI sdist of rc10 ships no YAML at all: ``Configuration()`` fails with
``FileNotFoundError .../mmf/configs/defaults.yaml`` and every ``config_path()``
(``configs/datasets/...``, ``configs/models/...``) is unresolvable.

mmf-refnet ships its own default configs (written for this project; key names
follow MMF) under ``mmf_refnet/mmf_root/``. ``mmf.utils.configuration`` is pointed
at them: its default-config path and the root it uses to resolve ``configs/...``
paths and ``includes:``. ``mmf.utils.general.get_mmf_root`` is left alone because
``setup_imports()`` scans the real package for models and datasets.
"""

import os

CONFIG_ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mmf_root")


def config_root() -> str:
    return CONFIG_ROOT


def default_config_path() -> str:
    return os.path.join(CONFIG_ROOT, "configs", "defaults.yaml")


def apply() -> None:
    from mmf.utils import configuration

    configuration.get_default_config_path = default_config_path
    configuration.get_mmf_root = config_root
