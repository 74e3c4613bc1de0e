"""Load-time checks of the annotation rows that MMF's datasets read.

rc10 reads rows lazily, so a bad row fails deep inside a batch with an error that
names no file (``KeyError: 'text'``, ``TypeError`` for a string label,
``IndexError`` for a label out of range), an empty split divides by zero, duplicate
Hateful Memes ids give a predictions CSV with more rows than ids, a model whose
``num_labels`` does not match the data trains with ``roc_auc: nan``, and an
unlabeled test split fails with ``KeyError: 'targets'`` after training. Here every
annotation file is checked when its dataset is built (MMF builds one per file,
before any training); an :class:`AnnotationError` names the file, line, row id,
key, value and what was expected.

Checked per file:

* it has at least one row;
* every row has the keys the dataset reads, with the right type (Hateful Memes and
  the demo: ``id``, ``img``, ``text``; MM-IMDB: ``plot``; SNLI-VE: ``sentence2``,
  ``Flikr30kID``);
* labels: Hateful Memes an integer in ``[0, num_labels)``; MM-IMDB every genre in
  the class list; SNLI-VE ``gold_label`` one of the three classes;
* Hateful Memes ids are unique (both lines are named);
* a split evaluated with losses and metrics (val while training, test under
  ``run_type`` with ``inference``/``test``) has a label on every row;
* training files: the model's ``num_labels`` equals the dataset's class count.
"""

import difflib
import os
from typing import Dict, List, Optional, Sequence

from mmf.common.registry import registry

MAX_SHOWN = 20
VE_LABELS = ("entailment", "neutral", "contradiction")
EVALUATING_RUN_TYPES = ("inference", "test", "predict")
NUM_LABELS_ONE = (
    "num_labels: 1 means a single logit: softmax cross-entropy over one class is 0 for every sample "
    "(nothing would train), and roc_auc, binary_f1 and the predictions CSV read the probability of class 1 "
    "(scores[:, 1]). Binary data needs num_labels: 2 (two logits, MMF's convention)"
)


class AnnotationError(ValueError):
    """A bad annotation file; the message lists each problem with file, line and row id."""


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_text(value) -> bool:
    return isinstance(value, str)


def _is_plot(value) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and bool(value) and isinstance(value[0], str))


def _is_int_id(value) -> bool:
    return _is_int(value) or (isinstance(value, str) and value.strip().isdigit())


