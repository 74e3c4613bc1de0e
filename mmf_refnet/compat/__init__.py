"""Runtime shims that let PyPI ``mmf==1.0.0rc10`` (2020) run on a modern stack.

Every module here fixes exactly one rc10 problem and exposes ``apply()``.
``apply_pre()`` must run before the first ``import mmf`` (the problems are
import-time failures); ``apply_post()`` runs right after ``import mmf`` and
before a Configuration, model or trainer is built. Both are idempotent.

Nothing outside this package patches MMF. A shim can be switched off for
debugging with ``MMF_REFNET_SKIP_SHIMS=name1,name2`` (module names below).
"""

import importlib
import os

PRE_IMPORT = (
    "collections_abc",
    "omegaconf_legacy",
    "torchvision_stub",
    "demjson_alias",
    "transformers_layout",
)
POST_IMPORT = (
    "default_configs",
    "config_names_model",
    "config_file_keys",
    "unknown_model",
    "logger_isatty",
    "transformers_post_init",
    "from_pretrained_none",
    "pretrained_weights",
    "vilbert_device",
    "fused_attention",
    "anomaly_detection",
    "seed_zero",
    "pretrained_report",  # before pretrained_upgrade: the report sees the upgraded checkpoint
    "pretrained_upgrade",
    "lmdb_shared_env",
    "distributed_cpu",
    "data_parallel_refused",  # after distributed_cpu: wraps its parallelize_model
    "distributed_eval",
    "distributed_checks",
    "zoo_download",
    "zoo_model_key",
    "zoo_when_missing",
    "hm_convert",
    "dataset_paths",
    "annotation_lines",
    "feature_errors",
    "console_log",
    "checkpoint_atomic",
    "checkpoint_read_errors",
    "checkpoint_key_match",
    "resume_source",
    "best_restore",
    "save_dir_lock",
)

_applied: set = set()


def skipped_shims() -> set:
    """Names listed in MMF_REFNET_SKIP_SHIMS (for proving a shim is needed)."""
    raw = os.environ.get("MMF_REFNET_SKIP_SHIMS", "")
    return {name.strip() for name in raw.split(",") if name.strip()}


def _apply(names) -> None:
    skip = skipped_shims()
    for name in names:
        if name in _applied or name in skip:
            continue
        importlib.import_module(f"{__name__}.{name}").apply()
        _applied.add(name)


def apply_pre() -> None:
    """Shims that must be in place before ``import mmf``."""
    _apply(PRE_IMPORT)


def apply_post() -> None:
    """Shims that patch MMF objects; call after ``import mmf`` succeeded."""
    _apply(POST_IMPORT)


def applied() -> frozenset:
    return frozenset(_applied)
