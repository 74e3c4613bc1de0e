"""Build MMF configs, models and batches in-process for unit tests."""

import argparse

import numpy as np
import torch
from omegaconf import open_dict
from torch.utils._python_dispatch import TorchDispatchMode

import mmf_refnet  # noqa: F401  (shims + registration)
from tests import replicas, runner


def configuration(tmp_path, model: str, dataset: str = "hateful_memes", opts=()):
    from mmf.utils.configuration import Configuration

    path = runner.tiny_config(str(tmp_path), dataset, model)
    args = argparse.Namespace(opts=[f"config={path}", f"env.save_dir={tmp_path}/save", *opts], config_override=None)
    return Configuration(args).get_config()


def build(config, model: str):
    from mmf.utils.build import build_model

    attributes = config.model_config[model]
    with open_dict(attributes):
        attributes.model = model
    return build_model(attributes)


def batch(size: int = 6, seed: int = 0, targets=None, dataset_type: str = "train", num_labels: int = 2):
    """A collated SampleList shaped like MMF's HM feature dataset output."""
    from mmf.common.sample import Sample, SampleList

    rng = np.random.default_rng(seed)
    samples = []
    for index in range(size):
        features, info = replicas.image_features(rng, index % 2)
        sample = Sample()
        sample.input_ids = torch.tensor(rng.integers(5, replicas.vocab_size(), 8), dtype=torch.long)
        sample.input_mask = torch.ones(8, dtype=torch.long)
        sample.segment_ids = torch.zeros(8, dtype=torch.long)
        sample.image_feature_0 = torch.from_numpy(features)
        sample.image_info_0 = {**info, "max_features": torch.tensor(replicas.N_BOXES)}
        sample.id = torch.tensor(index)
        if targets is None:
            sample.targets = torch.tensor(index % num_labels)
        elif targets is not False:
            sample.targets = targets[index]
        samples.append(sample)
    collated = SampleList(samples)
    collated.dataset_name = "hateful_memes"
    collated.dataset_type = dataset_type
    return collated


class OpRecorder(TorchDispatchMode):
    """Inside ``with``: ``names`` of the ATen ops dispatched, ``host_ops`` those that produced a CPU tensor."""

    def __init__(self):
        super().__init__()
        self.names, self.host_ops = [], []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        self.names.append(name)
        outputs = out if isinstance(out, (tuple, list)) else [out]
        if any(isinstance(o, torch.Tensor) and o.device.type == "cpu" for o in outputs):
            self.host_ops.append(name)
        return out
