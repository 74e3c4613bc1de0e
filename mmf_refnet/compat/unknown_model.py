"""For an unknown ``model=`` rc10 only *warns* (``No model named 'x' has been
registered``) and fails much later with an unrelated error. Here the
Configuration raises at once with MMF's message plus the refnet models and all
registered model names."""

REFNET_MODELS = ("refnet", "refnet_ms")


def unknown_model_message(name: str) -> str:
    from mmf.common.registry import registry

    known = sorted(registry.mapping["model_name_mapping"])
    refnet = [m for m in known if m in REFNET_MODELS or m.startswith("refnet")]
    return (
        f"No model named '{name}' has been registered. "
        f"ReFNet models: {', '.join(refnet) or 'none (is mmf_refnet installed?)'}. "
        f"All registered models: {', '.join(known)}."
    )


def apply() -> None:
    from mmf.common.registry import registry
    from mmf.utils.configuration import Configuration

    original = Configuration._build_model_config

    def _build_model_config(self, config):
        name = config.get("model")
        if name is not None and registry.get_model_class(name) is None:
            from mmf.utils.env import setup_imports

            setup_imports()  # mmf_run imports all MMF models before this point
            if registry.get_model_class(name) is None:
                raise KeyError(unknown_model_message(name))
        return original(self, config)

    Configuration._build_model_config = _build_model_config
