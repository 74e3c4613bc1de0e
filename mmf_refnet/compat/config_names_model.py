"""rc10's Configuration reads ``model`` and ``dataset(s)`` only from the command
line (``_build_model_config(opts_config)``), so a config file that names its model
and dataset still fails with ``Required argument 'model' not passed``. Here the
values named in the ``config=`` file are used when the command line gives none;
command-line values still win.

rc10 also calls ``OmegaConf.clear_resolvers()`` whenever it builds a
Configuration; the legacy ``env`` resolver and mmf-refnet's ``refnet_asset``
resolver are registered again right after."""

import warnings

from omegaconf import open_dict


def _fill_from_user_config(opts, user_config) -> None:
    if not user_config:
        return
    with open_dict(opts):
        if opts.get("model") is None and user_config.get("model"):
            opts.model = user_config.get("model")
        named = user_config.get("dataset") or user_config.get("datasets")
        if opts.get("dataset") is None and opts.get("datasets") is None and named:
            opts.dataset = named if isinstance(named, str) else ",".join(named)


def apply() -> None:
    from mmf.utils.configuration import Configuration

    from mmf_refnet import assets

    from . import omegaconf_legacy

    original_build_user_config = Configuration._build_user_config
    original_register_resolvers = Configuration._register_resolvers

    def _build_user_config(self, opts):
        user_config = original_build_user_config(self, opts)
        _fill_from_user_config(opts, user_config)
        if user_config and "dataset" in user_config:
            with open_dict(user_config):  # rc10 only knows the plural key
                user_config.datasets = user_config.pop("dataset")
        return user_config

    def _register_resolvers(self):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="register_resolver", category=UserWarning)
            original_register_resolvers(self)
        omegaconf_legacy.register_env_resolver()
        assets.register_resolver()

    Configuration._build_user_config = _build_user_config
    Configuration._register_resolvers = _register_resolvers
