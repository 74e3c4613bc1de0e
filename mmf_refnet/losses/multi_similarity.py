"""The Multi-Similarity loss on fused embeddings (paper Eq. 5), computed by
pytorch-metric-learning on pair masks built here (single-label and multilabel).

Naming of the MS scales: the paper (§5.1, "α = 50, β = 2") follows its first
author's MMF code, where α scales the *negative* pairs; Wang et al. and
pytorch-metric-learning call the positive scale ``alpha`` (2) and the negative
scale ``beta`` (50). Our config keys ``alpha``/``beta`` use the paper's naming
and ``pml_scales`` maps them: pml.alpha = paper β, pml.beta = paper α.
"""

from typing import Dict, Optional

import torch
from pytorch_metric_learning import losses as pml_losses

from mmf_refnet.losses.distributed import global_batch, scale_gradient

MULTILABEL_RULES = ("shares_label", "same_labels")


def pml_scales(alpha: float, beta: float) -> Dict[str, float]:
    """Paper α (negatives) / β (positives) → pml's alpha (positives) / beta (negatives)."""
    return {"alpha": float(beta), "beta": float(alpha)}


def pair_masks(targets: torch.Tensor, multilabel_rule: str = "shares_label"):
    """Boolean (B, B) positive and negative masks; the diagonal is neither.

    Single-label targets are class indices (B,); multilabel targets are multi-hot
    (B, C). For multilabel data, ``shares_label`` makes a pair positive when the
    two samples share at least one label and negative when they share none;
    ``same_labels`` makes it positive only for identical label sets (pairs that
    overlap partially are then neither).
    """
    if targets.dim() == 1:
        same = targets.unsqueeze(0) == targets.unsqueeze(1)
        negative = ~same
        return same.fill_diagonal_(False), negative
    if multilabel_rule not in MULTILABEL_RULES:
        raise ValueError(f"multilabel_rule must be one of {MULTILABEL_RULES}, got {multilabel_rule!r}")
    labels = (targets > 0.5).float()
    negative = (labels @ labels.t()) < 0.5  # no shared label (a sample without labels shares none, not even with itself)
    if multilabel_rule == "shares_label":
        positive = ~negative
    else:
        positive = (labels.unsqueeze(0) == labels.unsqueeze(1)).all(-1)
    return positive.fill_diagonal_(False), negative.fill_diagonal_(False)


def mine_hard_pairs(similarity: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, epsilon: float):
    """Multi-Similarity mining (Wang et al.; pml's MultiSimilarityMiner rule) on masks.

    Keeps a positive pair if S_ap − ε < max_n S_an and a negative pair if
    S_an + ε > min_p S_ap, per anchor. Works for multilabel masks too, which
    pml's miner (labels only) cannot take.
    """
    similarity = similarity.detach()  # selection only: no gradient, no autograd bookkeeping
    low, high = torch.finfo(similarity.dtype).min, torch.finfo(similarity.dtype).max
    hardest_negative = torch.where(negative, similarity, low).amax(dim=1, keepdim=True)
    hardest_positive = torch.where(positive, similarity, high).amin(dim=1, keepdim=True)
    return positive & (similarity - epsilon < hardest_negative), negative & (similarity + epsilon > hardest_positive)


class MultiSimilarity(torch.nn.Module):
    """ζ-free Multi-Similarity loss on embeddings, via pytorch-metric-learning.

    The pair selection is done on boolean masks (no host sync, no Python loop),
    then pml's ``MultiSimilarityLoss`` computes the per-anchor terms. Anchors
    with ``labeled=False`` are excluded (rows and columns); the loss is the mean
    over labeled anchors, 0 when there are none. Computed in float32 even under
    autocast: e^{50(S−λ)} overflows fp16.
    """

    def __init__(self, alpha=50.0, beta=2.0, base=0.5, miner_epsilon: Optional[float] = 0.1, multilabel_rule="shares_label",
                 global_batch: bool = True):
        super().__init__()
        self.global_batch = bool(global_batch)
        self.loss = pml_losses.MultiSimilarityLoss(base=float(base), **pml_scales(alpha, beta))
        self.miner_epsilon = None if miner_epsilon is None else float(miner_epsilon)
        if multilabel_rule not in MULTILABEL_RULES:
            raise ValueError(f"multilabel_rule must be one of {MULTILABEL_RULES}, got {multilabel_rule!r}")
        self.multilabel_rule = multilabel_rule

    def forward(self, embeddings: torch.Tensor, targets: torch.Tensor, labeled: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Mean MS loss; in a distributed run (``global_batch``) over all ranks' samples."""
        world = 1
        if self.global_batch:
            embeddings, targets, labeled, world = global_batch(embeddings, targets, labeled)
        return scale_gradient(self.batch_loss(embeddings, targets, labeled), world)

    def batch_loss(self, embeddings: torch.Tensor, targets: torch.Tensor, labeled: Optional[torch.Tensor] = None) -> torch.Tensor:
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            embeddings = embeddings.float()
            similarity = self.loss.distance(embeddings)
            positive, negative = pair_masks(targets, self.multilabel_rule)
            weights = None
            if labeled is not None:
                keep = labeled.to(torch.bool).view(-1)
                pair_ok = keep.unsqueeze(0) & keep.unsqueeze(1)
                positive, negative = positive & pair_ok, negative & pair_ok
                weights = keep.float()
            if self.miner_epsilon is not None:
                positive, negative = mine_hard_pairs(similarity, positive, negative, self.miner_epsilon)
            per_anchor = self.loss._compute_loss(similarity, positive, negative)["loss"]["losses"].view(-1)
            if weights is None:  # every anchor counts: pml's mean, without extra ops per step
                return per_anchor.mean()
            return (per_anchor * weights).sum() / weights.sum().clamp_min(1.0)
