"""Label-based losses on the labeled rows of a batch (``sample_list.labeled``, set by datasets with
``label_fraction`` < 1 or unlabeled rows): the rows' subset, and 0 when there is none."""

import torch


def zero_loss(like: torch.Tensor) -> torch.Tensor:
    """0 of shape (1,) that keeps ``like``'s graph (a loss with no rows to see: never NaN, backward still works)."""
    return (like.sum() * 0).view(1)


def labeled_subset(sample_list, scores: torch.Tensor, labeled: torch.Tensor):
    """(sample list, model output) restricted to the rows with ``labeled`` True, or None when there are none.

    The subset keeps ``targets``, ``dataset_name`` and ``dataset_type`` (what MMF's
    losses and their report keys read). ``nonzero`` syncs with the device: this
    runs only for batches that carry ``labeled``.
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
