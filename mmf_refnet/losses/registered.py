"""ReFNet's terms as MMF losses, listed under a model's ``losses:`` (registered on import).

- ``refnet_refiner`` (params ``modality``, ``weight``), logged as ``refiner_<modality>``:
  reads the model output's ``refiner_outputs``/``refiner_targets`` (M, B, D) and
  ``refiner_modalities``; every row counts.
- ``refnet_multi_similarity`` (``weight`` and ``MultiSimilarity``'s parameters), logged as
  ``ms_loss``: reads ``fused_embedding`` and the labeled rows' ``targets``.
- ``labeled_cross_entropy`` / ``labeled_logit_bce``, logged as ``cross_entropy`` /
  ``logit_bce``: MMF's loss on the labeled rows.

Each honours ``sample_list.labeled`` (all rows labeled when absent); none reads an
unlabeled row's placeholder target (``LABEL_AWARE_LOSSES``, which the data layer
checks). In a distributed training step the means over rows are weighed by the rank's
share of the global batch (``weighed``), so the ranks together train what one process
trains on the global batch. The "logged as" names are what ReFNet models report (``ModelLosses``);
under MMF's plain ``Losses`` (any other model) a loss is logged by its type.
"""

import torch
from mmf.common.registry import registry
from mmf.modules.losses import Losses

from mmf_refnet.losses.distributed import distributed_training_step, rank_weights
from mmf_refnet.losses.labeled import labeled_subset, zero_loss
from mmf_refnet.losses.multi_similarity import MultiSimilarity
from mmf_refnet.losses.refiner import refiner_distances

LABELED_LOSSES = ("cross_entropy", "logit_bce")
LABEL_AWARE_LOSSES = ("refnet_refiner", "refnet_multi_similarity") + tuple(f"labeled_{inner}" for inner in LABELED_LOSSES)
DISTANCES_KEY = "refiner_distances"  # per modality: mean over the batch of 1 − cos (added by the first refiner loss)
WEIGHTS_KEY = "rank_weights"  # [rows, labeled rows] weights of this rank's batch in a distributed training step


def weighed(loss: torch.Tensor, sample_list, model_output, labeled_rows: bool) -> torch.Tensor:
    """``loss`` (a mean over this rank's rows, or its labeled rows) times the rank's weight in the
    global batch of a distributed training step (``rank_weights``; computed once per model output);
    ``loss`` itself otherwise."""
    if not distributed_training_step():
        return loss
    if WEIGHTS_KEY not in model_output:
        scores = model_output["scores"]
        rows = torch.tensor(scores.size(0), device=scores.device)
        labeled = sample_list.get("labeled")
        labeled_count = rows if labeled is None else labeled.to(device=scores.device, dtype=torch.bool).sum()
        model_output[WEIGHTS_KEY] = rank_weights(torch.stack([rows, labeled_count]))
    return loss * model_output[WEIGHTS_KEY][int(labeled_rows)]


def mean_refiner_distances(model_output):
    """Every modality's mean 1 − cos at once, computed once per model output (each modality's loss
    takes its own): one batched cosine, as many kernels as for one modality."""
    if DISTANCES_KEY not in model_output:
        missing = [key for key in ("refiner_outputs", "refiner_targets", "refiner_modalities") if key not in model_output]
        if missing:
            raise KeyError(f"the refnet_refiner loss needs {missing} in the model output: a model with a ReFNet head "
                           "(mmf_refnet.modules.refnet_head) emits them")
        distances = refiner_distances(model_output["refiner_outputs"], model_output["refiner_targets"])
        model_output[DISTANCES_KEY] = distances.mean(dim=-1).unbind(0)
    return model_output[DISTANCES_KEY]


