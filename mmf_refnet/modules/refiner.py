"""The refiner (paper Eq. 2–3): decoders D_i that map the fused embedding back to
each modality's pre-fusion representation, and the maps H_i into refiner space.

All parts are registered submodules/buffers (``nn.ModuleDict``), so they train,
are checkpointed, move with ``.to()`` and follow ``.eval()`` — unlike upstream
MMF's refiner head, which kept its decoders in a plain dict.
"""

from typing import Dict

import torch
from torch import nn

TARGET_MAPS = ("identity", "fixed_random")


class Decoder(nn.Sequential):
    """D_i: an MLP with one hidden layer, fused embedding → refiner space."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, dropout: float):
        super().__init__(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, out_dim))


class FixedRandomProjection(nn.Module):
    """H_i into a smaller refiner space: a fixed (not trained) random map with
    orthonormal rows, which preserves angles approximately.

    It is deliberately not learned: a learned H_i can make every target the same
    vector and the cosine loss trivially 0. Stored as a buffer, so it is saved
    in checkpoints and identical after reload.
    """

    def __init__(self, in_dim: int, out_dim: int, seed: int):
        super().__init__()
        if out_dim > in_dim:
            raise ValueError(f"refiner.dim ({out_dim}) must not exceed the feature size ({in_dim}) for fixed_random")
        generator = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(in_dim, out_dim, generator=generator))
        self.register_buffer("weight", q.t().contiguous())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features @ self.weight.t().to(features.dtype)


class Refiner(nn.Module):
    """Decoders and target maps for a set of modalities with given feature sizes."""

    def __init__(self, fused_dim: int, feature_dims: Dict[str, int], hidden_dim: int, target_map: str = "identity",
                 refiner_dim=None, dropout: float = 0.1, detach_targets: bool = True, seed: int = 0):
        super().__init__()
        if target_map not in TARGET_MAPS:
            raise ValueError(f"refiner.target_map must be one of {TARGET_MAPS}, got {target_map!r}")
        self.detach_targets = bool(detach_targets)
        self.target_maps = nn.ModuleDict()
        self.decoders = nn.ModuleDict()
        for index, (modality, feature_dim) in enumerate(feature_dims.items()):
            if target_map == "identity":
                self.target_maps[modality] = nn.Identity()
                out_dim = feature_dim
            else:
                out_dim = int(refiner_dim or feature_dim)
                self.target_maps[modality] = FixedRandomProjection(feature_dim, out_dim, seed + index)
            self.decoders[modality] = Decoder(fused_dim, hidden_dim, out_dim, dropout)
        sizes = {modality: decoder[-1].out_features for modality, decoder in self.decoders.items()}
        if len(set(sizes.values())) > 1:  # the modalities are stacked for one batched loss
            raise ValueError(f"the refiner decodes every modality to one size, got {sizes}; "
                             "use refiner.target_map: fixed_random with refiner.dim to project them to one size")

    @property
    def modalities(self):
        return list(self.decoders)

    def forward(self, fused: torch.Tensor, features: Dict[str, torch.Tensor]):
        """(R, H(F)): the decoded and target features of every modality, stacked
        as (M, B, D) in the order of ``modalities`` (one batched loss; see losses.refiner_losses)."""
        outputs, targets = [], []
        for modality, decoder in self.decoders.items():
            feature = features[modality].detach() if self.detach_targets else features[modality]
            outputs.append(decoder(fused))
            targets.append(self.target_maps[modality](feature))
        return torch.stack(outputs), torch.stack(targets)
