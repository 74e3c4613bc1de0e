"""Your own data → an MMF config: ``refnet own-data-config``.

Reads a jsonl of ``{"id", "img", "text", "label"}`` rows (or three, already split),
checks it (every problem named by file and line), splits a single file into
train/dev/test (seeded, stratified by label; unlabeled rows go to training, where they
feed the refiner loss), finds the classes, checks that ``refnet extract-features`` has
written features for every image, and writes a config that includes the template
``projects/refnet/configs/own_data/<model>.yaml`` with these facts filled in:
``mmf_run config=<it>`` trains, ``mmf_predict config=<it> run_type=test`` predicts.

Import-light (no torch / mmf): the ``image_text`` builder uses the checks here too.
"""

import argparse
import json
import math
import os
import random
import sys
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import yaml

from mmf_refnet.data.jsonl_rows import AnnotationFormatError, read_jsonl_with_lines

REQUIRED_KEYS = ("id", "img", "text")
SPLITS = ("train", "val", "test")
SPLIT_FILES = {"train": "train.jsonl", "val": "dev.jsonl", "test": "test.jsonl"}
MODELS = ("refnet_ms", "refnet", "vilbert")
BACKBONES = ("bert-base-uncased", "minilm")
BINARY_METRICS = ["accuracy", "binary_f1", "roc_auc"]
MULTICLASS_METRICS = ["accuracy", "macro_f1"]


class OwnDataError(ValueError):
    pass


def read_rows(path: str) -> List[dict]:
    """The rows of a jsonl file; a bad line, a missing key or a repeated id is an error naming file and line."""
    if not os.path.isfile(path):
        raise OwnDataError(f"annotation file '{path}' does not exist")
    try:
        rows, numbers = read_jsonl_with_lines(path)
    except AnnotationFormatError as error:
        raise OwnDataError(str(error)) from None
    seen = {}
    for row, number in zip(rows, numbers):
        missing = [key for key in REQUIRED_KEYS if key not in row]
        if missing:
            raise OwnDataError(f"{path}, line {number}: no {', '.join(missing)} (rows need id, img, text; label "
                               "optional)")
        key = json.dumps(row["id"])
        if key in seen:
            raise OwnDataError(f"{path}, line {number}: id {row['id']!r} repeats line {seen[key]}")
        seen[key] = number
    if not rows:
        raise OwnDataError(f"annotation file '{path}' has no rows")
    return rows


