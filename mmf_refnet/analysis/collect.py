"""Load a trained ReFNet checkpoint (any backbone) through MMF's own machinery and collect,
for a split, its fused embeddings, refiner outputs, refiner targets and labels.

The checkpoint's saved config is rebuilt into a full MMF Configuration (defaults,
dataset and model configs, then the saved values, then ``overrides``), the dataset
comes from MMF's builder and the model from ``build_model`` + the saved weights.
"""

import argparse
import os
import tempfile
from typing import Dict, List, Optional

import numpy as np
import torch
import yaml
from tqdm import tqdm

from mmf_refnet import checkpoint_files


def add_checkpoint_options(parser: argparse.ArgumentParser) -> None:
    """The options that say which data a checkpoint is run on (``refnet analyze graph|tsne``)."""
    parser.add_argument("--split", default="val", choices=("train", "val", "test"), help="checkpoint mode: data split")
    parser.add_argument("--max-samples", type=int, default=None, help="checkpoint mode: at most this many samples")
    parser.add_argument("--device", default="cpu", help="checkpoint mode: where the model runs")
    parser.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                        help="checkpoint mode: MMF override for loading data, e.g. env.data_dir=/data (repeatable)")


def read_checkpoint(path: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint '{path}' does not exist")
    state = checkpoint_files.read_checkpoint(path, map_location="cpu")  # safe loading; damaged files are named
    if "config" not in state or "model" not in state:
        raise ValueError(
            f"'{path}' is not an MMF training checkpoint (needs 'model' and 'config'; use best.ckpt or current.ckpt, "
            "not <model>_final.pth)"
        )
    return state


def configuration_from_checkpoint(state: dict, overrides: List[str]):
    """MMF Configuration from the checkpoint's saved config plus command-line style overrides."""
    from mmf.utils.configuration import Configuration

    saved = state["config"]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(saved, handle)
    opts = [f"config={handle.name}", f"model={saved['model']}", f"dataset={saved['datasets']}", *overrides]
    try:
        return Configuration(argparse.Namespace(opts=opts, config_override=None)).get_config()
    finally:
        os.unlink(handle.name)


def load_model(config, state: dict) -> torch.nn.Module:
    from mmf.utils.build import build_model
    from omegaconf import open_dict

    from mmf_refnet.models.base import ReFNetModel

    attributes = config.model_config[config.model]
    with open_dict(attributes):
        attributes.model = config.model
    model = build_model(attributes)
    if not isinstance(model, ReFNetModel):
        raise ValueError(f"model '{config.model}' has no refiner: analysis needs a ReFNet model's checkpoint "
                         "(refnet, refnet_ms, visual_bert_refnet, mmbt_refnet)")
    weights = {key.replace("module.", "", 1) if key.startswith("module.") else key: value
               for key, value in state["model"].items()}
    model.load_state_dict(weights)
    return model.eval()


def build_loader(config, split: str, device: str = "cpu"):
    from mmf.common.registry import registry
    from mmf.utils.build import build_dataloader_and_sampler, build_dataset

    registry.register("current_device", torch.device(device))  # where rc10 datasets move batches

    dataset_name = str(config.datasets).split(",")[0]
    dataset = build_dataset(dataset_name, config.dataset_config[dataset_name], split)
    loader, _ = build_dataloader_and_sampler(dataset, config.training)
    return dataset, loader


def load_checkpoint_model(checkpoint: str, overrides: Optional[List[str]] = None, device: str = "cpu"):
    """(config, model in eval mode) for an MMF checkpoint of a ReFNet model."""
    state = read_checkpoint(checkpoint)
    config = configuration_from_checkpoint(state, [f"training.device={device}", *(overrides or [])])
    return config, load_model(config, state).to(device)


@torch.no_grad()
def collect_from_model(config, model, split: str = "val", max_samples: Optional[int] = None, progress: bool = True,
                       device: str = "cpu") -> Dict[str, np.ndarray]:
    """Arrays for ``split``: ``fused`` (n, k), ``refined_<m>`` and ``target_<m>`` (n, d), ``labels`` (n,) or (n, C)."""
    dataset, loader = build_loader(config, split, device)
    parts: Dict[str, list] = {}
    total = len(dataset) if max_samples is None else min(len(dataset), max_samples)
    seen = 0
    with tqdm(total=total, desc=f"embeddings ({split})", disable=not progress) as bar:
        for batch in loader:
            batch = dataset.prepare_batch(batch)
            output = model.head_outputs(batch)  # no losses
            take = min(len(output["fused_embedding"]), total - seen)
            _append(parts, "fused", output["fused_embedding"][:take])
            for index, modality in enumerate(output["refiner_modalities"]):
                _append(parts, f"refined_{modality}", output["refiner_outputs"][index][:take])
                _append(parts, f"target_{modality}", output["refiner_targets"][index][:take])
            if "targets" in batch:
                _append(parts, "labels", batch.targets[:take])
            seen += take
            bar.update(take)
            if seen >= total:
                break
    return {key: np.concatenate(values) for key, values in parts.items()}


def collect_embeddings(checkpoint: str, split: str = "val", max_samples: Optional[int] = None,
                       overrides: Optional[List[str]] = None, progress: bool = True, device: str = "cpu"
                       ) -> Dict[str, np.ndarray]:
    """Load ``checkpoint`` through MMF and collect its embeddings on ``split`` (see collect_from_model)."""
    config, model = load_checkpoint_model(checkpoint, overrides, device)
    return collect_from_model(config, model, split, max_samples, progress, device)


def _append(parts: dict, key: str, tensor: torch.Tensor) -> None:
    parts.setdefault(key, []).append(tensor.detach().float().cpu().numpy())
