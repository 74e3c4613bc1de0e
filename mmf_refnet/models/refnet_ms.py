"""``refnet_ms``: ``refnet`` + ζ · Multi-Similarity loss on the fused embeddings (paper §4.1)."""

import os

from mmf.common.registry import registry

from mmf_refnet.models.refnet import CONFIG_DIR, ReFNet


@registry.register_model("refnet_ms")
class ReFNetMS(ReFNet):
    """Same network as ``refnet``; its default config turns the MS loss on."""

    @classmethod
    def config_path(cls):
        return os.path.join(CONFIG_DIR, "refnet.yaml")
