"""ReFNet's losses: the refiner's self-supervised cosine loss (paper Eq. 3) and
the Multi-Similarity loss on fused embeddings (Eq. 5, computed by
pytorch-metric-learning).

Both exist as plain functions/modules used by the models and as MMF-registered
losses (``refiner``, ``refnet_ms``), so other MMF models that emit
``refiner_outputs``/``refiner_targets`` or ``fused_embedding`` can use them from
their ``losses:`` config.

Naming of the MS scales: the paper (§5.1, "α = 50, β = 2") follows its first
author's MMF code, where α scales the *negative* pairs; Wang et al. and
pytorch-metric-learning call the positive scale ``alpha`` (2) and the negative
scale ``beta`` (50). Our config keys ``alpha``/``beta`` use the paper's naming
and ``pml_scales`` maps them: pml.alpha = paper β, pml.beta = paper α.
"""

from typing import Dict, Optional

import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml_losses

MULTILABEL_RULES = ("shares_label", "same_labels")


def refiner_terms(outputs: torch.Tensor, targets: torch.Tensor, weights: Dict[str, float]) -> Dict[str, torch.Tensor]:
    """γ_i · mean_batch(1 − cos(R_i, H_i(F_i))) for each modality, each of shape (1,).

    ``outputs``/``targets``: (M, B, D), modality i at index i; ``weights``: γ
    keyed by the M modalities, in that order. All modalities in one cosine call:
    the head's cost on a GPU is kernel launches, and one batched call launches
    half the kernels of one call per modality.
    """
    if len(weights) != outputs.size(0):
        raise ValueError(f"refiner_terms got {outputs.size(0)} stacked modalities but weights for {list(weights)}")
    cosine = F.cosine_similarity(outputs.float(), targets.float(), dim=-1, eps=1e-8)
    per_modality = (1.0 - cosine).mean(dim=-1).unbind(0)
    return {m: (float(gamma) * term).view(1) for (m, gamma), term in zip(weights.items(), per_modality)}


def stack_modalities(outputs: Dict[str, torch.Tensor], targets: Dict[str, torch.Tensor]):
    """(modalities, (M, B, D) outputs, (M, B, D) targets) from dicts keyed by modality."""
    modalities = list(outputs)
    missing = [m for m in modalities if m not in targets]
    if missing:
        raise KeyError(f"refiner output(s) {missing} have no target; targets: {sorted(targets)}")
    if len({tuple(outputs[m].shape) for m in modalities} | {tuple(targets[m].shape) for m in modalities}) > 1:
        shapes = {m: (tuple(outputs[m].shape), tuple(targets[m].shape)) for m in modalities}
        raise ValueError(f"refiner outputs and targets need one shape for every modality, got (output, target) {shapes}")
    return modalities, torch.stack([outputs[m] for m in modalities]), torch.stack([targets[m] for m in modalities])


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


def _gather_padded(tensor: torch.Tensor, sizes, max_size: int):
    import torch.distributed as dist

    padded = tensor.new_zeros((max_size,) + tuple(tensor.shape[1:]))
    padded[: tensor.size(0)] = tensor.detach()
    gathered = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(gathered, padded)
    return [chunk[:size] for chunk, size in zip(gathered, sizes)]


