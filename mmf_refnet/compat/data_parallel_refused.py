"""rc10's ``parallelize_model`` wraps the model in ``torch.nn.DataParallel`` whenever it runs
on CUDA with several GPUs visible and no process group (``mmf_run`` without ``torchrun``).
DataParallel cuts every batch into one chunk per GPU and averages the chunks' losses: a
chunk with 1 labeled row weighs as much as one with 7, the refiner and Multi-Similarity
losses see a chunk instead of the batch, and nothing says so. Such a run is refused before
any update with the command that trains on every GPU correctly (torchrun, one process per
GPU) and the way to train on one."""


class DataParallelRefused(RuntimeError):
    pass


def message(gpus: int) -> str:
    return (f"{gpus} GPUs are visible but mmf_run was not started by torchrun: rc10 would wrap the model in "
            "torch.nn.DataParallel, which splits each batch into per-GPU chunks and averages their losses (labeled "
            "rows weighed unevenly, refiner and Multi-Similarity losses on chunks). Start one process per GPU: "
            f"`torchrun --nproc_per_node={gpus} $(which mmf_run) config=...`; or train on one GPU: "
            "`CUDA_VISIBLE_DEVICES=0 mmf_run config=...`")


def apply() -> None:
    import torch
    from mmf.trainers.base_trainer import BaseTrainer

    original = BaseTrainer.parallelize_model
    if hasattr(original, "__wrapped__"):
        return

    def parallelize_model(self):
        if "cuda" in str(self.device) and torch.cuda.device_count() > 1 and not self.distributed:
            raise DataParallelRefused(message(torch.cuda.device_count()))
        original(self)

    parallelize_model.__wrapped__ = original
    BaseTrainer.parallelize_model = parallelize_model
