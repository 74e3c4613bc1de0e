"""rc10's ViLBERT (``mmf.models.vilbert``) loads ``bert_model_name`` with
``ViLBERTBase.from_pretrained(name, config=..., cache_dir=<env.cache_dir>/distributed_-1)``:
with ``HF_HUB_OFFLINE=1`` and nothing cached it fails deep inside transformers
(``OSError: We couldn't connect to 'https://huggingface.co' ...`` or, with older
transformers, ``'NoneType' object has no attribute 'endswith'``), and the weights live
in a cache of MMF's own, not in the Hugging Face cache that its tokenizer uses. A
name now goes through ``mmf_refnet.modules.pretrained`` (as refnet's backbone does):
the Hugging Face cache first, then MMF's, an error naming ``HF_HUB_OFFLINE``, the
cache path and the local-directory alternative, and a size check against the config."""

MARK = "_refnet_pretrained_weights"


def _config_key() -> str:
    from mmf.common.registry import registry

    config = registry.get("config", no_warning=True)
    model = config.get("model") if config is not None else None
    return f"model_config.{model or '<model>'}.bert_model_name"


def _through_plugin(original):
    def from_pretrained(cls, name, *args, config=None, cache_dir=None, **kwargs):
        if name is None or args or config is None:
            return original.__func__(cls, name, *args, config=config, cache_dir=cache_dir, **kwargs)
        from mmf_refnet.modules import pretrained

        wants_info = kwargs.pop("output_loading_info", False)
        extra = [cache_dir] if cache_dir else []
        model, info = pretrained.from_pretrained(cls, str(name), config, _config_key(), extra, **kwargs)
        return (model, info) if wants_info else model

    setattr(from_pretrained, MARK, True)
    return classmethod(from_pretrained)


def apply() -> None:
    from mmf.models.vilbert import ViLBERTBase

    if not getattr(ViLBERTBase.from_pretrained, MARK, False):
        ViLBERTBase.from_pretrained = _through_plugin(ViLBERTBase.from_pretrained)