def global_batch(embeddings: torch.Tensor, targets: torch.Tensor, labeled: Optional[torch.Tensor] = None):
    """All ranks' embeddings/targets/labeled flags, this rank's rows keeping their graph.

    Other ranks' rows carry no gradient (as in pml's DistributedLossWrapper);
    uneven batch sizes are padded for the all-gather and trimmed after.
    Returns the inputs unchanged when not running distributed.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return embeddings, targets, labeled, 1
    world, rank = dist.get_world_size(), dist.get_rank()
    size = torch.tensor([embeddings.size(0)], device=embeddings.device)
    all_sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(all_sizes, size)
    sizes = [int(s.item()) for s in all_sizes]
    if labeled is None:
        labeled = torch.ones(embeddings.size(0), dtype=torch.bool, device=embeddings.device)
    parts = [_gather_padded(t, sizes, max(sizes)) for t in (embeddings, targets, labeled.to(torch.uint8))]
    parts[0][rank] = embeddings
    parts[1][rank] = targets
    return torch.cat(parts[0]), torch.cat(parts[1]), torch.cat(parts[2]).bool(), world


def scale_gradient(loss: torch.Tensor, factor: int) -> torch.Tensor:
    """Same value, gradient × factor: undoes DDP's gradient averaging for a loss
    every rank computes on the global batch (only its own rows carry gradient)."""
    if factor == 1:
        return loss
    return loss * factor - loss.detach() * (factor - 1)


def _register():
    from mmf.common.registry import registry

    @registry.register_loss("refiner")
    class RefinerLoss(torch.nn.Module):
        """Σ γ_i (1 − cos(R_i, H_i(F_i))) from ``model_output['refiner_outputs']`` and
        ``model_output['refiner_targets']`` (dicts keyed by modality)."""

        def __init__(self, weights=None):
            super().__init__()
            self.weights = dict(weights or {})

        def forward(self, sample_list, model_output):
            modalities, outputs, targets = stack_modalities(model_output["refiner_outputs"], model_output["refiner_targets"])
            weights = {m: self.weights.get(m, 1.0) for m in modalities}
            return sum(refiner_terms(outputs, targets, weights).values()).view(1)

    @registry.register_loss("refnet_ms")
    class MultiSimilarityLoss(torch.nn.Module):
        """ζ · MS loss on ``model_output['fused_embedding']`` with ``sample_list.targets``;
        only rows with ``sample_list.labeled`` True are anchors or pairs (all rows when absent)."""

        def __init__(self, weight=1.0, **params):
            super().__init__()
            self.weight = float(weight)
            self.criterion = MultiSimilarity(**params)

        def forward(self, sample_list, model_output):
            embeddings, labeled = model_output["fused_embedding"], sample_list.get("labeled")
            return (self.weight * self.criterion(embeddings, sample_list.targets, labeled)).view(1)

    for inner in LABELED_LOSSES:
        registry.register_loss(f"labeled_{inner}")(_labeled_loss_class(inner))
    return RefinerLoss, MultiSimilarityLoss


LABELED_LOSSES = ("cross_entropy", "logit_bce")
# Registered losses that never read an unlabeled row's placeholder target (data.label_fraction checks models against it)
LABEL_AWARE_LOSSES = ("refiner", "refnet_ms") + tuple(f"labeled_{inner}" for inner in LABELED_LOSSES)


def zero_loss(like: torch.Tensor) -> torch.Tensor:
    """0 of shape (1,) that keeps ``like``'s graph (a loss with no rows to see: never NaN, backward still works)."""
    return (like.sum() * 0).view(1)


def labeled_subset(sample_list, scores: torch.Tensor, labeled: torch.Tensor):
    """(sample list, model output) restricted to the rows with ``labeled`` True, or None when there are none.

    The subset keeps ``targets``, ``dataset_name`` and ``dataset_type`` (what MMF's
    losses and their report keys read). ``nonzero`` syncs with the device: this
    runs only for batches that carry ``labeled`` (label_fraction < 1).
    """
    from mmf.common.sample import SampleList

    rows = labeled.to(torch.bool).view(-1).nonzero().squeeze(1)
    if rows.numel() == 0:
        return None
    subset = SampleList()
    subset.targets = sample_list.targets.index_select(0, rows)
    for key in ("dataset_name", "dataset_type"):
        if key in sample_list:
            subset[key] = sample_list[key]
    return subset, {"scores": scores.index_select(0, rows)}


def _labeled_loss_class(inner: str):
    """MMF's ``inner`` loss on the rows with ``sample_list.labeled`` True (all rows when absent).

    For models that do not mask by themselves (stock vilbert) under ``label_fraction``:
    MMF's own losses would train on the placeholder targets of unlabeled rows.
    A batch without labeled rows gives 0 (with a graph), never NaN.
    """

    class LabeledLoss(torch.nn.Module):
        def __init__(self, **params):
            super().__init__()
            from mmf.common.registry import registry

            self.loss = registry.get_loss_class(inner)(**params)

        def forward(self, sample_list, model_output):
            labeled = sample_list.get("labeled")
            if labeled is None:
                return self.loss(sample_list, model_output)
            subset = labeled_subset(sample_list, model_output["scores"], labeled)
            return zero_loss(model_output["scores"]) if subset is None else self.loss(*subset)

    LabeledLoss.__name__ = LabeledLoss.__qualname__ = f"Labeled_{inner}"
    return LabeledLoss


RefinerLoss, MultiSimilarityLoss = _register()
