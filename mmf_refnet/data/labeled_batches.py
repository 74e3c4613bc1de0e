"""Training batches with a fixed number of labeled rows (``dataset_config.<name>.labeled_per_batch``).

With ``label_fraction`` < 1, rows mixed at random give a batch of 32 about 1.6 labeled rows at
5 % labels: many batches have none, and the Multi-Similarity loss, which needs a positive and
a negative pair among the labeled rows, is rarely active. ``labeled_per_batch`` fixes the
number instead:

* ``null`` (or ``natural``): rc10's mixing (every row once per epoch in a random order);
* an integer n ≥ 1: n labeled rows in every batch of ``training.batch_size`` (all ranks
  together), the rest unlabeled;
* a float in (0, 1): that share of ``training.batch_size`` (rounded, at least 1), as
  scikit-learn reads ``test_size``.

Each epoch, labeled and unlabeled rows come from two streams, each its pool's rows in a random
order (seed, epoch), reshuffled whenever the pool is used up (so the smaller pool, usually the
labeled one, cycles several times an epoch). An epoch is long enough for every row of both
pools to appear at least once. A batch never holds a row twice (when a batch spans the end of one pass over a
pool, the next pass starts with rows not already in it). Batches depend only on the data seed
and the epoch (``set_epoch``), as ``mmf_refnet.data.resumable`` needs to resume mid-epoch, and
with several processes each rank takes its share of every global batch: the union over the
ranks is the same global batch whatever the number of processes.
"""

import math
import random
from typing import Dict, List, Optional, Sequence, Tuple

NATURAL = "natural"


def labeled_rows_per_batch(setting, batch_size: int, key: str = "labeled_per_batch") -> Optional[int]:
    """The labeled rows in a batch of ``batch_size`` for a ``labeled_per_batch`` setting; None for natural mixing."""
    if setting is None or (isinstance(setting, str) and setting.strip().lower() == NATURAL):
        return None
    if isinstance(setting, bool) or not isinstance(setting, (int, float)):
        raise ValueError(f"{key} must be an integer number of rows, a share in (0, 1) or null (rows mixed at "
                         f"random), got {setting!r}")
    if isinstance(setting, float):
        if not 0.0 < setting < 1.0:
            raise ValueError(f"{key}={setting}: a share must be in (0, 1) (an integer gives a number of rows)")
        return max(1, round(setting * batch_size))
    if not 1 <= setting <= batch_size:
        raise ValueError(f"{key}={setting}: the number of labeled rows per batch must be between 1 and the batch "
                         f"size, training.batch_size={batch_size}")
    return int(setting)


def split_evenly(total: int, parts: int, extra_last: bool = False) -> List[int]:
    """``total`` in ``parts`` sizes that differ by at most one; the larger ones first (or last)."""
    sizes = [total // parts + (index < total % parts) for index in range(parts)]
    return sizes[::-1] if extra_last else sizes


class PoolStream:
    """A pool's rows in one seeded order that goes on as long as asked: pass k is a shuffle of the
    pool (seed, name, k) whose first rows avoid those of pass k-1 in the same batch (they move
    behind them)."""

    def __init__(self, rows: Sequence[int], per_batch: int, seed: str, name: str):
        self.rows, self.per_batch, self.seed, self.name = list(rows), per_batch, seed, name
        self._passes: Dict[int, List[int]] = {}

    def _pass(self, number: int) -> List[int]:
        if number not in self._passes:
            known = [k for k in self._passes if k < number]
            for k in range(max(known) + 1 if known else 0, number + 1):  # pass k's start depends on pass k-1
                order = list(self.rows)
                random.Random(f"{self.name}:{self.seed}:{k}").shuffle(order)
                self._passes[k] = self._start_without_repeats(order, k) if k > 0 else order
                self._passes.pop(k - 2, None)  # memory stays flat
        return self._passes[number]

    def _start_without_repeats(self, order: List[int], number: int) -> List[int]:
        size = len(self.rows)
        start = number * size
        first_batch = start - start % self.per_batch  # the batch that holds this pass's first row
        head = first_batch + self.per_batch - start if first_batch < start else 0
        if head == 0:
            return order
        previous = self._passes[number - 1]
        taken = set(previous[size - (start - first_batch):])
        lead = [row for row in order if row not in taken][:head]
        chosen = set(lead)
        return lead + [row for row in order if row not in chosen]

    def take(self, position: int, count: int) -> List[int]:
        """The ``count`` rows from stream ``position`` on."""
        size = len(self.rows)
        return [self._pass(index // size)[index % size] for index in range(position, position + count)]


class LabeledBatchSampler:
    """Batches of ``labeled`` + ``unlabeled`` rows in fixed numbers (see the module doc).

    ``labeled``: each row's flag. ``batch_size`` is this rank's (rc10 divides
    ``training.batch_size`` by the number of processes); ``labeled_per_batch`` counts the
    labeled rows of a global batch (at most the labeled pool: a pool smaller than that gives
    each batch all of it).
    """

    def __init__(self, labeled: Sequence[bool], batch_size: int, labeled_per_batch: int, seed: int,
                 num_replicas: int = 1, rank: int = 0):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not one of {num_replicas} processes")
        labeled_rows = [index for index, flag in enumerate(labeled) if flag]
        unlabeled_rows = [index for index, flag in enumerate(labeled) if not flag]
        if not labeled_rows:
            raise ValueError("labeled_per_batch needs labeled training rows; this dataset has none")
        global_batch = batch_size * num_replicas
        labeled_count = min(labeled_per_batch, len(labeled_rows))
        per_batch = labeled_count, min(global_batch - labeled_count, len(unlabeled_rows))
        self.per_batch: Tuple[int, int] = per_batch  # (labeled, unlabeled) rows of a global batch
        self.pools = labeled_rows, unlabeled_rows
        self.seed = seed
        self.batches_per_epoch = max(math.ceil(len(rows) / count)
                                     for rows, count in zip((labeled_rows, unlabeled_rows), per_batch) if count)
        # this rank's slice of each global batch: (offset, count) per pool; ranks with an extra
        # labeled row get no extra unlabeled one, so the ranks' batches differ by one row at most
        self.shares = []
        for count, extra_last in zip(per_batch, (False, True)):
            sizes = split_evenly(count, num_replicas, extra_last)
            self.shares.append((sum(sizes[:rank]), sizes[rank]))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self):
        streams = [PoolStream(rows, count, f"{self.seed}:{self.epoch}", name) if count else None
                   for rows, count, name in zip(self.pools, self.per_batch, ("labeled", "unlabeled"))]
        for number in range(self.batches_per_epoch):
            batch = []
            for stream, per_batch, (offset, count) in zip(streams, self.per_batch, self.shares):
                if stream is not None and count:
                    batch += stream.take(number * per_batch + offset, count)
            yield batch
