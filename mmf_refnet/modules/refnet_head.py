"""The ReFNet head (paper §3, §5): fusion → classifier, and the refiner, for any backbone.

A model hands it its per-modality pre-fusion outputs (``fusion_inputs``: e.g.
ViLBERT's pooled text and visual outputs) and what the refiner reconstructs
(``targets``: H_i(F_i) before the target map, keyed by modality). The head
concatenates the fusion inputs, normalises them, makes the fused embedding with
a linear layer, classifies it with two linear layers, and decodes it back into
every modality. Its output is what the losses listed under the model's
``losses:`` read (``mmf_refnet.losses.registered``):

- ``scores`` (B, num_labels) and ``fused_embedding`` (B, fused_dim);
- ``refiner_outputs`` and ``refiner_targets``, stacked (M, B, D) in the order of
  ``refiner_modalities``.

ReFNet models store the head as ``model`` and their backbone as its child
``model.bert`` (MMF's place for it), so MMF's ``pretrained_state_mapping``
(``model.bert: model.bert``) and the checkpoint keys stay those of MMF's models.
"""

from typing import Dict, Sequence

import torch
from torch import nn

from mmf_refnet.modules.refiner import Refiner


class ClassifierHead(nn.Sequential):
    """Two linear layers on the fused embedding (paper §5)."""

    def __init__(self, fused_dim: int, hidden_dim: int, num_labels: int, dropout: float):
        super().__init__(nn.Linear(fused_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, num_labels))


class ReFNetHead(nn.Module):
    """Concat fusion, classifier and refiner; see the module docstring."""

    def __init__(self, fusion_dims: Sequence[int], target_dims: Dict[str, int], num_labels: int, *,
                 fused_dim: int = 512, fusion_norm: bool = True, fusion_dropout: float = 0.1,
                 classifier_hidden_dim: int = 512, classifier_dropout: float = 0.1, refiner_hidden_dim: int = 1024,
                 refiner_dropout: float = 0.1, target_map: str = "identity", refiner_dim=None,
                 detach_targets: bool = True):
        super().__init__()
        concat_dim = int(sum(fusion_dims))
        # Pooled outputs can differ in scale by an order of magnitude (random-init poolers give
        # values ~1e-2); normalising the concatenation keeps the linear fusion and the
        # classifier from seeing an almost constant input.
        self.fusion_norm = nn.LayerNorm(concat_dim) if fusion_norm else nn.Identity()
        self.fusion_dropout = nn.Dropout(fusion_dropout)
        self.fusion = nn.Linear(concat_dim, fused_dim)
        self.classifier = ClassifierHead(fused_dim, classifier_hidden_dim, num_labels, classifier_dropout)
        self.refiner = Refiner(fused_dim, dict(target_dims), hidden_dim=refiner_hidden_dim, target_map=target_map,
                               refiner_dim=refiner_dim, dropout=refiner_dropout, detach_targets=detach_targets)

    @classmethod
    def from_config(cls, config, fusion_dims: Sequence[int], target_dims: Dict[str, int]) -> "ReFNetHead":
        """From a ReFNet model config (``mmf_refnet/configs/models/refnet_head.yaml``); the fusion
        dropout is the backbone's ``hidden_dropout_prob``."""
        refiner = config.refiner
        return cls(fusion_dims, target_dims, int(config.num_labels), fused_dim=int(config.fused_dim),
                   fusion_norm=bool(config.fusion_norm), fusion_dropout=float(config.hidden_dropout_prob),
                   classifier_hidden_dim=int(config.classifier.hidden_dim),
                   classifier_dropout=float(config.classifier.dropout), refiner_hidden_dim=int(refiner.hidden_dim),
                   refiner_dropout=float(refiner.dropout), target_map=refiner.target_map, refiner_dim=refiner.dim,
                   detach_targets=bool(refiner.detach_targets))

    def parts(self) -> Sequence[nn.Module]:
        """The head's own layers (not a backbone its host may have attached as a child)."""
        return (self.fusion_norm, self.fusion, self.classifier, self.refiner)

    def fuse(self, fusion_inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """The fused embedding (B, fused_dim)."""
        return self.fusion(self.fusion_dropout(self.fusion_norm(torch.cat(list(fusion_inputs), dim=-1))))

    def forward(self, fusion_inputs: Sequence[torch.Tensor], targets: Dict[str, torch.Tensor],
                refine: bool = True) -> Dict[str, object]:
        """The outputs listed in the module docstring; without the refiner's with ``refine`` False."""
        fused = self.fuse(fusion_inputs)
        output = {"scores": self.classifier(fused), "fused_embedding": fused}
        if refine:
            output["refiner_outputs"], output["refiner_targets"] = self.refiner(fused, targets)
            output["refiner_modalities"] = tuple(self.refiner.modalities)
        return output

