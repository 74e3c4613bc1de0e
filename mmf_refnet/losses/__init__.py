"""ReFNet's losses: the refiner's cosine loss (paper Eq. 3), the Multi-Similarity loss on
fused embeddings (Eq. 5, via pytorch-metric-learning) and label-aware versions of MMF's
downstream losses, as functions/modules and as MMF losses (``registered``).

To add a term: write its maths in a module here, register an ``nn.Module`` with
``forward(sample_list, model_output)`` returning a (1,) tensor in ``registered``
(a ``report_name``, a ``weight`` and ``needs_targets = False`` where they apply)
and list it under the model's ``losses:``.
"""

from mmf_refnet.losses.distributed import global_batch, scale_gradient
from mmf_refnet.losses.labeled import labeled_subset, zero_loss
from mmf_refnet.losses.multi_similarity import MULTILABEL_RULES, MultiSimilarity, mine_hard_pairs, pair_masks, pml_scales
from mmf_refnet.losses.refiner import refiner_distances, refiner_terms
from mmf_refnet.losses.registered import LABEL_AWARE_LOSSES, ModelLosses, MultiSimilarityLoss, RefinerLoss

__all__ = [
    "LABEL_AWARE_LOSSES", "MULTILABEL_RULES", "ModelLosses", "MultiSimilarity", "MultiSimilarityLoss", "RefinerLoss",
    "global_batch", "labeled_subset", "mine_hard_pairs", "pair_masks", "pml_scales", "refiner_distances",
    "refiner_terms", "scale_gradient", "zero_loss",
]
