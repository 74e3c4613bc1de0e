"""Training batches in an order a resumed run can continue mid-epoch.

rc10 shuffles the training set with a ``RandomSampler`` seeded from the global
torch RNG when each epoch's iterator is created, so a resumed run cannot know
the order of the epoch it was killed in and starts a new one. Here each epoch's
order is a function of a data seed and the epoch number only, and the batches
already consumed are skipped (their samples are never loaded):

* ``EpochBatches`` wraps any *deterministic* batch sampler: one whose batches
  depend only on its seed and ``set_epoch(epoch)``, never on the global RNG.
  ``skip_next(n)`` drops the first ``n`` batches of the next iteration.
* The default batch sampler is torch's ``DistributedSampler`` (seed + epoch
  permutation; this rank's share; also with one process) in a ``BatchSampler``.
  Its first ``n`` batches on all ranks together are the permutation's first
  ``n × batch_size`` samples, whatever the number of processes.
* A dataset may supply its own: ``dataset.train_batch_sampler(batch_size=,
  seed=, num_replicas=, rank=)`` returning a batch sampler with ``set_epoch``
  whose order follows the rule above (e.g. a sampler that balances labeled and
  unlabeled rows).
* ``ResumableDatasetLoader`` is rc10's ``DatasetLoader`` with these training
  loaders; its DataLoaders also get their own generator, reseeded each epoch, so
  creating an iterator draws nothing from the global RNG (worker seeds follow
  the data seed and the epoch). Epochs are numbered 1, 2, 3, ... with any number of
  processes (rc10 numbered a 2-process run's epochs 1, 3, 5: other data orders than
  one process's).
"""

import itertools
import random
import warnings
from typing import Callable, Optional

import torch
from mmf.common.dataset_loader import DatasetLoader
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler


class EpochBatches:
    """A deterministic batch sampler that can skip the batches a run already consumed."""

    def __init__(self, batch_sampler):
        self.batch_sampler = batch_sampler
        self.epoch = 0
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        target = self.batch_sampler if hasattr(self.batch_sampler, "set_epoch") else self.batch_sampler.sampler
        target.set_epoch(epoch)

    def skip_next(self, count: int) -> None:
        """Drop the first ``count`` batches of the next iteration only."""
        self._skip = max(0, int(count))

    def __iter__(self):
        skip, self._skip = self._skip, 0
        return itertools.islice(iter(self.batch_sampler), skip, None)

    def __len__(self) -> int:
        return len(self.batch_sampler)


def process_group():
    """(number of processes, this rank) of the default process group; (1, 0) without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


def default_batch_sampler(dataset, batch_size: int, seed: int, num_replicas: int, rank: int):
    sampler = DistributedSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
    return BatchSampler(sampler, batch_size, drop_last=False)


def train_batch_sampler(dataset, batch_size: int, seed: int) -> EpochBatches:
    num_replicas, rank = process_group()
    if len(dataset) < num_replicas:
        raise ValueError(f"{getattr(dataset, 'dataset_name', 'the')} training split has {len(dataset)} row(s) for "
                         f"{num_replicas} processes: every process needs at least one; run with at most "
                         f"{len(dataset)} processes or give the split more rows")
    build = getattr(dataset, "train_batch_sampler", None)
    kwargs = {"batch_size": batch_size, "seed": seed, "num_replicas": num_replicas, "rank": rank}
    batches = build(**kwargs) if build is not None else default_batch_sampler(dataset, **kwargs)
    if isinstance(batches, BatchSampler) and isinstance(batches.sampler, DistributedSampler) and rank == 0:
        extra = batches.sampler.total_size - len(dataset)
        if extra:
            warnings.warn(f"{getattr(dataset, 'dataset_name', 'the')} training split: {len(dataset)} rows do not "
                          f"split evenly among {num_replicas} processes, so every epoch repeats {extra} row(s) (torch's "
                          "DistributedSampler); the run differs from one process's by those rows", stacklevel=2)
    return EpochBatches(batches)


def agreed_seed(seed: Optional[int]) -> int:
    """The data seed of every rank: rank 0's ``seed`` (a random one when None).

    rc10 replaces ``training.seed: -1`` by a random number in each process, so without this
    each rank would shuffle the training set its own way (rows seen twice, others never)."""
    chosen = [int(seed) if seed is not None else random.SystemRandom().randrange(2**31)]
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.broadcast_object_list(chosen, src=0)
    return chosen[0]


class ResumableDatasetLoader(DatasetLoader):
    """rc10's DatasetLoader whose training loaders follow a data seed and can resume mid-epoch.

    ``on_train_epoch(epoch, skipped)`` is called when the trainer starts an epoch
    (rc10 calls ``seed_sampler("train", epoch)`` right before iterating).
    """

    def __init__(self, config, on_train_epoch: Optional[Callable[[int, int], None]] = None):
        super().__init__(config)
        self.data_seed = agreed_seed(config.training.get("seed", None))
        self.on_train_epoch = on_train_epoch
        self.train_batches = []
        self._resume_epoch, self._resume_skip = None, 0
        self._last_epoch: Optional[int] = None

    def load_datasets(self):
        super().load_datasets()
        self.build_train_loaders()

    def build_train_loaders(self) -> None:
        from mmf.utils.general import get_batch_size

        multi = self.train_dataset
        self.train_batches = []
        for index, old in enumerate(multi.loaders):
            batches = train_batch_sampler(old.dataset, get_batch_size(), self.data_seed)
            loader = DataLoader(old.dataset, batch_sampler=batches, collate_fn=old.collate_fn,
                                num_workers=old.num_workers, pin_memory=old.pin_memory, generator=torch.Generator())
            loader.dataset_type = getattr(old, "dataset_type", "train")
            multi.loaders[index], multi.samplers[index] = loader, batches
            self.train_batches.append((batches, loader.generator))
        multi.current_loader = multi.loaders[multi.current_index]

    def resume_at(self, seed: int, epoch: int, batches: int) -> None:
        """Continue the run that consumed ``batches`` batches of epoch ``epoch`` with data seed ``seed``."""
        if seed != self.data_seed:
            self.data_seed = int(seed)
            self.build_train_loaders()
        self._resume_epoch, self._resume_skip = epoch, batches

    def seed_sampler(self, dataset_type, seed):
        if dataset_type != "train" or not self.train_batches:
            return super().seed_sampler(dataset_type, seed)
        # rc10's loop adds world_size - 1 to its epoch count after each epoch of a distributed run (epochs
        # 1, 3, 5 on 2 processes): after the first epoch of this run, the next epoch is the previous + 1
        epoch = int(seed) if self._last_epoch is None else self._last_epoch + 1
        self._last_epoch, skipped = epoch, 0
        if self._resume_epoch == epoch:
            skipped = self._resume_skip
        self._resume_epoch, self._resume_skip = None, 0
        for batches, generator in self.train_batches:
            batches.set_epoch(epoch)
            batches.skip_next(skipped)
            generator.manual_seed(self.data_seed + epoch)
        if self.on_train_epoch is not None:
            self.on_train_epoch(epoch, skipped)
        return None
