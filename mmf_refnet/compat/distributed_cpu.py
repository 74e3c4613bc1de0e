"""rc10's distributed code assumes NCCL and CUDA:

* ``get_rank``/``get_world_size``/``synchronize`` return 0/1/no-op whenever NCCL is
  unavailable, so on CPU (gloo) every rank believes it is rank 0 of 1;
* ``distributed_init`` all-reduces a ``.cuda()`` tensor;
* ``BaseTrainer._set_device`` forces ``cuda:<rank>`` when distributed, and ignores
  ``training.device`` (``cpu`` on a GPU machine still trains on the GPU);
* ``parallelize_model`` wraps DDP only on CUDA, so CPU ranks never sync gradients;
* with ``torchrun`` every process gets ``device_id`` 0 (LOCAL_RANK is ignored);
* ``distributed.backend`` defaults to NCCL, which a machine without CUDA cannot start.

The fixes: ``mmf.utils.distributed.dist`` sees "NCCL available" whenever
torch.distributed is; the all-reduce uses the backend's device; the device follows
``training.device`` and LOCAL_RANK; CPU ranks get DDP with ``device_ids=None``; NCCL
becomes gloo (with a line saying so) where there is no CUDA device.
"""

import os

import torch
import torch.distributed as torch_dist


class _DistributedView:
    """``torch.distributed`` as rc10 expects it: any initialized backend counts."""

    def is_nccl_available(self):
        return torch_dist.is_available()

    def __getattr__(self, attr):
        return getattr(torch_dist, attr)


def _backend_device(backend: str) -> torch.device:
    if str(backend).lower() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def distributed_init(config):
    from mmf.utils import distributed

    if config.distributed.world_size == 1:
        raise ValueError("Cannot initialize distributed with distributed.world_size=1")
    if str(config.distributed.backend).lower() == "nccl" and not torch.cuda.is_available():
        print("distributed.backend is nccl but this machine has no CUDA device: using gloo", flush=True)
        config.distributed.backend = "gloo"
    if str(config.distributed.backend).lower() == "nccl" and "LOCAL_RANK" in os.environ:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    if not torch_dist.is_initialized():
        print(f"Distributed Init (Rank {config.distributed.rank}): {config.distributed.init_method}", flush=True)
        torch_dist.init_process_group(
            backend=config.distributed.backend,
            init_method=config.distributed.init_method,
            world_size=config.distributed.world_size,
            rank=config.distributed.rank,
        )
        torch_dist.all_reduce(torch.zeros(1, device=_backend_device(config.distributed.backend)))
        distributed.suppress_output(distributed.is_master())
    config.distributed.rank = torch_dist.get_rank()
    return config.distributed.rank


def _wants_cpu(config) -> bool:
    return "cpu" in str(config.training.get("device", "cuda")) or not torch.cuda.is_available()


def _patch_trainer() -> None:
    from mmf.trainers.base_trainer import BaseTrainer

    original_set_device = BaseTrainer._set_device
    original_parallelize = BaseTrainer.parallelize_model

    def _set_device(self):
        if self.config.distributed.init_method is not None and "LOCAL_RANK" in os.environ:
            self.config.device_id = int(os.environ["LOCAL_RANK"])
        original_set_device(self)
        if _wants_cpu(self.config):
            self.device = torch.device("cpu")
        elif self.distributed:
            torch.cuda.set_device(self.local_rank)
        from mmf.common.registry import registry

        registry.register("current_device", self.device)

    def parallelize_model(self):
        if self.distributed and self.device.type == "cpu":
            from mmf.common.registry import registry

            registry.register("distributed", True)
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=None, find_unused_parameters=self.config.training.find_unused_parameters
            )
            return
        original_parallelize(self)

    BaseTrainer._set_device = _set_device
    BaseTrainer.parallelize_model = parallelize_model


def apply() -> None:
    from mmf.utils import distributed

    distributed.dist = _DistributedView()
    distributed.distributed_init = distributed_init
    try:
        import mmf_cli.run as run_module

        run_module.distributed_init = distributed_init
    except ImportError:
        pass
    _patch_trainer()
