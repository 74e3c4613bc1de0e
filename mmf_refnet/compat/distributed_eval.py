"""rc10 evaluates and predicts in a distributed run with torch's ``DistributedSampler``, which
repeats rows until every rank has as many (15 validation rows on 2 ranks: 16, one counted
twice), computes each metric on every rank's share and averages the ranks' values (an AUROC
averaged over halves is not the AUROC of the split), and ``mmf_predict`` under ``torchrun``
writes a repeated row into the leaderboard CSV. Now, with several processes:

* validation and test loaders give each rank its own rows, every row to one rank only
  (``UnpaddedSampler``: positions r, r + W, ... of the split's order);
* ``evaluate`` runs the unwrapped model on each rank's rows (no collective per batch: ranks
  may have a batch more or less), then gathers the rows the metrics read and sums the losses
  weighted by rows, so metrics and losses are those of the whole split, as one process gets;
* predictions are gathered on rank 0 with their row position and written once each, in the
  split's order.

A split with fewer rows than processes is refused before training."""

from typing import List, Optional

import torch
from torch.utils.data import Sampler


def world() -> tuple:
    """(processes, this rank) of the default process group; (1, 0) without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


class TooFewRows(ValueError):
    pass


class UnpaddedSampler(Sampler):
    """Rank ``rank``'s rows of an evaluation split: positions rank, rank + W, ... of the split's
    order (shuffled by ``seed`` and the epoch, or as stored); every row on exactly one rank."""

    def __init__(self, dataset, shuffle: bool, seed: int = 0, num_replicas: Optional[int] = None,
                 rank: Optional[int] = None):
        processes, this_rank = world()
        self.num_replicas = processes if num_replicas is None else num_replicas
        self.rank = this_rank if rank is None else rank
        self.size, self.shuffle, self.seed, self.epoch = len(dataset), shuffle, seed, 0
        if self.size < self.num_replicas:
            name = f"{getattr(dataset, 'dataset_name', 'the')} {getattr(dataset, 'dataset_type', 'evaluation')} split"
            raise TooFewRows(f"{name} has {self.size} row(s) for {self.num_replicas} processes: every process needs "
                             f"at least one; run with at most {self.size} processes (torchrun --nproc_per_node) or "
                             "give the split more rows")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> List[int]:
        if not self.shuffle:
            return list(range(self.size))
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        return torch.randperm(self.size, generator=generator).tolist()

    def __iter__(self):
        return iter(self.order()[self.rank::self.num_replicas])

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.num_replicas))


def gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's rows of ``tensor`` (first dimension; ranks may have different numbers), rank by rank."""
    import torch.distributed as dist

    processes, _ = world()
    size = torch.tensor([tensor.size(0)], device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(processes)]
    dist.all_gather(sizes, size)
    sizes = [int(s.item()) for s in sizes]
    padded = tensor.new_zeros((max(sizes),) + tuple(tensor.shape[1:]))
    padded[: tensor.size(0)] = tensor
    chunks = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(chunks, padded.contiguous())
    return torch.cat([chunk[:count] for chunk, count in zip(chunks, sizes)])


def _sums_device(trainer) -> torch.device:
    backend = torch.distributed.get_backend() if torch.distributed.is_initialized() else "gloo"
    return trainer.device if str(backend).lower() == "nccl" else torch.device("cpu")


def distributed_evaluate(trainer, loader, single_batch: bool = False):
    """rc10's ``evaluate`` over every rank's rows of the split: (combined report, meter)."""
    from mmf.common.meter import Meter
    from mmf.common.registry import registry

    meter, combined, rows, sums = Meter(), None, 0, {}
    wrapped = trainer.model
    trainer.model = getattr(wrapped, "module", wrapped)  # DDP's forward may sync: ranks run different batch counts
    try:
        with torch.no_grad():
            trainer.model.eval()
            for batch in loader:
                report = trainer._forward_pass(batch)
                count = int(report.batch_size)
                losses = {key: float(value.detach().mean()) for key, value in report.losses.items()}
                sums[f"{report.dataset_type}/total_loss"] = sums.get(f"{report.dataset_type}/total_loss", 0.0) + (
                    sum(losses.values()) * count)
                for key, value in losses.items():
                    sums[key] = sums.get(key, 0.0) + value * count
                rows += count
                if combined is None:
                    combined = report
                else:
                    combined.accumulate_tensor_fields(report, trainer.metrics.required_params)
                    combined.batch_size += report.batch_size
                if single_batch:
                    break
            keys = sorted(sums)
            totals = torch.tensor([rows] + [sums[key] for key in keys], dtype=torch.float64, device=_sums_device(trainer))
            torch.distributed.all_reduce(totals)
            total_rows = int(totals[0].item())
            averages = {key: float(totals[index + 1].item()) / total_rows for index, key in enumerate(keys)}
            for key in keys:
                if key.endswith("/total_loss"):
                    registry.register(key, averages[key])
            meter.update(averages, total_rows)
            for key in sorted(trainer.metrics.required_params):  # a set: its order differs between processes
                if isinstance(combined.get(key, None), torch.Tensor):
                    combined[key] = gather_rows(combined[key])
            combined.batch_size = total_rows
            combined.metrics = trainer.metrics(combined, combined)
            trainer._update_meter(combined, meter, eval_mode=True)  # every rank has the same values
    finally:
        trainer.model = wrapped
        trainer.model.train()
    return combined, meter


