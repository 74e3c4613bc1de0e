"""BERT weights for ViLBERT's text stream: ``bert_model_name`` is a Hugging Face hub name,
a local directory, or null (random init, the caller's business).

* A hub name (``bert-base-uncased``) is read from transformers' cache (``HF_HUB_CACHE``,
  by default ``$HF_HOME/hub``) and downloaded into it on first use, as MMF does; with
  ``HF_HUB_OFFLINE=1`` (or ``TRANSFORMERS_OFFLINE=1``) only caches are read: that one, then
  the cache MMF's own ViLBERT used (``<env.cache_dir>/distributed_-1``).
* A local directory holds ``config.json`` and ``model.safetensors`` (or ``pytorch_model.bin``).

The architecture always comes from the MMF model config; the checkpoint's ``config.json``
is only checked against it, so a size mismatch is an error naming the keys, not a
shape error deep inside transformers. Every failure names the config key, what was
looked for and where, and how to provide it; transformers' own traceback is not shown.
"""

import json
import logging
import os
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence

logger = logging.getLogger(__name__)

ARCHITECTURE_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "max_position_embeddings", "type_vocab_size")
TEXT_STREAM_PREFIXES = ("embeddings.", "encoder.layer.")
# parts of the text stream that BERT checkpoints lack: ViLBERT's task embeddings, VisualBERT's visual embeddings
NOT_IN_BERT = ("embeddings.task_embeddings", "embeddings.token_type_embeddings_visual",
               "embeddings.position_embeddings_visual", "embeddings.projection")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_ALTERNATIVES = ("Give a local directory with config.json and model.safetensors (or pytorch_model.bin) of a BERT "
                 "checkpoint, a Hugging Face hub name such as 'bert-base-uncased', or null to start from random "
                 "weights ({key}: null).")


class WeightsNotFound(FileNotFoundError):
    """The named weights are neither a local directory, nor cached, nor downloadable."""


class WeightsMismatch(ValueError):
    """The weights do not fit the MMF model config (sizes) or hold no BERT text stream."""


