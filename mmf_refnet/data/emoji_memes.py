"""The "emoji memes" demo dataset, in the Hateful Memes on-disk layout.

Built fully offline from the vendored Noto emoji atlas (``emoji_assets/``)::

    <data_dir>/datasets/emoji_memes/defaults/
        features/<id>.npy, <id>_info.npy     shared by both variants (50 x 1280)
        annotations/{train,dev,test}.jsonl   variant "fit" (binary, HM-like)
        annotations/category/{train,dev,test}.jsonl + classes.txt   variant "category"
        images/img/<id>.png                  only with ``write_images=True``

"fit" sits where MMF's Hateful Memes builder looks (``defaults/annotations/
train.jsonl``); "category" is a second annotation set in a sub-folder. Rows
look like HM: ``{"id": int, "img": "img/00042.png", "text": str, "label": int}``;
the feature file is the ``img`` basename without extension (``00042.npy``).
``id`` is a row id (unique across the splits of a variant), the emoji id is in
``img``.

Variants
--------
* ``fit``: "does the caption name this image?". Each emoji gives one positive
  (its own name) and one negative (the name of a confounder emoji from the same
  split). Confounders form a derangement: one cycle over the split
  (``confounders="random"``, the default) or cycles inside the same subcategory
  when possible, then category, then the whole split (``"subcategory"``: hard
  negatives). Either way **every image and every caption occur exactly once
  with label 1 and once with label 0**: text-only and image-only models are at
  chance (AUROC 0.5) by construction; only fusion can solve it.
* ``category``: 9-way emoji category (classes in sorted order, ``classes.txt``);
  text is the emoji name. The data source suffixes every country/region flag
  name with "flag" (``andorra flag``), which would leak the label, so that
  trailing word is removed for the Flags category only (``andorra``); names that
  merely contain "flag" elsewhere (``flag in hole``) are unchanged. Other names
  still carry real cues (e.g. "face"), as intended for a text modality.

Splits are disjoint by emoji, stratified by category/subcategory, 70/10/20,
seeded (a ``max_emojis`` subset is the same for every seed).
:func:`prepare_emoji_memes` is cached by a marker file and extracts only
missing features; :func:`validate_dataset_dir` checks any directory in this
layout and names the file/line of every problem.
"""

import contextlib
import hashlib
import json
import os
import random
import re
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

from mmf_refnet.data.emoji import ASSETS_DIR, INDEX_FILE, EmojiRecord, categories, emoji_images, load_emoji_index

DATASET_NAME = "emoji_memes"
VARIANTS = ("fit", "category")
SPLITS = ("train", "dev", "test")
# Splits are assigned in blocks of 10 consecutive (stratum-sorted) emojis.
SPLIT_PATTERN = ("train",) * 7 + ("dev",) + ("test",) * 2
FIT_CLASSES = ("mismatch", "match")  # label 1: the caption names the image
FEATURE_DIM = 1280
FORMAT_VERSION = 1
MARKER_FILE = ".prepared.json"
MIN_PER_SPLIT = 2  # a derangement needs at least two emojis
# ``max_emojis`` subsets are drawn with this fixed seed, not the split seed, so
# that all seeds of a subset share (and reuse) the same feature files.
SUBSET_SEED = 0

PathLike = Union[str, Path]


class DatasetValidationError(ValueError):
    """A dataset directory in the HM layout is inconsistent (message lists each problem)."""


# --------------------------------------------------------------------------- layout


def dataset_root(data_dir: PathLike) -> Path:
    """``<data_dir>/datasets/emoji_memes/defaults`` (MMF's ``env.data_dir`` layout)."""
    return Path(data_dir) / "datasets" / DATASET_NAME / "defaults"


def annotations_dir(root: PathLike, variant: str) -> Path:
    """Annotation folder of ``variant`` under a dataset root."""
    _check_variant(variant)
    base = Path(root) / "annotations"
    return base if variant == "fit" else base / variant


def image_name(emoji_id: int) -> str:
    """Zero-padded file stem of an emoji image / feature file."""
    return f"{emoji_id:05d}"


def feature_name(img: str) -> str:
    """Feature file stem for an ``img`` field, as rc10's HM dataset derives it."""
    return os.path.splitext(os.path.basename(img))[0]


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown emoji_memes variant {variant!r}; choose one of {VARIANTS}")


