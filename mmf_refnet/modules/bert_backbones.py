"""Helpers for building and running the BERT-based backbones of ReFNet models."""

from typing import Optional

import torch
from omegaconf import OmegaConf
from transformers.models.bert.configuration_bert import BertConfig


def bert_config(config) -> BertConfig:
    """transformers' BertConfig from a model config (every key passes through, as rc10's models do)."""
    return BertConfig.from_dict(OmegaConf.to_container(config, resolve=True))


def pretrained_or_random(cls, config, key: str, **kwargs):
    """``cls`` (a transformers model class) from ``config.bert_model_name``: random init for
    null, else BERT weights from a Hugging Face hub name or a local directory
    (``modules/pretrained``: cache lookup, size checks, clear errors; layers BERT lacks start random).

    ``key`` names the model config in errors (``model_config.<key>.bert_model_name``).
    """
    settings = bert_config(config)
    if config.bert_model_name is None:
        return cls(settings, **kwargs)
    from mmf_refnet.modules import pretrained

    name = f"model_config.{key}.bert_model_name"
    return pretrained.from_pretrained(cls, config.bert_model_name, settings, name, **kwargs)[0]


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, L) 1/0 mask → BERT's (B, 1, 1, L) additive attention mask (0 or −10000)."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * -10000.0


def masked_mean(states: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Mean of (B, L, D) ``states`` over the positions where ``mask`` (B, L) is set (all when None)."""
    if mask is None:
        return states.mean(dim=1)
    weights = mask.to(states.dtype).unsqueeze(-1)
    return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def region_mask(features: torch.Tensor, image_info) -> torch.Tensor:
    """(B, N) long mask of the valid regions (``image_info_0.max_features``; all when absent)."""
    from mmf_refnet.modules.vilbert_inputs import image_attention_mask

    valid = image_info.get("max_features") if image_info is not None and hasattr(image_info, "get") else None
    mask = image_attention_mask(features, valid)
    return features.new_ones(features.shape[:2], dtype=torch.long) if mask is None else mask