def _patch_loaders() -> None:
    from mmf.utils import build

    original = build._add_extra_args_for_dataloader
    if hasattr(original, "__wrapped__"):
        return

    def _add_extra_args_for_dataloader(dataset_instance, other_args=None):
        other_args = original(dataset_instance, other_args)
        sampler = other_args.get("sampler")
        if sampler is not None and dataset_instance.dataset_type != "train" and world()[0] > 1:
            other_args["sampler"] = UnpaddedSampler(dataset_instance, shuffle=bool(getattr(sampler, "shuffle", False)),
                                                    seed=int(getattr(sampler, "seed", 0)))
        return other_args

    _add_extra_args_for_dataloader.__wrapped__ = original
    build._add_extra_args_for_dataloader = _add_extra_args_for_dataloader


def _patch_trainer() -> None:
    from mmf.trainers.base_trainer import BaseTrainer

    original_evaluate, original_predict = BaseTrainer.evaluate, BaseTrainer.predict
    if hasattr(original_evaluate, "__wrapped__"):
        return

    def evaluate(self, loader, use_tqdm=False, single_batch=False):
        if world()[0] == 1:
            return original_evaluate(self, loader, use_tqdm, single_batch)
        return distributed_evaluate(self, loader, single_batch)

    def predict(self, dataset_type):
        if world()[0] == 1:
            return original_predict(self, dataset_type)
        wrapped = self.model
        self.model = getattr(wrapped, "module", wrapped)
        try:
            return original_predict(self, dataset_type)
        finally:
            self.model = wrapped

    evaluate.__wrapped__, predict.__wrapped__ = original_evaluate, original_predict
    BaseTrainer.evaluate, BaseTrainer.predict = evaluate, predict


def _patch_reporter() -> None:
    from mmf.common.test_reporter import TestReporter
    from mmf.utils.distributed import is_master

    original_args, original_add, original_flush = (TestReporter._add_extra_args_for_dataloader,
                                                   TestReporter.add_to_report, TestReporter.flush_report)
    if hasattr(original_add, "__wrapped__"):
        return

    def _add_extra_args_for_dataloader(self, other_args=None):
        other_args = original_args(self, other_args)
        if "sampler" in other_args and world()[0] > 1:
            other_args["sampler"] = UnpaddedSampler(self.current_dataset, shuffle=False)
            self._rows_seen = 0
        return other_args

    def add_to_report(self, report, model):
        processes, rank = world()
        if processes == 1:
            return original_add(self, report, model)
        results = self.current_dataset.format_for_prediction(report)
        inner = getattr(model, "module", model)
        if hasattr(inner, "format_for_prediction"):
            results = inner.format_for_prediction(results, report)
        if len(results) != int(report.batch_size):
            raise RuntimeError(f"{self.current_dataset.dataset_name}: format_for_prediction gave {len(results)} rows "
                               f"for a batch of {report.batch_size}; predictions of several processes need one a row")
        seen = getattr(self, "_rows_seen", 0)
        self._rows_seen = seen + len(results)
        pending = getattr(self, "_positioned", [])
        pending.extend((rank + processes * (seen + index), row) for index, row in enumerate(results))
        self._positioned = pending

    def flush_report(self):
        processes, _ = world()
        if processes > 1:
            gathered = [None] * processes
            torch.distributed.all_gather_object(gathered, getattr(self, "_positioned", []))
            self._positioned, self._rows_seen = [], 0
            if is_master():
                self.report = [row for _, row in sorted((item for part in gathered for item in part),
                                                        key=lambda item: item[0])]
        return original_flush(self)

    _add_extra_args_for_dataloader.__wrapped__ = original_args
    add_to_report.__wrapped__, flush_report.__wrapped__ = original_add, original_flush
    TestReporter._add_extra_args_for_dataloader = _add_extra_args_for_dataloader
    TestReporter.add_to_report, TestReporter.flush_report = add_to_report, flush_report


def apply() -> None:
    _patch_loaders()
    _patch_trainer()
    _patch_reporter()
