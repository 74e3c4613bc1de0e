"""Device-side preparation of ViLBERT's inputs from an MMF SampleList.

rc10's ViLBERT builds the 5-d image locations and ``cls_prob`` in numpy and moves
them with ``.cuda()``. These helpers do the same arithmetic in torch on the
batch's device, accept both rc10's per-sample ``bbox`` lists and newer MMF's
ready ``(B, N, 5)`` tensors, and touch ``cls_prob`` only when asked.
"""

from typing import Optional

import numpy as np
import torch


def _as_batch_tensor(values, device, dtype=torch.float32) -> torch.Tensor:
    """A collated field (tensor, list of arrays/tensors, or list of numbers) as one tensor."""
    if isinstance(values, torch.Tensor):
        return values.to(device=device, dtype=dtype, non_blocking=True)
    if isinstance(values, (list, tuple)) and values and isinstance(values[0], torch.Tensor):
        return torch.stack([v.to(dtype) for v in values]).to(device, non_blocking=True)
    return torch.as_tensor(np.asarray(values, dtype=np.float32), dtype=dtype).to(device, non_blocking=True)


def image_locations(image_info, device) -> torch.Tensor:
    """(B, N, 5) normalized ``x1, y1, x2, y2, area`` from boxes in pixels.

    Newer MMF delivers the 5-d locations already (``transformer_bbox``); those
    pass through unchanged.
    """
    bbox = _as_batch_tensor(image_info["bbox"], device)
    if bbox.size(-1) == 5:
        return bbox
    width = _as_batch_tensor(image_info["image_width"], device).reshape(-1, 1)
    height = _as_batch_tensor(image_info["image_height"], device).reshape(-1, 1)
    x1, y1, x2, y2 = bbox.unbind(-1)
    area = (y2 - y1) * (x2 - x1) / (width * height)
    return torch.stack((x1 / width, y1 / height, x2 / width, y2 / height, area), dim=-1)


def image_attention_mask(image_feature: torch.Tensor, num_valid: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """(B, N) long mask: 1 for the first ``num_valid`` regions of each sample."""
    if num_valid is None:
        return None
    positions = torch.arange(image_feature.size(-2), device=image_feature.device)
    num_valid = num_valid.to(image_feature.device).reshape(-1, 1)
    return (positions.unsqueeze(0) < num_valid).long()


def _field(obj, key, default=None):
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


# Host-side work (rc10's per-sample box arrays → one tensor) stays out of torch.compile's graph:
# a graph with host inputs is not captured as a CUDA graph (compile mode reduce-overhead).
@torch.compiler.disable
def image_inputs(container, device, with_cls_prob: bool = False) -> dict:
    """Image features, locations, mask (and optionally ``cls_prob``) of one image slot."""
    info = _field(container, "image_info_0", {})
    feature = _field(container, "image_feature_0")
    if feature is None:
        raise KeyError(
            "ViLBERT needs 'image_feature_0' in the batch; set use_features: true and "
            "return_features_info: true in the dataset config"
        )
    if _field(info, "bbox") is None:
        raise KeyError(
            "ViLBERT needs 'image_info_0.bbox' (and image_width/image_height) in the batch; "
            "set return_features_info: true and write boxes in the feature info files"
        )
    inputs = {
        "image_feature": feature,
        "image_location": image_locations(info, device),
        "image_attention_mask": image_attention_mask(feature, _field(info, "max_features")),
        "image_target": None,
    }
    if with_cls_prob and _field(info, "cls_prob") is not None:
        inputs["image_target"] = _as_batch_tensor(info["cls_prob"], device)
    return inputs


def text_inputs(sample_list) -> dict:
    return {
        "input_ids": sample_list.input_ids,
        "attention_mask": sample_list.input_mask,
        "token_type_ids": sample_list.segment_ids,
    }