@registry.register_loss("refnet_refiner")
class RefinerLoss(torch.nn.Module):
    """γ · mean over the batch of 1 − cos(R_m, H_m(F_m)) for one modality m (paper Eq. 3).

    Self-supervised: every row counts, labeled or not, and no ``targets`` are needed.
    """

    needs_targets = False

    def __init__(self, modality: str, weight: float = 1.0):
        super().__init__()
        self.modality, self.weight = str(modality), float(weight)
        self.report_name = f"refiner_{self.modality}"

    def forward(self, sample_list, model_output):
        distances = mean_refiner_distances(model_output)
        modalities = list(model_output["refiner_modalities"])
        if self.modality not in modalities:
            raise KeyError(f"refnet_refiner: modality '{self.modality}' is not among the model's refiner modalities "
                           f"{modalities}")
        loss = self.weight * distances[modalities.index(self.modality)]
        return weighed(loss, sample_list, model_output, labeled_rows=False).view(1)


@registry.register_loss("refnet_multi_similarity")
class MultiSimilarityLoss(torch.nn.Module):
    """ζ · Multi-Similarity loss on ``model_output['fused_embedding']`` with ``sample_list.targets``
    (paper Eq. 5); only labeled rows are anchors or pairs. Parameters: see ``MultiSimilarity``."""

    report_name = "ms_loss"

    def __init__(self, weight: float = 1.0, **params):
        super().__init__()
        self.weight = float(weight)
        self.criterion = MultiSimilarity(**params)

    def forward(self, sample_list, model_output):
        embeddings, labeled = model_output["fused_embedding"], sample_list.get("labeled")
        return (self.weight * self.criterion(embeddings, sample_list.targets, labeled)).view(1)


def _labeled_loss_class(inner: str):
    """MMF's ``inner`` loss on the rows with ``sample_list.labeled`` True (all rows when absent).

    A batch without labeled rows gives 0 (with a graph), never NaN.
    """

    class LabeledLoss(torch.nn.Module):
        report_name = inner

        def __init__(self, **params):
            super().__init__()
            self.loss = registry.get_loss_class(inner)(**params)

        def forward(self, sample_list, model_output):
            labeled = sample_list.get("labeled")
            if labeled is None:
                loss = self.loss(sample_list, model_output)
            else:
                subset = labeled_subset(sample_list, model_output["scores"], labeled)
                loss = zero_loss(model_output["scores"]) if subset is None else self.loss(*subset)
            return weighed(loss, sample_list, model_output, labeled_rows=True)

    LabeledLoss.__name__ = LabeledLoss.__qualname__ = f"Labeled_{inner}"
    return LabeledLoss


for _inner in LABELED_LOSSES:
    registry.register_loss(f"labeled_{_inner}")(_labeled_loss_class(_inner))


class ModelLosses(Losses):
    """MMF's ``Losses`` as ReFNet models configure it (``init_losses``):

    * each loss is logged under its ``report_name`` (``refiner_text``, ``ms_loss``,
      ``cross_entropy``, ...), the names ReFNet models have always logged;
    * a loss with ``weight`` 0 is switched off, neither computed nor logged, so an
      ablation is a config override (e.g. ``ms_loss.weight=0``);
    * without ``targets`` in the batch (rc10's ``Losses`` then returns nothing at all),
      or with ``label_free_only`` (refiner pretraining), only the losses that need no
      labels run.
    """

    def __init__(self, loss_list, label_free_only: bool = False):
        super().__init__(loss_list)
        self.label_free_only = bool(label_free_only)
        kept = [loss for loss in self.losses if getattr(loss.loss_criterion, "weight", 1.0) != 0]
        self.losses = type(self.losses)(kept)
        for loss in self.losses:
            loss.name = getattr(loss.loss_criterion, "report_name", loss.name)

    def forward(self, sample_list, model_output, *args, **kwargs):
        if sample_list.get("targets") is not None and not self.label_free_only:
            return super().forward(sample_list, model_output, *args, **kwargs)
        output = {}
        for loss in self.losses:
            if not getattr(loss.loss_criterion, "needs_targets", True):
                output.update(loss(sample_list, model_output, *args, **kwargs))
        return output
