"""Reduced-label training (paper §7, Tables 3-4) and unlabeled annotation files.

rc10's datasets either use every label or crash on rows without one. The
builders ``hateful_memes``, ``mmimdb`` and ``visual_entailment`` are registered
again (through MMF's registry, as any plugin may) with dataset subclasses that:

* keep labels for a seeded fraction ``dataset_config.<name>.label_fraction`` of the
  *training* rows (stratified by class for single-label data); val/test are untouched;
* accept training rows without a label (an extra unlabeled annotation file, or a
  whole unlabeled set for refiner pretraining) by giving them a placeholder target;
* mark every sample with ``labeled`` (bool) when some training row is unlabeled, so
  label-free losses (the refiner's) train on all samples and the label-aware ones
  (downstream, MS) only on labeled ones; every configured loss must be label-aware
  then. With all labels present no field is added (no extra work per step);
* put ``dataset_config.<name>.labeled_per_batch`` labeled rows in every training batch
  when some rows are unlabeled (``data.labeled_batches``; null: random mixing).

The same dataset classes cut each batch's text padding (``text_padding.TextPaddingMixin``).
"""

import copy
import logging
import random
from collections import defaultdict
from typing import List, Optional, Sequence

import torch
from mmf.common.registry import registry
from mmf.datasets.builders.hateful_memes.builder import HatefulMemesBuilder
from mmf.datasets.builders.hateful_memes.dataset import HatefulMemesFeaturesDataset, HatefulMemesImageDataset
from mmf.datasets.builders.mmimdb.builder import MMIMDbBuilder
from mmf.datasets.builders.mmimdb.dataset import MMIMDbDataset
from mmf.datasets.builders.visual_entailment.builder import VisualEntailmentBuilder
from mmf.datasets.builders.visual_entailment.dataset import VisualEntailmentDataset

from mmf_refnet.data.labeled_batches import LabeledBatchSampler, labeled_rows_per_batch
from mmf_refnet.data.row_checks import check_annotation_file
from mmf_refnet.data.text_padding import TextPaddingMixin
from mmf_refnet.losses import LABEL_AWARE_LOSSES

logger = logging.getLogger(__name__)


