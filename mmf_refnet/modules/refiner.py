"""The refiner (paper Eq. 2–3): decoders D_i that map the fused embedding back to
each modality's pre-fusion representation, and the maps H_i into refiner space.

All parts are registered submodules/buffers, so they train, are checkpointed,
move with ``.to()`` and follow ``.eval()`` — unlike upstream MMF's refiner head,
which kept its decoders in a plain dict.
"""

import math
from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

TARGET_MAPS = ("identity", "fixed_random")


class StackedLinear(nn.Module):
    """``count`` independent linear layers: (count, B, in) → (count, B, out) in one
    batched matmul. Weights are stored as (count, in, out), the layout their
    gradient comes in (stored as nn.Linear's (out, in), every step would copy it)."""

    def __init__(self, count: int, in_features: int, out_features: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(count, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(count, out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.Linear's initialisation: U(±1/√in) for weights and biases."""
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, stacked: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias.unsqueeze(1), stacked, self.weight)


class Decoders(nn.Module):
    """D_i for every modality: an MLP with one hidden layer, fused embedding →
    refiner space, all modalities computed together: (B, k) → (M, B, d).

    The function and initial distribution of one ``Linear → GELU → Dropout →
    Linear`` per modality, in fewer kernel launches (the head's cost on a
    host-bound GPU). Checkpoints of that per-modality layout
    (``decoders.<modality>.0.weight``, …) load into this one.
    """

    def __init__(self, modalities, in_dim: int, hidden_dim: int, out_dim: int, dropout: float):
        super().__init__()
        self.modalities = tuple(modalities)
        self.hidden = StackedLinear(len(self.modalities), in_dim, hidden_dim)
        self.dropout = nn.Dropout(dropout)
        self.output = StackedLinear(len(self.modalities), hidden_dim, out_dim)

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        stacked = fused.unsqueeze(0).expand(len(self.modalities), -1, -1)
        return self.output(self.dropout(F.gelu(self.hidden(stacked))))

    def decoder(self, modality: str) -> nn.Module:
        """D_modality alone, (B, k) → (B, d), sharing these parameters (for analysis, e.g. Jacobians)."""
        return _ModalityDecoder(self, self.modalities.index(modality))

    def upgrade_state_dict(self, state_dict) -> None:
        """Per-modality decoder keys of a whole checkpoint (any prefix, e.g. DDP's ``module.``) → stacked, in place."""
        first = f"decoders.{self.modalities[0]}.0.weight"
        for key in [key for key in state_dict if key.endswith(first)]:
            _stack_per_modality_keys(state_dict, key[: -len(first)] + "decoders.", self.modalities)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        _stack_per_modality_keys(state_dict, prefix, self.modalities)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class _ModalityDecoder(nn.Module):
    """One modality's slice of ``Decoders`` as its own module: (B, k) → (B, d)."""

    def __init__(self, decoders: Decoders, index: int):
        super().__init__()
        self.decoders, self.index = decoders, index

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        return self.decoders(fused)[self.index]  # all modalities computed: for analysis, not training


# per-modality layout (nn.Sequential: 0 = first Linear, 3 = second) → stacked layer
_PER_MODALITY_LAYERS = {"0": "hidden", "3": "output"}


def _stack_per_modality_keys(state_dict, prefix: str, modalities) -> None:
    """Rewrite ``<prefix><modality>.{0,3}.{weight,bias}`` (nn.Linear layout) into the stacked keys, in place."""
    for index, layer in _PER_MODALITY_LAYERS.items():
        for name in ("weight", "bias"):
            old = [f"{prefix}{modality}.{index}.{name}" for modality in modalities]
            if all(key in state_dict for key in old):
                tensors = [state_dict.pop(key) for key in old]
                state_dict[f"{prefix}{layer}.{name}"] = torch.stack([t.t() if name == "weight" else t for t in tensors])


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
        sizes = {}
        smallest = min(feature_dims.values())  # fixed_random's default refiner space: fits every modality
        for index, (modality, feature_dim) in enumerate(feature_dims.items()):
            if target_map == "identity":
                self.target_maps[modality] = nn.Identity()
                sizes[modality] = feature_dim
            else:
                sizes[modality] = int(refiner_dim or smallest)
                self.target_maps[modality] = FixedRandomProjection(feature_dim, sizes[modality], seed + index)
        if len(set(sizes.values())) > 1:  # the modalities are decoded together, to one size
            raise ValueError(f"the refiner decodes every modality to one size, got {sizes}; "
                             "use refiner.target_map: fixed_random with refiner.dim to project them to one size")
        self.decoders = Decoders(sizes, fused_dim, hidden_dim, next(iter(sizes.values())), dropout)

    @property
    def modalities(self):
        return list(self.decoders.modalities)

    def forward(self, fused: torch.Tensor, features: Dict[str, torch.Tensor]):
        """(R, H(F)): the decoded and target features of every modality, stacked
        as (M, B, D) in the order of ``modalities`` (one batched loss; see losses.refiner_terms)."""
        targets = []
        for modality, target_map in self.target_maps.items():
            feature = features[modality].detach() if self.detach_targets else features[modality]
            targets.append(target_map(feature))
        return self.decoders(fused), torch.stack(targets)