def _truthy(value: Optional[str]) -> bool:
    return str(value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def offline_variable() -> Optional[str]:
    """The environment variable that switches the hub off (None when online)."""
    return next((name for name in OFFLINE_VARIABLES if _truthy(os.environ.get(name))), None)


def hub_cache_dir() -> str:
    """transformers' cache, read from the environment now (huggingface_hub reads it once at import)."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name):
            return os.path.expanduser(os.environ[name])
    default_home = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface")
    return os.path.join(os.path.expanduser(os.environ.get("HF_HOME") or default_home), "hub")


def repo_folder(cache_dir: str, name: str) -> str:
    """Where huggingface_hub keeps a model repository in a cache (``models--org--name``)."""
    return os.path.join(cache_dir, "models--" + name.replace("/", "--"))


def looks_like_path(name: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything else was meant as a directory."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name or name.endswith("/")


@dataclass
class Source:
    """Where ``from_pretrained`` reads: a directory, or a hub name in ``cache_dir``."""

    name: str
    directory: Optional[str] = None  # local directory, or the cached snapshot of a hub name
    cache_dir: Optional[str] = None  # hub names only
    local_files_only: bool = False

    @property
    def is_hub(self) -> bool:
        return self.cache_dir is not None

    @property
    def load_from(self) -> str:
        return self.name if self.is_hub else self.directory

    def describe(self) -> str:
        if not self.is_hub:
            return self.directory
        return f"'{self.name}' (cached in {self.directory})" if self.directory else f"'{self.name}' (hub)"


def cached_snapshot(name: str, cache_dir: str) -> Optional[str]:
    """The snapshot folder of hub model ``name`` in ``cache_dir`` holding its config.json, if cached."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(name, "config.json", cache_dir=cache_dir)
    return os.path.dirname(found) if isinstance(found, str) else None


def locate(name: str, key: str, extra_cache_dirs: Sequence[str] = ()) -> Source:
    """Resolve ``bert_model_name`` to a directory or a (cached or downloadable) hub name."""
    expanded = os.path.expanduser(name)
    if os.path.isdir(expanded):
        return Source(name, directory=os.path.abspath(expanded))
    if looks_like_path(name):
        raise WeightsNotFound(f"{key} is {name!r}, which looks like a local directory, but "
                              f"{os.path.abspath(expanded)} does not exist. {_ALTERNATIVES.format(key=key)}")
    caches = list(dict.fromkeys([hub_cache_dir(), *extra_cache_dirs]))
    for cache_dir in caches:
        try:
            snapshot = cached_snapshot(name, cache_dir)
        except ValueError as error:  # huggingface_hub's invalid repo id
            raise WeightsNotFound(f"{key} is {name!r}: neither a local directory nor a valid Hugging Face hub "
                                  f"name ({error}). {_ALTERNATIVES.format(key=key)}") from None
        if snapshot:
            return Source(name, directory=snapshot, cache_dir=cache_dir, local_files_only=bool(offline_variable()))
    variable = offline_variable()
    if variable:
        raise WeightsNotFound(offline_message(name, key, variable, caches))
    return Source(name, cache_dir=caches[0])


def offline_message(name: str, key: str, variable: str, caches: Iterable[str]) -> str:
    first, *others = [repo_folder(cache, name) for cache in caches]
    looked = first + "".join(f", and in MMF's cache {other}" for other in others)
    return (
        f"{key} is {name!r}, a Hugging Face hub name, but {variable}={os.environ.get(variable)} (offline mode) and "
        f"it is not in the Hugging Face cache (looked for {looked}). Either\n"
        f"  - run once with network access (unset HF_HUB_OFFLINE and TRANSFORMERS_OFFLINE) so that transformers "
        f"downloads it into {hub_cache_dir()}, or copy a Hugging Face cache that has it there (HF_HOME or "
        f"HF_HUB_CACHE choose that folder), e.g. made with `huggingface-cli download {name}` on a machine "
        f"with network access;\n"
        f"  - or set {key} to a local directory with config.json and model.safetensors (or pytorch_model.bin), "
        f"e.g. from `huggingface-cli download {name} --local-dir DIR`;\n"
        f"  - or set {key}: null to start from random weights (also right when a checkpoint is loaded next, as in "
        f"mmf_predict with checkpoint.resume_file: it holds every weight)."
    )


def checkpoint_config(source: Source, key: str) -> dict:
    """The checkpoint's config.json (downloaded into the cache for an uncached hub name)."""
    if source.directory:
        path = os.path.join(source.directory, "config.json")
        if not os.path.isfile(path):
            raise WeightsNotFound(f"{key}: {source.describe()} has no config.json (not a BERT checkpoint directory). "
                                  + _ALTERNATIVES.format(key=key))
    else:
        from huggingface_hub import hf_hub_download

        try:
            path = hf_hub_download(source.name, "config.json", cache_dir=source.cache_dir)
        except Exception as error:  # network, unknown repository, gated model, ...
            raise WeightsNotFound(download_message(source, key, error)) from None
    with open(path) as handle:
        return json.load(handle)


# What huggingface_hub's errors mean for a user (the class names are stable across its versions).
DOWNLOAD_ERRORS = {
    "RepositoryNotFoundError": "the hub has no model of this name (or it is private or gated: `huggingface-cli login`)",
    "GatedRepoError": "the model is gated: accept its terms on the hub and log in with `huggingface-cli login`",
    "LocalEntryNotFoundError": "the hub could not be reached",
    "EntryNotFoundError": "the model has no such file",
}


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def download_message(source: Source, key: str, error: BaseException) -> str:
    meaning = DOWNLOAD_ERRORS.get(type(error).__name__, "download failed")
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    return (f"{key} is {source.name!r}: could not get it from the Hugging Face hub ({endpoint}) into "
            f"{source.cache_dir}: {meaning} ({_first_line(error)}). Check the name, the network and proxy "
            f"(HF_ENDPOINT names a mirror); or use a cache filled elsewhere with HF_HUB_OFFLINE=1. "
            + _ALTERNATIVES.format(key=key))


def check_architecture(model_config, checkpoint: dict, source: Source, key: str) -> None:
    """The MMF config decides the architecture; the checkpoint must have the same sizes."""
    differences = [(name, model_config.get(name), checkpoint[name]) for name in ARCHITECTURE_KEYS
                   if name in checkpoint and model_config.get(name) is not None
                   and int(model_config.get(name)) != int(checkpoint[name])]
    if not differences:
        return
    prefix = key.rsplit(".", 1)[0]
    listed = ", ".join(f"{prefix}.{name} is {ours} but the checkpoint's is {theirs}" for name, ours, theirs in differences)
    fix = " ".join(f"{prefix}.{name}={theirs}" for name, _, theirs in differences)
    vocab = (" A different vocab_size also needs the checkpoint's tokenizer "
             "(dataset_config.<dataset>.processors.text_processor.params.tokenizer_config.type)."
             if any(name == "vocab_size" for name, _, _ in differences) else "")
    raise WeightsMismatch(f"{key}: the weights {source.describe()} do not fit the model config: {listed}. The architecture comes "
                          f"from the MMF config; set {fix} (or choose weights of this size).{vocab}")


def missing_text_stream(missing_keys: Iterable[str]) -> List[str]:
    return [name for name in missing_keys if name.startswith(TEXT_STREAM_PREFIXES) and not name.startswith(NOT_IN_BERT)]


def _quietly(function, *args, **kwargs):
    """Call ``function`` with transformers' loading report (a long list of new keys) silenced."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return function(*args, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)


def load_message(source: Source, key: str, error: BaseException) -> str:
    found = [name for name in WEIGHT_FILES if source.directory and os.path.isfile(os.path.join(source.directory, name))]
    files = ", ".join(found) if found else "no " + " / ".join(WEIGHT_FILES[:2])
    return (f"{key}: could not load weights from {source.describe()} (weight files there: {files}): "
            f"{_first_line(error)}. " + _ALTERNATIVES.format(key=key))


def mmf_weights_cache() -> str:
    """Where MMF's ViLBERT has transformers cache BERT weights (``<env.cache_dir>/distributed_-1``)."""
    from mmf.utils.configuration import get_mmf_cache_dir

    return os.path.join(get_mmf_cache_dir(), "distributed_-1")


def from_pretrained(cls, name: str, bert_config, key: str, extra_cache_dirs: Optional[Sequence[str]] = None, **kwargs):
    """``cls.from_pretrained`` (transformers' own, not a shim) for a hub name or a directory, with clear errors.

    Returns ``(model, loading_info)``. Only the text stream comes from the checkpoint;
    every one of its tensors must be there.
    """
    from transformers import PreTrainedModel

    if extra_cache_dirs is None:
        extra_cache_dirs = [mmf_weights_cache()]
    source = locate(str(name), key, extra_cache_dirs)
    check_architecture(bert_config.to_dict(), checkpoint_config(source, key), source, key)
    if source.is_hub:
        kwargs.update(cache_dir=source.cache_dir, local_files_only=source.local_files_only)
    try:
        model, info = _quietly(PreTrainedModel.from_pretrained.__func__, cls, source.load_from, config=bert_config,
                               output_loading_info=True, **kwargs)
    except (OSError, ValueError) as error:
        if source.is_hub and not source.local_files_only and not source.directory:
            raise WeightsNotFound(download_message(source, key, error)) from None
        raise WeightsNotFound(load_message(source, key, error)) from None
    missing = missing_text_stream(info["missing_keys"])
    if missing:
        raise WeightsMismatch(f"{key}: in {source.describe()}, {len(missing)} tensors of ViLBERT's text stream are not in "
                              f"the checkpoint (e.g. {missing[0]}), so they would start random. Give a BERT checkpoint "
                              f"(model_type 'bert', keys embeddings.* and encoder.layer.*).")
    logger.info("%s: text stream loaded from %s; %d tensors (the parts BERT lacks) start random", cls.__name__,
                source.describe(), len(info["missing_keys"]))
    return model, info


# --- tokenizers -------------------------------------------------------------------------------

# Hub tokenizers whose files ship in an installed package (assets.py): the same vocabulary.
PACKAGED_TOKENIZERS = {"bert-base-uncased": "bert_uncased_tokenizer"}
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
_reported = set()


def cached_tokenizer(name: str, cache_dir: str) -> Optional[str]:
    """The snapshot folder of hub tokenizer ``name`` in ``cache_dir``, if one of its files is cached."""
    from huggingface_hub import try_to_load_from_cache

    for filename in TOKENIZER_FILES:
        found = try_to_load_from_cache(name, filename, cache_dir=cache_dir)
        if isinstance(found, str):
            return os.path.dirname(found)
    return None


def tokenizer_source(name: str) -> str:
    """``${refnet_tokenizer:NAME}``: what the ``bert_tokenizer`` processor should load for tokenizer NAME.

    A directory as given; a hub name from the Hugging Face cache when it is there, else
    from the installed package that ships the same files (``bert-base-uncased``: the
    MiniLM-L6 package's vocab.txt is bert-base-uncased's 30522-token vocabulary), else
    the hub name itself (transformers downloads it); offline with none of these, an error.
    """
    name = str(name)
    if os.path.isdir(os.path.expanduser(name)) or looks_like_path(name):
        return name
    cache_dir = hub_cache_dir()
    snapshot = cached_tokenizer(name, cache_dir)
    if snapshot:
        return snapshot
    packaged = _packaged_tokenizer(name)
    if packaged:
        return packaged
    variable = offline_variable()
    if variable:
        raise WeightsNotFound(
            f"${{refnet_tokenizer:{name}}} (the text processor's tokenizer_config.type): the tokenizer {name!r} is not "
            f"in the Hugging Face cache (looked for {repo_folder(cache_dir, name)}) and {variable}="
            f"{os.environ.get(variable)} (offline mode). Run once with network access (unset HF_HUB_OFFLINE and "
            f"TRANSFORMERS_OFFLINE), or set dataset_config.<dataset>.processors.text_processor.params."
            f"tokenizer_config.type to a local directory with the tokenizer's vocab.txt (the directory of your "
            f"BERT weights usually has it).")
    return name


def _packaged_tokenizer(name: str) -> Optional[str]:
    from mmf_refnet import assets

    if name not in PACKAGED_TOKENIZERS:
        return None
    try:
        path = assets.asset_path(PACKAGED_TOKENIZERS[name])
    except assets.MissingAsset:
        return None
    if name not in _reported:
        _reported.add(name)
        logger.info("tokenizer %s: not in the Hugging Face cache; using the same vocabulary from %s", name, path)
    return path