# --------------------------------------------------------------------------- sampling


def _rng(seed: int, purpose: str) -> random.Random:
    # String seeds are hashed with SHA-512 by `random`: stable across runs/platforms.
    return random.Random(f"{DATASET_NAME}:{seed}:{purpose}")


def select_emojis(records: Sequence[EmojiRecord], max_emojis: Optional[int], seed: int) -> List[EmojiRecord]:
    """All records, or ``max_emojis`` of them drawn round-robin over categories (all 9 stay present)."""
    if max_emojis is None or max_emojis >= len(records):
        return sorted(records, key=lambda r: r.id)
    if max_emojis < 1:
        raise ValueError(f"max_emojis must be positive, got {max_emojis}")
    rng = _rng(seed, "subset")
    by_category = defaultdict(list)
    for record in sorted(records, key=lambda r: r.id):
        by_category[record.category].append(record)
    queues = [rng.sample(by_category[c], len(by_category[c])) for c in sorted(by_category)]
    chosen = []
    while len(chosen) < max_emojis:
        for queue in queues:
            if queue and len(chosen) < max_emojis:
                chosen.append(queue.pop())
    return sorted(chosen, key=lambda r: r.id)


def split_emojis(records: Sequence[EmojiRecord], seed: int) -> Dict[str, List[EmojiRecord]]:
    """Disjoint train/dev/test emoji sets, ~70/10/20 within every category and subcategory.

    Emojis are sorted by (category, subcategory, shuffled) and cut in blocks of
    10 that each get a shuffled 7/1/2 pattern (systematic stratified sampling),
    which keeps the proportions even for small subsets.
    """
    rng = _rng(seed, "split")
    strata = defaultdict(list)
    for record in sorted(records, key=lambda r: r.id):
        strata[(record.category, record.subcategory)].append(record)
    ordered = [r for key in sorted(strata) for r in rng.sample(strata[key], len(strata[key]))]
    splits = {name: [] for name in SPLITS}
    for start in range(0, len(ordered), len(SPLIT_PATTERN)):
        pattern = rng.sample(SPLIT_PATTERN, len(SPLIT_PATTERN))
        for record, name in zip(ordered[start:start + len(SPLIT_PATTERN)], pattern):
            splits[name].append(record)
    for name, members in splits.items():
        if len(members) < MIN_PER_SPLIT:
            raise ValueError(f"split '{name}' got {len(members)} emoji(s) from {len(records)}; "
                             f"use max_emojis >= 20 so every split has at least {MIN_PER_SPLIT}")
    return {name: sorted(members, key=lambda r: r.id) for name, members in splits.items()}


CONFOUNDERS = ("random", "subcategory")  # the first is the default (as in the config and the CLI)


def confounders(records: Sequence[EmojiRecord], rng: random.Random, kind: str = CONFOUNDERS[0]) -> Dict[int, int]:
    """Derangement ``image id -> caption id`` made of cycles.

    ``subcategory`` (hard): cycles are formed inside each subcategory with >= 2
    members, then among the leftovers of each category, then among all
    remaining. ``random``: one cycle over the whole split (a wrong caption is
    usually from another category: learnable in minutes on a CPU). A single last
    leftover is spliced into an existing cycle. Being a permutation without
    fixed points is what makes every caption a negative exactly once, whichever kind.
    """
    if kind not in CONFOUNDERS:
        raise ValueError(f"confounders must be one of {CONFOUNDERS}, got {kind!r}")
    if len(records) < 2:
        raise ValueError("need at least two emojis to pick confounders")
    mapping: Dict[int, int] = {}
    pool = sorted(records, key=lambda r: r.id)
    levels: List[Callable[[EmojiRecord], tuple]] = [
        lambda r: (r.category, r.subcategory), lambda r: (r.category,), lambda r: ()]
    if kind == "random":
        levels = levels[-1:]
    for level in levels:
        groups = defaultdict(list)
        for record in pool:
            groups[level(record)].append(record.id)
        pool_ids = []
        for key in sorted(groups):
            members = groups[key]
            if len(members) < 2:
                pool_ids.extend(members)
                continue
            cycle = rng.sample(members, len(members))
            mapping.update({a: b for a, b in zip(cycle, cycle[1:] + cycle[:1])})
        leftover = set(pool_ids)
        pool = [r for r in pool if r.id in leftover]
    for record in pool:  # at most one left: splice a -> s -> pi(a)
        a = rng.choice(sorted(mapping))
        mapping[a], mapping[record.id] = record.id, mapping[a]
    return mapping