def select_labeled(labels: Sequence[Optional[object]], fraction: float, seed: int, stratify: bool = True) -> List[bool]:
    """Which rows keep their label: a seeded ``fraction`` of the rows that have one.

    ``labels`` holds each row's class (None for unlabeled rows). With ``stratify``,
    every class keeps round(fraction × its count) rows, at least one, so rare
    classes do not vanish at 5 %. Deterministic for a seed.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"label_fraction must be in (0, 1], got {fraction}")
    keep = [label is not None for label in labels]
    if fraction == 1.0:
        return keep
    groups = defaultdict(list)
    for index, label in enumerate(labels):
        if label is not None:
            groups[label if stratify else "all"].append(index)
    rng = random.Random(seed)
    chosen = set()
    for key in sorted(groups, key=str):
        members = groups[key]
        rng.shuffle(members)
        chosen.update(members[: max(1, round(fraction * len(members)))])
    return [index in chosen for index in range(len(labels))]


def check_losses_are_label_aware(config, dataset_name: str, unlabeled: int) -> None:
    """Refuse a model whose losses would read unlabeled rows' placeholder targets as labels.

    Every configured loss must be label-aware (``losses.LABEL_AWARE_LOSSES``:
    ``labeled_cross_entropy``, ``labeled_logit_bce``, ``refnet_refiner``,
    ``refnet_multi_similarity``), as the ReFNet models' defaults are.
    """
    model = config.get("model") if config is not None else None
    if not model:
        return
    losses = config.get("model_config", {}).get(model, {}).get("losses") or []
    names = [loss if isinstance(loss, str) else loss.get("type") for loss in losses]
    plain = [name for name in names if name not in LABEL_AWARE_LOSSES]
    if plain:
        raise ValueError(
            f"dataset_config.{dataset_name}: {unlabeled} training rows have no label (label_fraction < 1 or rows "
            f"without a label), but model '{model}' trains with losses {plain}, which would read their placeholder "
            f"targets as labels. Use model_config.{model}.losses: [labeled_cross_entropy] (or labeled_logit_bce; "
            f"mmf-refnet's labeled-only versions; refnet_refiner and refnet_multi_similarity are label-aware too).")


class LabelFractionMixin:
    """Adds ``label_fraction`` and unlabeled rows to an rc10 dataset (see module doc).

    Subclasses name the annotation field that holds a row's label (``label_key``), the
    placeholder that unlabeled rows get (``placeholder``), and whether labels are
    single-class (``stratify``).
    """

    stratify = True
    label_key: str = "label"
    placeholder = 0

    def __init__(self, config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        self._setup_labels()

    def row_label(self, row):
        return row.get(self.label_key)

    def fill_placeholder(self, row) -> None:
        row[self.label_key] = copy.copy(self.placeholder)  # collation needs a target; no loss reads it

    def _setup_labels(self) -> None:
        check_annotation_file(self)  # bad rows, labels and num_labels are named before any training
        fraction = float(self.config.get("label_fraction", 1.0))
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"dataset_config.{self.dataset_name}.label_fraction must be in (0, 1], got {fraction}")
        rows = [self.annotation_db[i] for i in range(len(self.annotation_db))]
        labels = [self.row_label(row) for row in rows]
        if self.dataset_type != "train":
            self._labeled = None
            return
        seed = int(self.config.get("label_fraction_seed", 0))
        keep = select_labeled(labels, fraction, seed, self.stratify)
        self._labeled = None if all(keep) else keep
        if self._labeled is not None:
            check_losses_are_label_aware(registry.get("config"), self.dataset_name, len(keep) - sum(keep))

    def __getitem__(self, idx):
        if self._labeled is not None and not self._labeled[idx]:
            row = self.annotation_db[idx]
            if self.row_label(row) is None:
                self.fill_placeholder(row)
        sample = super().__getitem__(idx)
        if self._labeled is not None:
            sample.labeled = torch.tensor(self._labeled[idx], dtype=torch.bool)
        return sample

    def train_batch_sampler(self, batch_size: int, seed: int, num_replicas: int = 1, rank: int = 0):
        """This rank's training batches (the hook of ``data.resumable``): ``labeled_per_batch`` labeled
        rows in each when some rows are unlabeled (``data.labeled_batches``), else rc10's random mixing."""
        from mmf_refnet.data.resumable import default_batch_sampler

        count = self._labeled_per_batch(batch_size * num_replicas)
        if count is None:
            return default_batch_sampler(self, batch_size=batch_size, seed=seed, num_replicas=num_replicas, rank=rank)
        return LabeledBatchSampler(self._labeled, batch_size, count, seed, num_replicas, rank)

    def _labeled_per_batch(self, global_batch: int) -> Optional[int]:
        key = f"dataset_config.{self.dataset_name}.labeled_per_batch"
        count = labeled_rows_per_batch(self.config.get("labeled_per_batch", None), global_batch, key)
        if count is None or self._labeled is None or not any(self._labeled):
            return None  # natural mixing; every row labeled; or none (refiner pretraining)
        pool = sum(self._labeled)
        if pool < count:
            logger.warning(f"{key} asks for {count} labeled rows per batch but only {pool} training rows are "
                           f"labeled: every batch carries all {pool}")
        return count


class HatefulMemesDataset(TextPaddingMixin, LabelFractionMixin, HatefulMemesFeaturesDataset):
    pass


class MMIMDbLabelFractionDataset(TextPaddingMixin, LabelFractionMixin, MMIMDbDataset):
    stratify = False  # multilabel: a plain random subset
    label_key, placeholder = "genres", ["<unlabeled>"]  # maps to the answer vocabulary's <unk> slot

    def row_label(self, row):
        genres = row.get("genres")
        return tuple(sorted(genres)) if genres else None


class VisualEntailmentLabelFractionDataset(TextPaddingMixin, LabelFractionMixin, VisualEntailmentDataset):
    label_key, placeholder = "gold_label", "entailment"


class HatefulMemesImagesDataset(TextPaddingMixin, HatefulMemesImageDataset):
    """rc10's image (not feature) variant, with dynamic text padding only."""


@registry.register_builder("hateful_memes")
class HatefulMemesLabelFractionBuilder(HatefulMemesBuilder):
    def load(self, config, dataset_type, *args, **kwargs):
        if not config.use_features:
            self.dataset_class = HatefulMemesImagesDataset
            self.dataset = super(HatefulMemesBuilder, self).load(config, dataset_type, *args, **kwargs)
            return self.dataset
        self.dataset_class = HatefulMemesDataset
        self.dataset = super(HatefulMemesBuilder, self).load(config, dataset_type, *args, **kwargs)
        return self.dataset


@registry.register_builder("mmimdb")
class MMIMDbLabelFractionBuilder(MMIMDbBuilder):
    def __init__(self):
        super().__init__()
        self.dataset_class = MMIMDbLabelFractionDataset


@registry.register_builder("visual_entailment")
class VisualEntailmentLabelFractionBuilder(VisualEntailmentBuilder):
    def __init__(self):
        super().__init__()
        self.dataset_class = VisualEntailmentLabelFractionDataset
