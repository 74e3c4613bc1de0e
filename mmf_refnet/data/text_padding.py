"""Dynamic text padding: each batch's text only as long as its longest row.

rc10's ``bert_tokenizer`` pads every text to ``max_seq_length`` (128 for Hateful
Memes and SNLI-VE, 256 for MM-IMDb), and ViLBERT's text stream and co-attention
then run over the padding. The datasets mmf-refnet registers (``hateful_memes``,
``mmimdb``, ``visual_entailment``, ``emoji_memes``) cut each batch's text fields
(``input_ids``, ``input_mask``, ``segment_ids``, ``lm_label_ids``) to the longest
row in ``prepare_batch``, before the batch moves to the device, so every model
(stock ``vilbert`` included) and every path (training, evaluation,
``mmf_predict``) gets the short batch. Rows are still tokenized and truncated
at ``max_seq_length`` as before; only columns that are padding in every row
(``input_mask`` 0) are dropped.

The result is unchanged: ViLBERT adds -10000 to the attention scores of masked
keys (text self-attention, and the text keys of the image-to-text co-attention),
so a padded key's softmax weight is exactly 0 in fp32; the rc10 co-attention
mask (B × regions × tokens) is read by no layer; the pooled text output is the
first token's. Padded query rows are computed and thrown away.

Keys under ``training:`` (defaults in mmf_root/configs/defaults.yaml):

``text_padding`` (``auto``)
    ``longest``: the longest row, rounded up to ``text_padding_multiple``;
    ``buckets``: the smallest of a few fixed lengths that holds the longest row,
    so shapes repeat (``training.compile`` with CUDA graphs records one graph
    per shape); ``off``: rc10's padding to ``max_seq_length``; ``auto``:
    ``buckets`` when ``training.compile`` is set, else ``longest``.
``text_padding_multiple`` (``8``)
    Round lengths up to a multiple of this (tensor-core friendly shapes; fewer
    distinct shapes). Never beyond the batch's padded width.
``text_padding_buckets`` (``null``)
    The bucket lengths; null: 16, 32, 64, … below ``max_seq_length``, and
    ``max_seq_length`` itself, which is always the last bucket.
"""

import math
from typing import List, Optional, Sequence

import torch

TEXT_FIELDS = ("input_ids", "input_mask", "segment_ids", "lm_label_ids")
MODES = ("auto", "longest", "buckets", "off")
DEFAULTS = {"text_padding": "auto", "text_padding_multiple": 8, "text_padding_buckets": None}
SMALLEST_DEFAULT_BUCKET = 16


def padding_mode(setting, compile_setting=False) -> str:
    """``training.text_padding`` resolved to ``longest``, ``buckets`` or ``off``.

    YAML reads a bare ``off`` as false; ``true`` means ``auto``.
    """
    if setting is None or setting is True:
        setting = "auto"
    if setting is False:
        setting = "off"
    mode = str(setting).strip().lower()
    if mode not in MODES:
        raise ValueError(f"training.text_padding must be one of {MODES}, got {setting!r}")
    if mode == "auto":
        return "buckets" if compile_setting else "longest"
    return mode


def default_buckets(width: int) -> List[int]:
    """16, 32, 64, … below ``width``, then ``width``."""
    buckets, length = [], SMALLEST_DEFAULT_BUCKET
    while length < width:
        buckets.append(length)
        length *= 2
    return buckets + [width]


def padded_length(longest: int, width: int, mode: str, multiple: int = 8,
                  buckets: Optional[Sequence[int]] = None) -> int:
    """The text length a batch is cut to: its longest row, rounded by ``mode``, never above ``width``."""
    longest = max(1, min(int(longest), width))
    if mode == "off":
        return width
    if mode == "buckets":
        candidates = sorted(b for b in (buckets or default_buckets(width)) if b < width) + [width]
        return next(b for b in candidates if b >= longest)
    return min(width, math.ceil(longest / multiple) * multiple)


def longest_row(input_mask: torch.Tensor) -> int:
    """1 + the last position any row attends to (0 for an all-padding batch)."""
    used = input_mask.ne(0).any(dim=0).nonzero()
    return int(used[-1]) + 1 if used.numel() else 0


