"""``refnet_ms``: ``refnet`` + ζ · Multi-Similarity loss on the fused embeddings (paper §4.1)."""

import os

from mmf.common.registry import registry

from mmf_refnet.models.base import CONFIG_DIR
from mmf_refnet.models.refnet import ReFNet


@registry.register_model("refnet_ms")
class ReFNetMS(ReFNet):
    """Same network as ``refnet``; its default config turns the MS loss on (``ms_loss.weight``)."""

    @classmethod
    def config_path(cls):
        return os.path.join(CONFIG_DIR, "refnet_ms.yaml")