def category_text(record: EmojiRecord) -> str:
    """Emoji name for the category task: Flags' label-leaking " flag" suffix removed."""
    if record.category == "Flags":
        stripped = re.sub(r"\s+flag$", "", record.name).strip()
        return stripped or record.name
    return record.name


def _row(row_id: int, record: EmojiRecord, text: str, label: int) -> dict:
    return {"id": row_id, "img": f"img/{image_name(record.id)}.png", "text": text, "label": int(label)}


def build_rows(records: Sequence[EmojiRecord], variant: str, seed: int,
               class_names: Optional[Sequence[str]] = None, confounder_kind: str = CONFOUNDERS[0]) -> Dict[str, List[dict]]:
    """Annotation rows per split (pure function of records, variant and seed)."""
    _check_variant(variant)
    class_names = list(class_names or sorted({r.category for r in records}))
    splits = split_emojis(records, seed)
    rows: Dict[str, List[dict]] = {}
    next_id = 1
    for split in SPLITS:
        rng = _rng(seed, f"{variant}:{split}")
        members = splits[split]
        by_id = {r.id: r for r in members}
        if variant == "fit":
            pairs = confounders(members, rng, confounder_kind)
            items = [(r, r.name, 1) for r in members] + [(r, by_id[pairs[r.id]].name, 0) for r in members]
        else:
            items = [(r, category_text(r), class_names.index(r.category)) for r in members]
        items = rng.sample(items, len(items))  # no label/emoji order to exploit
        rows[split] = [_row(next_id + i, r, text, label) for i, (r, text, label) in enumerate(items)]
        next_id += len(items)
    return rows