class TextPadding:
    """Cuts a collated SampleList's text fields to ``padded_length``; see the module doc."""

    def __init__(self, mode: str = "longest", multiple: int = 8, buckets: Optional[Sequence[int]] = None,
                 dataset_name: str = "dataset"):
        if mode not in MODES[1:]:
            raise ValueError(f"text padding mode must be one of {MODES[1:]}, got {mode!r}")
        if int(multiple) < 1:
            raise ValueError(f"training.text_padding_multiple must be >= 1, got {multiple}")
        if buckets is not None and (not buckets or any(int(b) < 1 for b in buckets)):
            raise ValueError(f"training.text_padding_buckets must be positive lengths (or null), got {list(buckets)}")
        self.mode, self.multiple, self.dataset_name = mode, int(multiple), dataset_name
        self.buckets = None if buckets is None else sorted(int(b) for b in buckets)

    @classmethod
    def from_config(cls, config, dataset_name: str = "dataset") -> "TextPadding":
        """From ``training.text_padding*`` (module defaults where the config lacks a key)."""
        training = config.get("training", {}) if config is not None else {}
        option = {key: training.get(key, default) for key, default in DEFAULTS.items()}
        buckets = option["text_padding_buckets"]
        mode = padding_mode(option["text_padding"], training.get("compile", False))
        multiple = DEFAULTS["text_padding_multiple"] if option["text_padding_multiple"] is None \
            else option["text_padding_multiple"]
        return cls(mode, multiple, None if buckets is None else list(buckets), dataset_name)

    def describe(self) -> str:
        if self.mode == "off":
            return "text padding off (every text at max_seq_length)"
        if self.mode == "buckets":
            return f"text padding: buckets {self.buckets or 'default (16, 32, 64, ... max_seq_length)'}"
        return f"text padding: longest row, rounded up to a multiple of {self.multiple}"

    def __call__(self, sample_list):
        mask = sample_list.get("input_mask") if hasattr(sample_list, "get") else None
        if self.mode == "off" or not isinstance(mask, torch.Tensor) or mask.dim() != 2:
            return sample_list
        width = mask.size(1)
        length = padded_length(longest_row(mask), width, self.mode, self.multiple, self.buckets)
        if length == width:
            return sample_list
        self._check_padding(sample_list, length)
        for field in TEXT_FIELDS:
            value = sample_list.get(field)
            if isinstance(value, torch.Tensor) and value.dim() >= 2 and value.size(1) == width:
                sample_list[field] = value[:, :length].contiguous()
        return sample_list

    def _check_padding(self, sample_list, length: int) -> None:
        """The cut columns must be padding in ``input_ids`` too (id 0), else tokens would be lost."""
        ids = sample_list.get("input_ids")
        if isinstance(ids, torch.Tensor) and ids.dim() == 2 and bool(ids[:, length:].ne(0).any()):
            raise ValueError(
                f"{self.dataset_name}: input_mask marks columns {length}.. as padding in every row, but input_ids "
                f"holds non-zero ids there; dynamic padding would drop them. Fix the text processor's mask, or set "
                f"training.text_padding=off to keep every text at max_seq_length.")


class TextPaddingMixin:
    """For MMF datasets: ``prepare_batch`` cuts text padding first (``TextPadding``), then moves the batch."""

    _text_padding: Optional[TextPadding] = None

    def text_padding(self) -> TextPadding:
        if self._text_padding is None:
            from mmf.common.registry import registry

            config = getattr(self, "_global_config", None) or registry.get("config", no_warning=True)
            self._text_padding = TextPadding.from_config(config, self.dataset_name)
            writer = registry.get("writer", no_warning=True)
            if writer is not None:
                writer.write(f"{self.dataset_name} ({self.dataset_type}): {self._text_padding.describe()}")
        return self._text_padding

    def prepare_batch(self, batch):
        from mmf.common.sample import SampleList

        if not isinstance(batch, SampleList):
            batch = SampleList(batch)
        return super().prepare_batch(self.text_padding()(batch))
