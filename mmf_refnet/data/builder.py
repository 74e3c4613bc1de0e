"""MMF dataset builder ``emoji_memes``: the embedded demo dataset (Hateful Memes layout).

The builder prepares the data on first use (vendored emoji atlas → EfficientNet
region features, cached under ``<env.data_dir>/datasets/emoji_memes/``), checks it
with :func:`validate_dataset_dir` (bad rows, missing or wrong-size features are
named by file/line/id), then hands over to MMF's Hateful Memes machinery.
"""

import os

import torch
from mmf.common.registry import registry
from mmf.datasets.builders.hateful_memes.builder import HatefulMemesBuilder
from mmf.utils.configuration import get_mmf_env

from mmf_refnet.data.emoji_memes import DATASET_NAME, FEATURE_DIM, dataset_root, prepare_emoji_memes, validate_dataset_dir
from mmf_refnet.data.label_fraction import HatefulMemesDataset

CONFIG_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "datasets",
                           "emoji_memes.yaml")


def _check_variant_matches_annotations(config) -> None:
    in_category_dir = str(config.annotation_dir).rstrip("/").endswith("category")
    if (config.variant == "category") != in_category_dir:
        raise ValueError(
            f"dataset_config.{DATASET_NAME}.variant is '{config.variant}' but annotation_dir is "
            f"'{config.annotation_dir}': use emoji_memes/defaults/annotations for 'fit' and "
            "emoji_memes/defaults/annotations/category for 'category'"
        )


def loaded_files(config) -> dict:
    """split -> (annotation files, feature folder) as MMF will open them (relative to ``data_dir``)."""
    def resolve(path):
        return path if os.path.isabs(path) else os.path.join(config.data_dir, path)

    return {split: ([resolve(p) for p in config.annotations[split]], resolve(config.features[split][0]))
            for split in ("train", "val", "test")}


ABLATIONS = ("none", "text", "image")


class EmojiMemesDataset(HatefulMemesDataset):
    """The HM feature dataset (with ``label_fraction``), reporting as ``emoji_memes``.

    ``ablate: text`` / ``image`` blanks one modality (empty caption / zero
    features) so the same models serve as image-only / text-only baselines.
    """

    def __init__(self, config, *args, **kwargs):
        kwargs["dataset_name"] = DATASET_NAME
        super().__init__(config, *args, **kwargs)
        self.ablate = str(config.get("ablate", "none"))
        if self.ablate not in ABLATIONS:
            raise ValueError(f"dataset_config.{DATASET_NAME}.ablate must be one of {ABLATIONS}, got {self.ablate!r}")

    def __getitem__(self, idx):
        sample = super().__getitem__(idx)
        if self.ablate == "image":
            sample.image_feature_0 = torch.zeros_like(sample.image_feature_0)
        elif self.ablate == "text":
            sample.update(self.text_processor({"text": ""}))
        return sample


@registry.register_builder(DATASET_NAME)
class EmojiMemesBuilder(HatefulMemesBuilder):
    def __init__(self, *args, **kwargs):
        super().__init__(DATASET_NAME, EmojiMemesDataset)

    @classmethod
    def config_path(cls):
        return CONFIG_PATH

    def build(self, config, *args, **kwargs):
        """Prepare (cached) and validate the files this run loads; nothing is ever downloaded."""
        _check_variant_matches_annotations(config)
        if config.get("prepare", True):
            data_dir = get_mmf_env(key="data_dir")
            prepare_emoji_memes(data_dir, variant=config.variant, seed=int(config.split_seed),
                                max_emojis=config.get("max_emojis"), confounder_kind=config.confounders)
            for annotations, features in loaded_files(config).values():
                validate_dataset_dir(dataset_root(data_dir), expected_dim=FEATURE_DIM, features_dir=features,
                                     annotation_files=annotations)

    def load(self, config, dataset_type, *args, **kwargs):
        self.dataset_class = EmojiMemesDataset
        self.dataset = super(HatefulMemesBuilder, self).load(config, dataset_type, *args, **kwargs)
        return self.dataset
