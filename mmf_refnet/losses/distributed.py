"""Losses of a distributed training step weighed as one process weighs them.

* The Multi-Similarity loss over the global batch (as pml's DistributedLossWrapper): every
  rank sees all ranks' embeddings, only its own rows carry gradient, and the gradient is
  scaled back up against DDP's averaging.
* Means over rows (cross-entropy on the labeled rows, the refiner's 1 − cos): DDP averages
  the ranks' gradients, so a rank's mean over its n_r rows counts as much as any other's,
  whatever n_r. ``rank_weights`` gives the factors W · n_r / N that make the average over
  the ranks the mean over the N rows of the global batch (with 1 of 7 labeled rows on one
  rank, 7 on the other, the first rank's row would otherwise weigh 7 times as much).

Only in a training step (grad enabled) of a run with several processes; evaluation computes
each rank's batch alone (no collective: ranks may evaluate different numbers of batches)."""

from typing import Optional

import torch


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
    if not distributed_training_step():
        return embeddings, targets, labeled, 1
    import torch.distributed as dist

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


def distributed_training_step() -> bool:
    """A training step (grad enabled) of a run with several processes."""
    import torch.distributed as dist

    return torch.is_grad_enabled() and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_weights(counts: torch.Tensor) -> torch.Tensor:
    """W · n_r / N for each of this rank's row counts ``counts`` (one all-reduce, on the device);
    ones outside a distributed training step. A count that is 0 on every rank gives 0."""
    counts = counts.to(torch.float32)
    if not distributed_training_step():
        return torch.ones_like(counts)
    import torch.distributed as dist

    totals = counts.clone()
    dist.all_reduce(totals)
    return counts * dist.get_world_size() / totals.clamp(min=1)
