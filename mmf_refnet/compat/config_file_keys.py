"""rc10 checks only command-line overrides against the configuration
(``_merge_with_dotlist`` raises for an unknown key): the ``config=`` file and the
files it ``includes`` are merged unchecked, so a typo such as ``ms_los: {weight: 5.0}``
or ``refiner: {weigths: ...}`` trains the defaults and exits 0, and a word where a
number belongs fails much later (``could not convert string to float``).

Each file of the user's config (the ``config=`` file and every file it includes) is
now checked against the defaults the run merges it onto; unknown keys raise
:class:`UnknownConfigKeyError` naming the file, the key path and the nearest known
keys. Per section:

* closed (a key must exist in the defaults): the top level, ``training``,
  ``evaluation``, ``checkpoint``, ``distributed``, ``model_config.<the run's model>``
  (the model's default config) and ``dataset_config.<each dataset of the run>`` (the
  builder's default config, plus the optional keys rc10's dataset code reads);
* open (any key): ``includes``, ``env``, ``optimizer``, ``scheduler``, every
  ``params`` mapping (processor, optimizer, scheduler, metric or loss parameters), a
  dataset's ``processors``, ``checkpoint.pretrained_state_mapping``, the configs of
  other registered models and datasets (unused by this run), and a model or dataset
  without a default config;
* ``model_config.<name>`` / ``dataset_config.<name>`` naming no registered model or
  dataset is refused (its settings could never apply).

After the command line is merged, a key whose default is a number must hold a number
(or null, or an ``${...}`` interpolation), and optimizer/scheduler ``params`` must not
hold words; :class:`ConfigValueError` names the key, the value and where it was set.
"""

import difflib
import os
from typing import List, Optional, Tuple

from omegaconf import OmegaConf

OPEN_TOP_LEVEL = {"includes", "env", "optimizer", "scheduler"}
# read by rc10 / mmf-refnet without a default, or set at run time (a checkpoint's saved config has them)
EXTRA_TOP_LEVEL = {"dataset", "learning_rate", "device_id", "start_rank"}
MODEL_RUNTIME_KEYS = ("model",)  # rc10's trainer adds the model's name to its section
OPEN_NAMES = {"params", "processors", "pretrained_state_mapping"}
RC10_DATASET_KEYS = ("feature_key", "image_key", "download_initially", "use_ocr", "use_ocr_info", "add_answer")
NUMERIC_PARAM_SECTIONS = ("optimizer", "scheduler")


class UnknownConfigKeyError(ValueError):
    pass


class ConfigValueError(ValueError):
    pass


def config_files(path: str) -> List[Tuple[str, dict]]:
    """``path`` and the files it includes, in rc10's merge order (includes first), as raw dicts."""
    from mmf.utils import configuration
    from mmf.utils.general import get_absolute_path

    absolute = get_absolute_path(path)
    if not os.path.exists(absolute):
        absolute = os.path.abspath(os.path.join(configuration.get_mmf_root(), path))
    loaded = OmegaConf.load(absolute)
    raw = OmegaConf.to_container(loaded, resolve=False) if loaded is not None else {}
    files = []
    for include in raw.get("includes") or []:
        candidate = os.path.join(configuration.get_mmf_root(), include)
        if not os.path.exists(candidate):
            candidate = os.path.join(os.path.dirname(absolute), include)
        files.extend(config_files(candidate))
    files.append((absolute, raw))
    return files


class Selection:
    """The run's model and datasets, their default configs and the registered names."""

    def __init__(self, opts, user_config):
        from mmf.common.registry import registry

        user_config = user_config or {}
        self.model = opts.get("model") or user_config.get("model")
        named = opts.get("datasets") or opts.get("dataset") or user_config.get("datasets") or user_config.get("dataset")
        self.datasets = [named] if isinstance(named, str) else list(named or [])
        self.datasets = [name.strip() for entry in self.datasets for name in str(entry).split(",") if name.strip()]
        self.model_class = registry.get_model_class(self.model) if self.model else None
        self.builders = {name: registry.get_builder_class(name) for name in self.datasets}

    @staticmethod
    def registered(kind: str) -> set:
        from mmf.common.registry import registry

        return set(registry.mapping[f"{kind}_name_mapping"])

    def default_paths(self) -> List[str]:
        from mmf.utils import configuration

        classes = [self.model_class, *self.builders.values()]
        paths = [path for path in (getattr(cls, "config_path", lambda: None)() for cls in classes if cls) if path]
        return [path if os.path.isabs(path) else os.path.join(configuration.get_mmf_root(), path) for path in paths]


def known_keys(default_config, selection: Selection) -> dict:
    """The defaults this run merges the user's config onto (base, model, datasets)."""
    from mmf.utils.configuration import load_yaml

    merged = OmegaConf.merge(default_config, *[load_yaml(path) for path in selection.default_paths()])
    known = OmegaConf.to_container(merged, resolve=False)
    model_section = known.get("model_config", {}).get(selection.model)
    if isinstance(model_section, dict):
        model_section.update({key: model_section.get(key) for key in MODEL_RUNTIME_KEYS})
    for name in selection.datasets:
        section = known.get("dataset_config", {}).get(name)
        if isinstance(section, dict):
            section.update({key: section.get(key) for key in RC10_DATASET_KEYS})
    return known


def _nearest(key: str, candidates) -> str:
    candidates = sorted(str(c) for c in candidates)
    near = difflib.get_close_matches(str(key), candidates, n=3, cutoff=0.6)
    if near:
        return f"did you mean: {', '.join(near)}?"
    shown = ", ".join(candidates[:15]) + (", ..." if len(candidates) > 15 else "")
    return f"known keys here: {shown}" if candidates else "this section takes no keys"


