"""rc10's ``download_pretrained_model`` (``checkpoint.resume_zoo=<key>``,
``from_pretrained``) does not check that the key is in the model zoo: a typo such as
``vilbert.pretrained.cc.smal`` fails with ``TypeError: argument of type 'NoneType'
is not iterable``. Here an unknown key raises a KeyError naming the key, the zoo file
and the keys the zoo has for that model."""

MODULES = ("mmf.utils.download", "mmf.utils.checkpoint", "mmf.models.base_model")


def zoo_keys(node, prefix: str = ""):
    """Every loadable key of a zoo (a node with ``resources``, or a ``defaults`` alias)."""
    if not isinstance(node, dict):
        return []
    if "resources" in node:
        return [prefix]
    keys = []
    for name, child in node.items():
        key = f"{prefix}.{name}" if prefix else name
        keys += [key] if name == "defaults" else zoo_keys(child, key)
    return keys


def check_key(model_name: str) -> None:
    import os

    from mmf.utils.configuration import get_mmf_env, load_yaml
    from omegaconf import OmegaConf

    if os.path.exists(model_name):  # rc10 also takes a local folder
        return
    path = get_mmf_env(key="model_zoo")
    zoo = load_yaml(path)
    if OmegaConf.select(zoo, model_name) is None:
        known = zoo_keys(OmegaConf.to_container(zoo), "")
        same_model = [key for key in known if key.split(".")[0] == model_name.split(".")[0]] or known
        raise KeyError(
            f"'{model_name}' is not in the model zoo {path} (env.model_zoo); it has: {', '.join(same_model)}"
        )


def apply() -> None:
    import importlib

    from mmf.utils import download

    original = download.download_pretrained_model
    if getattr(original, "checks_key", False):
        return

    def download_pretrained_model(model_name, *args, **kwargs):
        check_key(model_name)
        return original(model_name, *args, **kwargs)

    download_pretrained_model.checks_key = True
    for name in MODULES:  # each imported the function by name
        module = importlib.import_module(name)
        if getattr(module, "download_pretrained_model", None) is original:
            module.download_pretrained_model = download_pretrained_model