def _is_name(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


class RowFormat:
    """What a dataset reads from a row: required keys (check, expectation), label and id keys."""

    def __init__(self, required: Dict[str, tuple], labels: type, id_key: Optional[str] = None,
                 unique_ids: bool = False):
        self.required, self.labels, self.id_key, self.unique_ids = required, labels, id_key, unique_ids


class AnnotationFile:
    """One dataset's annotation rows with the file and line of each (for messages)."""

    def __init__(self, dataset, row_format: RowFormat):
        db = dataset.annotation_db
        self.dataset, self.format = dataset, row_format
        self.path = getattr(db, "path", None) or "<annotation file>"
        self.rows = [db[index] for index in range(len(db))]
        self.lines: Optional[Sequence[int]] = getattr(db, "line_numbers", None)
        self.name, self.split = dataset.dataset_name, dataset.dataset_type

    def where(self, index: int, with_path: bool = True) -> str:
        place = f"line {self.lines[index]}" if self.lines else f"row {index}"
        row = self.rows[index]
        row_id = row.get(self.format.id_key) if self.format.id_key and isinstance(row, dict) else None
        return (f"{self.path}, " if with_path else "") + place + (f" (id {row_id!r})" if row_id is not None else "")

    @property
    def described(self) -> str:
        return f"{self.path} (dataset_config.{self.name}.annotations.{self.split})"


# --------------------------------------------------------------------------- model settings


def model_num_labels(config) -> Optional[tuple]:
    """(model name, num_labels) when the model classifies with num_labels outputs, else None."""
    if config is None or not config.get("model"):
        return None
    model = config.model
    attributes = config.get("model_config", {}).get(model)
    if isinstance(attributes, str):  # rc10 lets one model's config point at another's
        model, attributes = attributes, config.model_config.get(attributes)
    if attributes is None or attributes.get("num_labels") is None:
        return None
    if attributes.get("training_head_type", "classification") != "classification":
        return None
    if attributes.get("pretrain_refiner", False):  # labels are not used
        return None
    return model, int(attributes.num_labels)


def _evaluation_reads_labels(config) -> bool:
    """Metrics, or a model loss that reads targets (refiner pretraining and loss-free models read none)."""
    if config.get("evaluation", {}).get("metrics"):
        return True
    attributes = config.get("model_config", {}).get(config.get("model")) or {}
    if isinstance(attributes, str) or attributes.get("pretrain_refiner", False):
        return False
    return bool(attributes.get("losses"))


def split_needs_labels(config, split: str) -> Optional[str]:
    """Why ``split`` must be labeled under this config's run_type (None when it need not be)."""
    if not _evaluation_reads_labels(config):
        return None
    run_type = str(config.get("run_type", "train"))
    predict = bool(config.get("evaluation", {}).get("predict", False))
    if split == "val" and "train" in run_type:
        return f"run_type={run_type} evaluates the val split with losses and metrics during training"
    if split == "val" and "val" in run_type and not predict:
        return f"run_type={run_type} evaluates the val split with losses and metrics"
    if split == "test" and any(kind in run_type for kind in EVALUATING_RUN_TYPES) and not predict:
        return (f"run_type={run_type} evaluates the test split with losses and metrics after training. Train with "
                "run_type=train_val, then write predictions for unlabeled rows with mmf_predict (run_type=test "
                "checkpoint.resume_file=<save_dir>/best.ckpt checkpoint.resume_pretrained=False), which needs no labels")
    return None


# --------------------------------------------------------------------------- per-row checks


def _missing_or_wrong(annotations: AnnotationFile, index: int) -> List[str]:
    row = annotations.rows[index]
    problems = []
    for key, (valid, expected) in annotations.format.required.items():
        if key not in row:
            problems.append(f"{annotations.where(index)}: no '{key}' key; expected {expected}")
        elif not valid(row[key]):
            problems.append(f"{annotations.where(index)}: '{key}' is {row[key]!r}; expected {expected}")
    return problems


def _duplicates(annotations: AnnotationFile) -> List[str]:
    first_index: Dict[object, int] = {}
    problems = []
    key = annotations.format.id_key
    for index, row in enumerate(annotations.rows):
        if key not in row:
            continue
        row_id = str(row[key]).strip()
        if row_id in first_index:
            first = first_index[row_id]
            where = f"line {annotations.lines[first]}" if annotations.lines else f"row {first}"
            problems.append(f"{annotations.where(index)}: duplicate id {row[key]!r}, first on {where}; ids must be "
                            "unique (the predictions file has one row per id)")
        else:
            first_index[row_id] = index
    return problems


class Labels:
    """One dataset's labels: whether a row has one, what is wrong with it, how many classes."""

    key = "label"

    def __init__(self, dataset, annotations: AnnotationFile):
        self.dataset, self.annotations = dataset, annotations

    def present(self, row) -> bool:
        return row.get(self.key) is not None

    def problem(self, value) -> Optional[str]:
        raise NotImplementedError

    def classes(self, values: list) -> tuple:
        """(number of classes, where that number comes from)."""
        raise NotImplementedError

    def out_of_range(self, value, num_labels: Optional[int]) -> Optional[str]:
        return None


class HatefulMemesLabels(Labels):
    def problem(self, value) -> Optional[str]:
        if _is_int(value):
            return None
        kind = "a string" if isinstance(value, str) else type(value).__name__
        return f"'label' is {value!r} ({kind}); expected an integer class index"

    def out_of_range(self, value, num_labels: Optional[int]) -> Optional[str]:
        if value < 0 or (num_labels is not None and value >= num_labels):
            expected = f"in [0, {num_labels})" if num_labels is not None else "(>= 0)"
            return f"'label' is {value}; expected an integer class index {expected}"
        return None

    def classes(self, values: list) -> tuple:
        found = f"labels found: {sorted(set(values))}"
        classes_file = os.path.join(os.path.dirname(self.annotations.path), "classes.txt")
        if not os.path.isfile(classes_file):
            return 2, f"the Hateful Memes layout is binary without a classes.txt beside the annotations; {found}"
        with open(classes_file, encoding="utf-8") as handle:
            count = len([line for line in handle if line.strip()])
        return count, f"{classes_file} lists {count}; {found}"


class MMIMDbLabels(Labels):
    key = "genres"

    def present(self, row) -> bool:
        return bool(row.get(self.key))

    @property
    def processor(self):
        """The dataset's answer processor (built here: MMF builds processors after the dataset)."""
        if getattr(self, "_processor", None) is None:
            from mmf.utils.build import build_processors

            config = {"answer_processor": self.dataset.config.processors.answer_processor}  # a node: interpolations resolve
            self._processor = build_processors(config, None, data_dir=self.dataset.config.data_dir)["answer_processor"]
        return self._processor

    @property
    def vocab_file(self) -> str:
        params = self.dataset.config.processors.answer_processor.get("params", {})
        return params.get("vocab_file", "the answer vocabulary")

    def problem(self, value) -> Optional[str]:
        if not isinstance(value, list) or not all(isinstance(genre, str) for genre in value):
            return f"'genres' is {value!r}; expected a list of genre names"
        vocab = self.processor.answer_vocab
        indices = self.processor({"answers": value})["answers_indices"].tolist()
        unknown = [genre for genre, index in zip(value, indices) if index == vocab.get_unk_index()]
        if not unknown:
            return None
        known = [word for word in vocab.word_list if word != vocab.get_unk_token()]
        near = difflib.get_close_matches(unknown[0], known, n=3)
        hint = f" (nearest: {', '.join(near)})" if near else ""
        return f"genre {unknown[0]!r} is not in the class list {self.vocab_file}{hint}"

    def classes(self, values: list) -> tuple:
        return self.processor.get_vocab_size(), f"{self.vocab_file}: its genres + MMF's <unk> slot of the answer vocabulary"


class VisualEntailmentLabels(Labels):
    key = "gold_label"

    def problem(self, value) -> Optional[str]:
        return None if value in VE_LABELS else f"'gold_label' is {value!r}; expected one of {list(VE_LABELS)}"

    def classes(self, values: list) -> tuple:
        return len(VE_LABELS), f"SNLI-VE: {', '.join(VE_LABELS)}"


HATEFUL_MEMES = RowFormat({
    "id": (_is_int_id, "an integer id (rc10 converts it with int())"),
    "img": (_is_name, "the image path, e.g. 'img/01234.png' (its basename names the feature)"),
    "text": (_is_text, "the caption, a string"),
}, labels=HatefulMemesLabels, id_key="id", unique_ids=True)
MMIMDB = RowFormat({"plot": (_is_plot, "the plot, a string or a list of strings")}, labels=MMIMDbLabels, id_key="id")
VISUAL_ENTAILMENT = RowFormat({
    "sentence2": (_is_text, "the hypothesis, a string"),
    "Flikr30kID": (_is_name, "the Flickr30k image name, e.g. '3000001.jpg' (it names the feature)"),
}, labels=VisualEntailmentLabels)


# --------------------------------------------------------------------------- the check


def _num_labels_problem(labels: Labels, values: list, model: tuple) -> Optional[str]:
    name, num_labels = model
    count, source = labels.classes(values)
    if num_labels == count:
        return None
    message = (f"model_config.{name}.num_labels is {num_labels}, but the data has {count} classes ({source}). "
               f"Set model_config.{name}.num_labels={count}")
    if num_labels == 1 and count == 2:
        return f"{message}. {NUM_LABELS_ONE}"
    return message + (f": with {num_labels} outputs for {count} classes the extra outputs are never a target, "
                      "roc_auc is nan on every evaluation and no best checkpoint is written"
                      if num_labels > count else "")


def _label_rows(annotations: AnnotationFile, labels: Labels) -> tuple:
    """(problems of single labels, [(index, label)] of valid ones, indices of unlabeled rows)."""
    problems, found, unlabeled = [], [], []
    for index, row in enumerate(annotations.rows):
        if not labels.present(row):
            unlabeled.append(index)
        elif labels.problem(row[labels.key]):
            problems.append(f"{annotations.where(index)}: {labels.problem(row[labels.key])}")
        else:
            found.append((index, row[labels.key]))
    return problems, found, unlabeled


def _unlabeled_problem(annotations: AnnotationFile, labels: Labels, unlabeled: list, config) -> List[str]:
    reason = split_needs_labels(config, annotations.split) if config is not None else None
    if not unlabeled or not reason or annotations.split == "train":
        return []
    first = annotations.where(unlabeled[0], with_path=False)
    return [f"{len(unlabeled)} of {len(annotations.rows)} rows have no '{labels.key}' (first: {first}), but {reason}"]


def _num_labels_problems(annotations: AnnotationFile, labels: Labels, found: list, config) -> List[str]:
    """The model's num_labels against the classes (training files), then each label's range."""
    model = model_num_labels(config)
    if model and annotations.split == "train" and found:
        problem = _num_labels_problem(labels, [value for _, value in found], model)
        if problem:
            return [problem]  # it explains any label out of range
    num_labels = model[1] if model else None
    return [f"{annotations.where(index)}: {labels.out_of_range(value, num_labels)}"
            for index, value in found if labels.out_of_range(value, num_labels)]


def _row_format(dataset) -> Optional[RowFormat]:
    from mmf.datasets.builders.hateful_memes.dataset import HatefulMemesFeaturesDataset
    from mmf.datasets.builders.mmimdb.dataset import MMIMDbDataset
    from mmf.datasets.builders.visual_entailment.dataset import VisualEntailmentDataset

    for cls, row_format in ((HatefulMemesFeaturesDataset, HATEFUL_MEMES), (MMIMDbDataset, MMIMDB),
                            (VisualEntailmentDataset, VISUAL_ENTAILMENT)):
        if isinstance(dataset, cls):
            return row_format
    return None


def check_annotation_file(dataset) -> None:
    """Check the rows of one MMF dataset (one annotation file); raise :class:`AnnotationError`."""
    row_format = _row_format(dataset)
    if row_format is None:
        return
    annotations = AnnotationFile(dataset, row_format)
    if not annotations.rows:
        raise AnnotationError(f"{annotations.described} has no rows: every split needs at least one annotated row")
    config, labels = registry.get("config"), row_format.labels(dataset, annotations)
    problems = [problem for index in range(len(annotations.rows)) for problem in _missing_or_wrong(annotations, index)]
    if row_format.unique_ids:
        problems.extend(_duplicates(annotations))
    label_problems, found, unlabeled = _label_rows(annotations, labels)
    problems += label_problems + _unlabeled_problem(annotations, labels, unlabeled, config)
    if not problems:
        problems = _num_labels_problems(annotations, labels, found, config)
    if problems:
        shown = "\n  ".join(problems[:MAX_SHOWN])
        more = f"\n  ... and {len(problems) - MAX_SHOWN} more" if len(problems) > MAX_SHOWN else ""
        raise AnnotationError(f"{len(problems)} problem(s) in {annotations.described}:\n  {shown}{more}")
