"""The refiner's self-supervised loss (paper Eq. 3): γ_i · mean_batch(1 − cos(R_i, H_i(F_i)))."""

from typing import Dict

import torch
import torch.nn.functional as F


def refiner_distances(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(M, B) cosine distances 1 − cos(R_i, H_i(F_i)) of stacked (M, B, D) outputs and targets.

    All modalities in one cosine call: the head's cost on a GPU is kernel launches,
    and one batched call launches half the kernels of one call per modality.
    Computed in float32 (bf16 outputs under autocast).
    """
    if outputs.shape != targets.shape:
        raise ValueError(f"refiner outputs {tuple(outputs.shape)} and targets {tuple(targets.shape)} "
                         "need one shape (modalities, batch, dim)")
    return 1.0 - F.cosine_similarity(outputs.float(), targets.float(), dim=-1, eps=1e-8)


def refiner_terms(outputs: torch.Tensor, targets: torch.Tensor, weights: Dict[str, float]) -> Dict[str, torch.Tensor]:
    """γ_i · mean_batch(1 − cos) for each modality, each of shape (1,); ``weights`` keyed by the
    M stacked modalities, in their order."""
    if len(weights) != outputs.size(0):
        raise ValueError(f"refiner_terms got {outputs.size(0)} stacked modalities but weights for {list(weights)}")
    per_modality = refiner_distances(outputs, targets).mean(dim=-1).unbind(0)
    return {m: (float(gamma) * term).view(1) for (m, gamma), term in zip(weights.items(), per_modality)}