def _walk(raw: dict, known: dict, path: str) -> List[Tuple[str, str]]:
    problems = []
    for key, value in raw.items():
        full = f"{path}.{key}" if path else str(key)
        if key in OPEN_NAMES:
            continue
        if key not in known:
            problems.append((full, _nearest(key, known)))
        elif isinstance(value, dict) and isinstance(known[key], dict):
            problems.extend(_walk(value, known[key], full))
    return problems


def _named_sections(raw, known: dict, section: str, selected, kind: str) -> List[Tuple[str, str]]:
    """``model_config`` / ``dataset_config``: the run's entries are closed, other registered ones open."""
    problems = []
    registered = None
    for name, value in (raw or {}).items():
        full = f"{section}.{name}"
        if name in selected:
            if isinstance(value, dict) and isinstance(known.get(name), dict):
                problems.extend(_walk(value, known[name], full))
            continue
        if registered is None:
            from mmf.utils.env import setup_imports

            setup_imports()  # every rc10 model and dataset is registered before names are judged
            registered = Selection.registered(kind)
        if name not in registered:
            problems.append((full, f"no {kind} named '{name}' is registered; {_nearest(name, registered | set(selected))}"))
    return problems


def unknown_keys(raw: dict, known: dict, selection: Selection) -> List[Tuple[str, str]]:
    problems = []
    for key, value in raw.items():
        if key in OPEN_TOP_LEVEL or key in EXTRA_TOP_LEVEL:
            continue
        if key == "model_config":
            problems.extend(_named_sections(value, known.get(key, {}), key, {selection.model}, "model"))
        elif key == "dataset_config":
            problems.extend(_named_sections(value, known.get(key, {}), key, set(selection.datasets), "builder"))
        elif key not in known:
            problems.append((str(key), _nearest(key, set(known) | OPEN_TOP_LEVEL | EXTRA_TOP_LEVEL)))
        elif isinstance(value, dict) and isinstance(known[key], dict):
            problems.extend(_walk(value, known[key], str(key)))
    return problems


def check_files(files, known: dict, selection: Selection) -> None:
    problems = [f"{path}: {key} ({hint})" for path, raw in files for key, hint in unknown_keys(raw, known, selection)]
    if not problems:
        return
    defaults = ", ".join(selection.default_paths())
    raise UnknownConfigKeyError(
        "unknown key(s) in the config file(s); rc10 would ignore them and train with the defaults:\n  "
        + "\n  ".join(problems)
        + f"\nmodel_config.{selection.model} and dataset_config.<dataset> take only the keys of their default "
        f"configs ({defaults}); open sections: includes, env, optimizer, scheduler, any 'params', a dataset's "
        "'processors', checkpoint.pretrained_state_mapping, other registered models' and datasets' configs.")


# --------------------------------------------------------------------------- numbers


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _acceptable(value, default) -> bool:
    if value is None or (isinstance(value, str) and "${" in value):
        return True
    return _is_number(value) if _is_number(default) else not isinstance(value, str)


def _wrong_values(value, default, path: str) -> List[Tuple[str, object, object]]:
    """(key path, value, default) for numeric keys holding a non-number (or words in optimizer params)."""
    if isinstance(default, dict) and isinstance(value, dict):
        if path.split(".")[-1] == "params" and path.split(".")[0] in NUMERIC_PARAM_SECTIONS:
            return [(f"{path}.{k}", v, None) for k, v in value.items() if not _acceptable(v, None)]
        return [bad for key in value if key in default
                for bad in _wrong_values(value[key], default.get(key, {}), f"{path}.{key}" if path else str(key))]
    if _is_number(default) and not _acceptable(value, default):
        return [(path, value, default)]
    return []


def _source(key: str, opts, files) -> str:
    dotted = [opt.split("=", 1)[0] for opt in opts or [] if "=" in opt]
    if key in dotted:
        return "on the command line"
    for path, raw in reversed(files):
        node = raw
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            return f"in {path}"
    return "in the defaults"


def check_numbers(config, known: dict, opts, files) -> None:
    merged = OmegaConf.to_container(config, resolve=False)
    for section in NUMERIC_PARAM_SECTIONS:  # open sections: only their params are judged
        known.setdefault(section, {}).setdefault("params", {})
    wrong = _wrong_values(merged, known, "")
    if not wrong:
        return
    lines = [f"{key} is {value!r} (set {_source(key, opts, files)}); expected a number"
             + (f" like its default {default!r}" if default is not None else "") for key, value, default in wrong]
    raise ConfigValueError("config value(s) of the wrong type:\n  " + "\n  ".join(lines))


# --------------------------------------------------------------------------- wiring


def apply() -> None:
    from mmf.utils.configuration import Configuration

    original_build_other_configs = Configuration._build_other_configs
    original_merge_with_dotlist = Configuration._merge_with_dotlist

    def _build_other_configs(self):
        other_configs = original_build_other_configs(self)
        selection = Selection(self._opts_config, self._user_config)
        self._refnet_known = known_keys(self._default_config, selection)
        path: Optional[str] = getattr(self, "config_path", None)
        self._refnet_files = config_files(path) if path else []
        check_files(self._refnet_files, self._refnet_known, selection)
        return other_configs

    def _merge_with_dotlist(self, config, opts):
        config = original_merge_with_dotlist(self, config, opts)
        if getattr(self, "_refnet_known", None) is not None:
            check_numbers(config, self._refnet_known, opts, self._refnet_files)
        return config

    Configuration._build_other_configs = _build_other_configs
    Configuration._merge_with_dotlist = _merge_with_dotlist