# --------------------------------------------------------------------------- writing


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _jsonl_text(rows: Iterable[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _sha256(data: Union[str, bytes]) -> str:
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


@dataclass(frozen=True)
class PrepareOptions:
    """What ``prepare_emoji_memes`` builds (see its docstring)."""

    variant: str = "fit"
    seed: int = 0
    max_emojis: Optional[int] = None
    force: bool = False
    batch_size: Optional[int] = None  # None: features.BATCH_SIZE
    progress: bool = True
    device: str = "cpu"
    write_images: bool = False
    confounder_kind: str = CONFOUNDERS[0]


def _params_key(options: PrepareOptions, assets_dir: Path) -> str:
    index_hash = hashlib.sha256((assets_dir / INDEX_FILE).read_bytes()).hexdigest()
    params = {"format": FORMAT_VERSION, "variant": options.variant, "seed": options.seed,
              "max_emojis": options.max_emojis, "assets": index_hash, "feature_dim": FEATURE_DIM}
    if options.confounder_kind != "subcategory":  # keys of caches made before the kinds existed stay valid
        params["confounders"] = options.confounder_kind
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


def check_feature_files(rows_by_file: Dict[str, List[dict]], features_dir: PathLike) -> None:
    """Every row's ``<stem>.npy`` and ``<stem>_info.npy`` must exist (error names id and file)."""
    features_dir = Path(features_dir)
    for file, rows in rows_by_file.items():
        for row in rows:
            stem = feature_name(row["img"])
            for path in (features_dir / f"{stem}.npy", features_dir / f"{stem}_info.npy"):
                if not path.is_file():
                    raise FileNotFoundError(f"{file}: row id {row['id']} (img {row['img']}) needs feature file "
                                            f"'{path}', which does not exist")


def dataset_paths(root: Path, variant: str) -> dict:
    """The result's path fields, always for the folder being prepared (the marker stores none)."""
    ann_dir = annotations_dir(root, variant)
    return {"root": str(root), "annotations_dir": str(ann_dir),
            "annotations": {split: str(ann_dir / f"{split}.jsonl") for split in SPLITS},
            "features_dir": str(root / "features"),
            "classes_file": str(ann_dir / "classes.txt") if variant == "category" else None}


def _generated_files(root: Path, variant: str) -> List[Path]:
    paths = dataset_paths(root, variant)
    return [Path(p) for p in paths["annotations"].values()] + ([Path(paths["classes_file"])] if paths["classes_file"] else [])


def _read_marker(marker: Path) -> dict:
    try:
        stored = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return stored if isinstance(stored, dict) else {}


def _cached_result(stored: dict, key: str, root: Path, variant: str, write_images: bool) -> Optional[dict]:
    """The stored result, for this folder, if it was made with ``key`` and nothing it lists is missing."""
    if stored.get("key") != key or not all(p.is_file() for p in _generated_files(root, variant)):
        return None
    if write_images and not (root / "images" / "img").is_dir():
        return None
    features_dir = root / "features"
    names = stored.get("feature_names", [])
    if not all((features_dir / f"{n}.npy").is_file() and (features_dir / f"{n}_info.npy").is_file() for n in names):
        return None
    return {**stored["result"], **dataset_paths(root, variant), "cached": True}


class ChangedAnnotationsError(RuntimeError):
    """Preparing would overwrite annotation files that differ from what mmf-refnet wrote there."""


def _plan_writes(texts: Dict[Path, str], root: Path, stored: dict, key: str) -> tuple:
    """(files to write, changed files kept): never overwrites a file someone changed.

    A generated file is written when it is missing, or when it still holds what an
    earlier prepare wrote (the marker records each file's sha256). A changed file is
    kept when the parameters are the same (a repair restores only what is missing)
    and refused otherwise, before anything is written.
    """
    recorded = stored.get("annotation_sha256", {})
    to_write, kept, changed = [], [], []
    for path, text in texts.items():
        if not path.is_file():
            to_write.append(path)
            continue
        current = _sha256(path.read_bytes())
        if current == _sha256(text):
            continue
        if stored.get("key") == key:
            kept.append(path)
        elif current == recorded.get(path.relative_to(root).as_posix()):
            to_write.append(path)
        else:
            changed.append(path)
    if changed:
        raise ChangedAnnotationsError(
            f"{DATASET_NAME}: {', '.join(map(str, changed))} differ(s) from what mmf-refnet generated there, and "
            "preparing these parameters (variant, split_seed, max_emojis, confounders) would overwrite it. Nothing "
            f"was changed. Move the file(s) elsewhere and point dataset_config.{DATASET_NAME}.annotations at them, "
            f"delete them to regenerate, or set dataset_config.{DATASET_NAME}.prepare=false to use them as they are.")
    if kept:
        warnings.warn(f"{DATASET_NAME}: kept {', '.join(map(str, kept))} as changed by you (not regenerated); "
                      "only missing files and features were restored", stacklevel=3)
    return to_write, kept


def prepare_emoji_memes(data_dir: PathLike, variant: str = "fit", seed: int = 0, max_emojis: Optional[int] = None,
                        force: bool = False, batch_size: Optional[int] = None, progress: bool = True, device: str = "cpu",
                        write_images: bool = False, confounder_kind: str = CONFOUNDERS[0]) -> dict:
    """Build (or reuse) the emoji memes dataset under ``data_dir``; return paths and counts.

    Idempotent: a marker with a hash of the parameters (and of the vendored
    index) makes a rerun a few file checks. Features are shared between
    variants/seeds and only missing ones are extracted (``force`` recomputes
    them all). Annotation files someone changed are never overwritten (see
    :func:`_plan_writes`). The marker holds no paths: a copied or moved folder is
    checked where it is. ``write_images`` also writes the 64 px PNGs under
    ``images/img/`` for image-based (non-feature) pipelines. ``confounder_kind``:
    ``random`` or ``subcategory`` (see the module docstring).
    """
    _check_variant(variant)
    options = PrepareOptions(variant, seed, max_emojis, force, batch_size, progress, device, write_images,
                             confounder_kind)
    start = time.perf_counter()
    root = dataset_root(data_dir)
    marker = annotations_dir(root, variant) / MARKER_FILE
    key = _params_key(options, ASSETS_DIR)
    result = None if force else _cached_result(_read_marker(marker), key, root, variant, write_images)
    if result is None:
        with _prepare_lock(root):  # concurrent runs on one data folder: one builds, the others reuse
            stored = _read_marker(marker)
            result = None if force else _cached_result(stored, key, root, variant, write_images)
            if result is None:
                result = _build(root, marker, key, stored, options)
    return {**result, "seconds": time.perf_counter() - start}


@contextlib.contextmanager
def _prepare_lock(root: Path):
    """An exclusive lock file in ``root`` (POSIX ``flock``; no locking where fcntl is missing)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".prepare.lock", "w") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _extract_missing(records, features_dir: Path, options: PrepareOptions):
    """EfficientNet features of the emojis whose files are missing (all with ``force``): (report, reused count)."""
    from mmf_refnet.data.features import BATCH_SIZE, extract_features_from_images, feature_paths

    missing = [r for r in records
               if options.force or not all(p.is_file() for p in feature_paths(features_dir, image_name(r.id)))]
    images = emoji_images(missing) if missing else {}
    report = extract_features_from_images({image_name(i): im for i, im in images.items()}, features_dir,
                                          batch_size=options.batch_size or BATCH_SIZE, skip_existing=not options.force,
                                          progress=options.progress, device=options.device)
    if report.failed:
        raise RuntimeError(f"feature extraction failed for {len(report.failed)} emoji(s): {report.failed[:5]}")
    return report, len(records) - len(missing)


def _build(root: Path, marker: Path, key: str, stored: dict, options: PrepareOptions) -> dict:
    variant = options.variant
    records = select_emojis(load_emoji_index(), options.max_emojis, SUBSET_SEED)
    class_names = list(FIT_CLASSES) if variant == "fit" else categories()
    rows = build_rows(records, variant, options.seed, None if variant == "fit" else class_names, options.confounder_kind)
    paths = dataset_paths(root, variant)
    texts = {Path(paths["annotations"][split]): _jsonl_text(rows[split]) for split in SPLITS}
    if paths["classes_file"]:
        texts[Path(paths["classes_file"])] = "".join(f"{name}\n" for name in class_names)
    to_write, kept = _plan_writes(texts, root, stored, key)  # refuses before anything changes

    features_dir = Path(paths["features_dir"])
    report, reused = _extract_missing(records, features_dir, options)
    if options.write_images:
        image_dir = root / "images" / "img"
        image_dir.mkdir(parents=True, exist_ok=True)
        for emoji_id, image in emoji_images(records).items():
            image.save(image_dir / f"{image_name(emoji_id)}.png")
    for path in to_write:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_text(path, texts[path])
    check_feature_files({paths["annotations"][s]: rows[s] for s in SPLITS}, features_dir)

    result = {
        "variant": variant, "seed": options.seed, "max_emojis": options.max_emojis,
        "confounders": options.confounder_kind,
        "classes": class_names, "num_classes": len(class_names),
        "counts": {s: len(rows[s]) for s in SPLITS},
        "num_emojis": {s: len({feature_name(r["img"]) for r in rows[s]}) for s in SPLITS},
        "features": {"written": report.written, "skipped_existing": report.skipped_existing, "reused": reused},
    }
    marker_data = {"key": key, "result": result, "feature_names": [image_name(r.id) for r in records],
                   "annotation_sha256": {p.relative_to(root).as_posix(): _sha256(t) for p, t in texts.items()}}
    _write_text(marker, json.dumps(marker_data, indent=1, sort_keys=True))
    return {**result, **paths, "cached": False, "written_annotations": [str(p) for p in to_write],
            "kept_annotations": [str(p) for p in kept]}


# --------------------------------------------------------------------------- validation


def _read_classes(jsonl: Path) -> Optional[int]:
    classes = jsonl.parent / "classes.txt"
    if not classes.is_file():
        return None
    return len([line for line in classes.read_text(encoding="utf-8").splitlines() if line.strip()])


def _check_row(row, where: str, num_classes: Optional[int]) -> List[str]:
    """Problems of one parsed annotation row (empty list when fine)."""
    if not isinstance(row, dict):
        return [f"{where}: expected a JSON object, got {type(row).__name__}"]
    missing = [k for k in ("id", "img", "text") if k not in row]
    if missing:
        return [f"{where}: missing key(s) {missing}"]
    problems = []
    row_id = row["id"]
    if not isinstance(row_id, int) or isinstance(row_id, bool):
        problems.append(f"{where}: id must be an integer, got {row_id!r}")
    if not isinstance(row["img"], str) or not row["img"].strip():
        problems.append(f"{where} (id {row_id}): img must be a non-empty string, got {row['img']!r}")
    if not isinstance(row["text"], str) or not row["text"].strip():
        problems.append(f"{where} (id {row_id}): empty caption (text={row['text']!r})")
    if "label" in row:
        label = row["label"]
        if not isinstance(label, int) or isinstance(label, bool) or label < 0:
            problems.append(f"{where} (id {row_id}): label must be a non-negative integer, got {label!r}")
        elif num_classes is not None and label >= num_classes:
            problems.append(f"{where} (id {row_id}): label {label} >= number of classes {num_classes} (classes.txt)")
    return problems


def _check_feature(stem: str, features_dir: Path, expected_dim: int) -> List[str]:
    """Problems of one feature file pair (shape/dim, info keys, box bounds)."""
    feat_path, info_path = features_dir / f"{stem}.npy", features_dir / f"{stem}_info.npy"
    if not feat_path.is_file():
        return [f"feature file '{feat_path}' does not exist"]
    try:
        features = np.load(feat_path, mmap_mode="r")
    except Exception as error:  # unreadable files are reported, not raised one by one
        return [f"feature file '{feat_path}' is unreadable: {error}"]
    if features.ndim != 2 or features.shape[1] != expected_dim:
        return [f"feature file '{feat_path}': found dim {features.shape[-1] if features.ndim else None} "
                f"(shape {tuple(features.shape)}), expected (N, {expected_dim})"]
    if not info_path.is_file():
        return [f"feature info file '{info_path}' does not exist"]
    try:
        info = np.load(info_path, allow_pickle=True).item()
        bbox = np.asarray(info["bbox"], dtype=np.float32)
        width, height = float(info["image_width"]), float(info["image_height"])
    except Exception as error:
        return [f"feature info file '{info_path}': need a dict with bbox/image_width/image_height ({error!r})"]
    if bbox.shape != (features.shape[0], 4):
        return [f"feature info file '{info_path}': bbox shape {bbox.shape}, expected ({features.shape[0]}, 4)"]
    inside = (bbox >= 0).all() and (bbox[:, [0, 2]] <= width).all() and (bbox[:, [1, 3]] <= height).all()
    if not inside:
        return [f"feature info file '{info_path}': boxes outside the {width:g}x{height:g} image"]
    return []


def validate_dataset_dir(root: PathLike, expected_dim: int = FEATURE_DIM, features_dir: Optional[PathLike] = None,
                         annotation_files: Optional[Sequence[PathLike]] = None, max_problems: int = 20) -> dict:
    """Check a HM-layout dataset dir (``annotations/**.jsonl`` + ``features/*.npy``).

    Rows must parse and have an integer ``id`` (unique within a file), ``img``,
    a non-empty ``text`` and an integer ``label`` (< len(classes.txt) if one
    sits next to the file); each referenced feature file must exist, be (N,
    ``expected_dim``) and have a consistent ``_info.npy``. Raises
    :class:`DatasetValidationError` listing file:line (and id) of the problems;
    returns a summary when everything is fine.
    """
    root = Path(root)
    features_dir = Path(features_dir) if features_dir else root / "features"
    if annotation_files is None:
        annotation_files = sorted((root / "annotations").rglob("*.jsonl"))
        if not annotation_files:
            raise DatasetValidationError(f"no annotation files (*.jsonl) under '{root / 'annotations'}'")
    problems: List[str] = []
    rows_per_file: Dict[str, int] = {}
    checked: Dict[str, List[str]] = {}
    for file in map(Path, annotation_files):
        num_classes = _read_classes(file)
        first_line_of_id: Dict[int, int] = {}
        count = 0
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{file}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                problems.append(f"{where}: malformed JSON ({error.msg})")
                continue
            row_problems = _check_row(row, where, num_classes)
            problems.extend(row_problems)
            if row_problems:
                continue
            count += 1
            if row["id"] in first_line_of_id:
                problems.append(f"{where}: duplicate id {row['id']} (first on line {first_line_of_id[row['id']]})")
            first_line_of_id.setdefault(row["id"], number)
            stem = feature_name(row["img"])
            if stem not in checked:
                checked[stem] = _check_feature(stem, features_dir, expected_dim)
                problems.extend(f"{where} (id {row['id']}): {p}" for p in checked[stem])
        rows_per_file[str(file)] = count
    if problems:
        shown = "\n  ".join(problems[:max_problems])
        more = f"\n  ... and {len(problems) - max_problems} more" if len(problems) > max_problems else ""
        raise DatasetValidationError(f"{len(problems)} problem(s) in dataset '{root}':\n  {shown}{more}")
    return {"root": str(root), "rows": rows_per_file, "features_checked": len(checked)}
