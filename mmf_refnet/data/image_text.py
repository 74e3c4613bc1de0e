"""MMF dataset ``image_text``: your own rows of (id, img, text, label), one class per row.

rc10's Hateful Memes dataset reads the same jsonl + feature layout but needs integer
ids and two classes (its predictions are ``proba`` of class 1). Here ids may be any
JSON value (the samples carry the row index; predictions map it back), labels are the
values listed in ``dataset_config.image_text.classes`` (strings or integers), and the
predictions file has the predicted class and every class's probability; with two
classes it is Hateful Memes' ``id,proba,label``.
"""

import os
from typing import Dict, List

import torch
from mmf.common.sample import Sample
from mmf.datasets.mmf_dataset import MMFDataset

from mmf_refnet.data.label_fraction import LabelFractionMixin
from mmf_refnet.data.text_padding import TextPaddingMixin

DATASET_NAME = "image_text"


def feature_name(img) -> str:
    """``img/0001.png`` → ``0001.npy``: what ``refnet extract-features`` wrote for that image."""
    return os.path.splitext(os.path.basename(str(img)))[0] + ".npy"


def class_list(config) -> list:
    """``dataset_config.image_text.classes`` as a list (rc10 reads ``classes=[a,b]`` on the command line as a string)."""
    classes = config.get("classes")
    if isinstance(classes, str) or not hasattr(classes, "__len__"):
        raise ValueError(f"dataset_config.{DATASET_NAME}.classes must be a list of label values, got {classes!r} "
                         "(on the command line rc10 reads [a,b] as a string: set it in the config file)")
    return list(classes)


def prediction_rows(ids: List, probabilities: torch.Tensor, classes: List) -> List[Dict]:
    """One dict per sample: HM's ``id, proba, label`` for two classes, else id, label and ``proba_<class>``."""
    predicted = probabilities.argmax(dim=1).tolist()
    rows = []
    for row_id, probs, index in zip(ids, probabilities.tolist(), predicted):
        if len(classes) == 2:
            rows.append({"id": row_id, "proba": probs[1], "label": classes[index]})
        else:
            rows.append({"id": row_id, "label": classes[index], **{f"proba_{c}": p for c, p in zip(classes, probs)}})
    return rows


class ImageTextFeaturesDataset(MMFDataset):
    """Rows → samples: text tokens, region features, class index (as rc10's HatefulMemesFeaturesDataset)."""

    def __init__(self, config, *args, dataset_name=DATASET_NAME, **kwargs):
        super().__init__(dataset_name, config, *args, **kwargs)
        self.classes = class_list(config)
        self.class_index = {value: index for index, value in enumerate(self.classes)}
        self._check_rows()

    def _where(self, index: int) -> str:
        return (f"dataset_config.{self.dataset_name}.annotations.{self.dataset_type} "
                f"({self._get_path_based_on_index(self.config, 'annotations', self._index)}), "
                f"row {index + 1} (id {self.annotation_db[index].get('id')!r})")

    def _check_rows(self) -> None:
        if len(self.classes) < 2:
            raise ValueError(f"dataset_config.{self.dataset_name}.classes must list at least 2 label values, "
                             f"got {self.classes}")
        unlabeled = []
        for index in range(len(self.annotation_db)):
            row = self.annotation_db[index]
            missing = [key for key in ("img", "text") if key not in row]
            if missing:
                raise ValueError(f"{self._where(index)} has no {' / '.join(missing)}")
            if "label" not in row:
                unlabeled.append(index)
            elif row["label"] not in self.class_index:
                raise ValueError(f"{self._where(index)}: label {row['label']!r} is not one of "
                                 f"dataset_config.{self.dataset_name}.classes {self.classes}")
        if unlabeled and self.dataset_type == "val":
            raise ValueError(f"{self._where(unlabeled[0])} has no label: every validation row needs one")
        if unlabeled and self.dataset_type == "test" and len(unlabeled) != len(self.annotation_db):
            raise ValueError(f"{self._where(unlabeled[0])} has no label while other test rows have one: "
                             "label every test row or none (prediction only)")

    def __getitem__(self, idx):
        row = self.annotation_db[idx]
        sample = Sample()
        processed = self.text_processor({"text": row["text"]})
        sample.text = processed["text"]
        if "input_ids" in processed:
            sample.update(processed)
        sample.id = torch.tensor(idx, dtype=torch.long)  # the row; format_for_prediction gives back its id
        sample.update(self.features_db.get({**row, "feature_path": feature_name(row["img"])}))
        if "label" in row:
            sample.targets = torch.tensor(self.class_index[row["label"]], dtype=torch.long)
        return sample

    def format_for_prediction(self, report):
        scores = report.scores.float()
        if scores.size(-1) != len(self.classes):
            raise ValueError(f"the model gives {scores.size(-1)} scores per sample but dataset_config."
                             f"{self.dataset_name}.classes lists {len(self.classes)} classes: set "
                             f"model_config.<model>.num_labels={len(self.classes)}")
        ids = [self.annotation_db[index]["id"] for index in report.id.tolist()]
        return prediction_rows(ids, torch.softmax(scores, dim=1).cpu(), self.classes)


class ImageTextDataset(TextPaddingMixin, LabelFractionMixin, ImageTextFeaturesDataset):
    """``image_text`` with ``label_fraction`` and unlabeled training rows (data/label_fraction)."""

    def row_label(self, row):
        return self.class_index.get(row["label"]) if "label" in row else None

    def fill_placeholder(self, row):
        row["label"] = self.classes[0]  # collation needs a target; the models ignore it (sample.labeled)
