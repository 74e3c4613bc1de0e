"""``refnet_ms``: ``refnet`` + ζ · Multi-Similarity loss on the fused embeddings (paper §4.1)."""

from mmf.common.registry import registry

from mmf_refnet.models.refnet import ReFNet


@registry.register_model("refnet_ms")
class ReFNetMS(ReFNet):
    """Same network as ``refnet``; its default config turns the MS loss on (``ms_loss.weight``)."""

    CONFIG = "refnet_ms.yaml"