def _label_kind(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return "other"
    return "int" if isinstance(value, int) else "str"


def find_classes(rows: Sequence[dict], source: str) -> list:
    """The sorted label values; all integers or all strings, at least two."""
    labels = {row["label"] for row in rows if "label" in row and _label_kind(row["label"]) != "other"}
    bad = next((row for row in rows if "label" in row and _label_kind(row["label"]) == "other"), None)
    if bad is not None:
        raise OwnDataError(f"{source}: row id {bad['id']!r} has label {bad['label']!r}; labels are integers or strings")
    kinds = {_label_kind(label) for label in labels}
    if len(kinds) > 1:
        raise OwnDataError(f"{source}: labels mix integers and strings ({sorted(map(repr, labels))}); use one kind")
    if len(labels) < 2:
        raise OwnDataError(f"{source}: found {len(labels)} class(es) {sorted(labels)}; a classifier needs at least 2")
    return sorted(labels)


def split_rows(rows: Sequence[dict], fractions: Sequence[float], seed: int) -> Dict[str, List[dict]]:
    """train/val/test by ``fractions`` of each class's labeled rows (seeded); unlabeled rows train."""
    by_class = defaultdict(list)
    for row in rows:
        by_class[json.dumps(row.get("label"))].append(row)
    rng = random.Random(seed)
    order = {id(row): index for index, row in enumerate(rows)}  # splits keep the file's order
    splits = {split: [] for split in SPLITS}
    for key in sorted(by_class):
        members = list(by_class[key])
        if key == "null":
            splits["train"] += members
            continue
        rng.shuffle(members)
        n_test = round(fractions[2] * len(members))
        n_val = round(fractions[1] * len(members))
        splits["test"] += members[:n_test]
        splits["val"] += members[n_test:n_test + n_val]
        splits["train"] += members[n_test + n_val:]
    for split in SPLITS:
        if not splits[split]:
            raise OwnDataError(f"the {split} split is empty with fractions {list(fractions)} of {len(rows)} rows; "
                               "give more rows or other --split fractions")
        splits[split].sort(key=lambda row: order[id(row)])
    return splits


def feature_files(features_dir: str, img) -> List[str]:
    stem = os.path.splitext(os.path.basename(str(img)))[0]
    return [os.path.join(features_dir, stem + ".npy"), os.path.join(features_dir, stem + "_info.npy")]


def check_features(rows: Sequence[dict], features_dir: str, source: str, images_hint: Optional[str] = None) -> None:
    """Every row's image has the two feature files ``refnet extract-features`` writes."""
    missing = [row for row in rows if not all(os.path.isfile(p) for p in feature_files(features_dir, row["img"]))]
    if not missing:
        return
    examples = "; ".join(f"id {row['id']!r} (img {row['img']!r}) → {feature_files(features_dir, row['img'])[0]}"
                         for row in missing[:3])
    hint = images_hint or "<your image folder>"
    raise OwnDataError(f"{source}: {len(missing)} of {len(rows)} rows have no features in {features_dir}, e.g. "
                       f"{examples}. Extract them with `refnet extract-features --images {hint} --out {features_dir}` "
                       "(features are named after the image file's stem)")


def schedule(train_rows: int, batch_size: int, epochs: float) -> dict:
    """Updates for ``epochs`` passes; evaluate and checkpoint once an epoch, log a few times an epoch."""
    per_epoch = max(1, math.ceil(train_rows / batch_size))
    total = max(1, round(epochs * per_epoch))
    return {"batch_size": batch_size, "max_updates": total, "evaluation_interval": min(per_epoch, total),
            "checkpoint_interval": min(per_epoch, total), "log_interval": max(1, min(100, per_epoch // 4))}


def build_config(template_dir: str, model: str, backbone: str, classes: list, annotations: Dict[str, str],
                 features_dir: str, counts: Dict[str, int], training: dict) -> dict:
    binary = len(classes) == 2
    metric = "roc_auc" if binary else "accuracy"
    includes = [os.path.join(template_dir, f"{model}.yaml")]
    if backbone == "minilm":
        includes.append(os.path.join(template_dir, "minilm.yaml"))
    return {
        "includes": includes,
        "dataset_config": {"image_text": {
            "classes": list(classes),
            "annotations": {split: [path] for split, path in annotations.items()},
            "features": {split: [features_dir] for split in SPLITS},
        }},
        "model_config": {model: {"num_labels": len(classes)}},
        "evaluation": {"metrics": BINARY_METRICS if binary else MULTICLASS_METRICS},
        "scheduler": {"params": {"num_warmup_steps": max(1, training["max_updates"] // 10)}},
        "training": {**training, "early_stop": {"criteria": f"image_text/{metric}", "minimize": False}},
        "_summary": f"{len(classes)} classes {classes}; rows: " + ", ".join(f"{s} {counts[s]}" for s in SPLITS),
    }


def write_jsonl(path: str, rows: Sequence[dict]) -> None:
    with open(path, "w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def write_config(path: str, config: dict, command: str) -> None:
    summary = config.pop("_summary")
    header = (f"# Written by `{command}`\n# {summary}\n"
              "# Train: mmf_run config=<this file>; predict: mmf_predict config=<this file> run_type=test ...\n")
    with open(path, "w") as handle:
        handle.write(header + yaml.safe_dump(config, sort_keys=False))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refnet own-data-config",
        description="Write an MMF config for your own (id, img, text, label) jsonl: one file (split here) or "
                    "train, dev and test files.")
    parser.add_argument("annotations", nargs="+", help="data.jsonl, or train.jsonl dev.jsonl test.jsonl")
    parser.add_argument("--out", required=True, help="config file to write (YAML)")
    parser.add_argument("--features", default=None, help="feature folder (default: features/ next to the jsonl)")
    parser.add_argument("--images", default=None, help="image folder, named in the hint when features are missing")
    parser.add_argument("--model", default="refnet_ms", choices=MODELS)
    parser.add_argument("--backbone", default="bert-base-uncased", choices=BACKBONES,
                        help="text stream: bert-base-uncased (the paper's; Hugging Face hub, cached) or minilm "
                             "(MiniLM-L6 from the installed package with a small visual stream: offline, CPU)")
    parser.add_argument("--split", nargs=3, type=float, default=(0.8, 0.1, 0.1), metavar=("TRAIN", "DEV", "TEST"))
    parser.add_argument("--seed", type=int, default=0, help="split seed")
    parser.add_argument("--epochs", type=float, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--config-dir", default=os.path.join("projects", "refnet", "configs"),
                        help="where the project configs are (default: run from the repository root)")
    return parser


def prepare(args) -> dict:
    """Read, check and split; returns the split files, classes and counts."""
    if len(args.annotations) not in (1, 3):
        raise OwnDataError(f"give one jsonl (split here) or three (train dev test), got {len(args.annotations)}")
    if len(args.annotations) == 1:
        source = os.path.abspath(args.annotations[0])
        fractions = args.split
        if any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
            raise OwnDataError(f"--split fractions must be >= 0 and sum to 1, got {list(fractions)}")
        rows = read_rows(source)
        classes = find_classes(rows, source)
        split_dir = os.path.join(os.path.dirname(source), os.path.splitext(os.path.basename(source))[0] + "_splits")
        os.makedirs(split_dir, exist_ok=True)
        splits = split_rows(rows, fractions, args.seed)
        files = {split: os.path.join(split_dir, SPLIT_FILES[split]) for split in SPLITS}
        for split in SPLITS:
            write_jsonl(files[split], splits[split])
    else:
        files = {split: os.path.abspath(path) for split, path in zip(SPLITS, args.annotations)}
        splits = {split: read_rows(files[split]) for split in SPLITS}
        source = files["train"]
        classes = find_classes([row for split in SPLITS for row in splits[split]], ", ".join(files.values()))
    return {"source": source, "files": files, "splits": splits, "classes": classes}


def main_own_data_config(argv=None) -> int:
    args = _parser().parse_args(argv)
    template_dir = os.path.abspath(os.path.join(args.config_dir, "own_data"))
    try:
        if not os.path.isfile(os.path.join(template_dir, f"{args.model}.yaml")):
            raise OwnDataError(f"template {os.path.join(template_dir, args.model + '.yaml')} not found; run from the "
                               "repository root or pass --config-dir")
        if args.batch_size < 1 or args.epochs <= 0:
            raise OwnDataError("--batch-size and --epochs must be positive")
        data = prepare(args)
        features = os.path.abspath(args.features or os.path.join(os.path.dirname(data["source"]), "features"))
        for split in SPLITS:
            check_features(data["splits"][split], features, data["files"][split], args.images)
    except OwnDataError as error:
        print(f"refnet own-data-config: error: {error}", file=sys.stderr)
        return 1
    counts = {split: len(data["splits"][split]) for split in SPLITS}
    config = build_config(template_dir, args.model, args.backbone, data["classes"], data["files"], features, counts,
                          schedule(counts["train"], args.batch_size, args.epochs))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_config(args.out, config, "refnet own-data-config " + " ".join(argv if argv is not None else sys.argv[2:]))
    print(f"wrote {args.out}: {args.model} ({args.backbone}), {config['model_config'][args.model]['num_labels']} "
          f"classes {data['classes']}, rows train {counts['train']} / dev {counts['val']} / test {counts['test']}, "
          f"{config['training']['max_updates']} updates")
    for split in SPLITS:
        print(f"  {split}: {data['files'][split]}")
    return 0
