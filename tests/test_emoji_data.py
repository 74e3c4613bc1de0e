"""Vendored emoji assets and the emoji memes dataset (mmf_refnet.data.emoji*)."""

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mmf_refnet.data import emoji_memes as em
from mmf_refnet.data.emoji import ASSETS_DIR, categories, emoji_images, load_atlas, load_emoji_index
from mmf_refnet.data.features import write_features

NPM_PACKAGE = Path(os.environ.get("EMOJI_DATASOURCE_DIR", "/tmp/npm_emoji/node_modules/emoji-datasource-google"))
EXPECTED_CATEGORIES = [
    "Activities", "Animals & Nature", "Flags", "Food & Drink", "Objects",
    "People & Body", "Smileys & Emotion", "Symbols", "Travel & Places",
]


@pytest.fixture(scope="module")
def records():
    return load_emoji_index()


# --------------------------------------------------------------------------- assets


def test_assets_index_and_atlas(records):
    assert len(records) >= 1800
    assert [r.id for r in records] == list(range(len(records)))
    assert categories() == EXPECTED_CATEGORIES
    names = [r.name for r in records]
    assert len(set(names)) == len(names) and all(n == n.lower() and n.strip() for n in names)
    assert "component" not in {r.category.lower() for r in records}
    assert not any("skin tone" in r.name for r in records)  # base entries only
    atlas = load_atlas()
    assert atlas.mode == "RGBA"
    assert max(r.x for r in records) + 64 <= atlas.width and max(r.y for r in records) + 64 <= atlas.height
    tiles = emoji_images(records[:50], atlas)
    alphas = [np.asarray(t)[..., 3] for t in tiles.values()]
    assert all(a.shape == (64, 64) and a.max() == 255 and a.min() == 0 for a in alphas)
    assert len({np.asarray(t).tobytes() for t in tiles.values()}) == 50  # all tiles differ
    size = sum(p.stat().st_size for p in ASSETS_DIR.iterdir())
    assert size <= 10_000_000
    assert "Apache" in (ASSETS_DIR / "NOTICE").read_text()


@pytest.mark.skipif(not NPM_PACKAGE.is_dir(), reason="npm package emoji-datasource-google not unpacked")
def test_atlas_tiles_equal_the_package_pngs(records):
    from PIL import Image

    package = {e["unified"]: e for e in json.loads((NPM_PACKAGE / "emoji.json").read_text())}
    atlas = load_atlas()
    for record in random.Random(0).sample(records, 25):
        with Image.open(NPM_PACKAGE / "img" / "google" / "64" / package[record.unified]["image"]) as source:
            expected = np.asarray(source.convert("RGBA"))
        tile = np.asarray(emoji_images([record], atlas)[record.id])
        visible = expected[..., 3] > 0  # RGB under alpha 0 is irrelevant
        assert (tile[..., 3] == expected[..., 3]).all(), record.name
        assert (tile[visible] == expected[visible]).all(), record.name
        assert record.category == package[record.unified]["category"]


@pytest.mark.skipif(not NPM_PACKAGE.is_dir(), reason="npm package emoji-datasource-google not unpacked")
def test_vendoring_is_reproducible(tmp_path):
    from mmf_refnet.data.vendor_emoji import build_assets

    summary = build_assets(NPM_PACKAGE, tmp_path)
    assert summary["count"] == len(load_emoji_index())
    assert (tmp_path / "index.json").read_bytes() == (ASSETS_DIR / "index.json").read_bytes()
    assert (tmp_path / "NOTICE").read_bytes() == (ASSETS_DIR / "NOTICE").read_bytes()
    assert np.array_equal(np.asarray(load_atlas(tmp_path)), np.asarray(load_atlas()))


# --------------------------------------------------------------------------- task construction


def test_python_api_defaults_to_random_confounders_as_config_and_cli():
    import inspect

    assert em.CONFOUNDERS[0] == "random"
    for function in (em.prepare_emoji_memes, em.build_rows, em.confounders):
        assert inspect.signature(function).parameters[
            "kind" if function is em.confounders else "confounder_kind"].default == "random"


def test_fit_confounder_property_holds_exactly(records):
    rows = em.build_rows(records, "fit", seed=0, confounder_kind="subcategory")
    by_img = {f"img/{em.image_name(r.id)}.png": r for r in records}
    for split_rows in rows.values():
        images = {row["img"] for row in split_rows}
        texts = {row["text"] for row in split_rows}
        assert len(split_rows) == 2 * len(images) == 2 * len(texts)
        assert set(Counter((r["img"], r["label"]) for r in split_rows).values()) == {1}
        assert set(Counter((r["text"], r["label"]) for r in split_rows).values()) == {1}
        for label in (0, 1):  # each image and each caption under both labels
            assert {r["img"] for r in split_rows if r["label"] == label} == images
            assert {r["text"] for r in split_rows if r["label"] == label} == texts
        for row in split_rows:
            assert (row["text"] == by_img[row["img"]].name) == (row["label"] == 1)
    negatives = [r for split_rows in rows.values() for r in split_rows if r["label"] == 0]
    by_name = {r.name: r for r in records}
    same_sub = np.mean([by_img[r["img"]].subcategory == by_name[r["text"]].subcategory for r in negatives])
    assert same_sub > 0.9  # confounders are hard: mostly the same subcategory


@pytest.mark.parametrize("kind", em.CONFOUNDERS)
@pytest.mark.parametrize("size", [2, 3, 5, 11, 37])
def test_confounders_are_derangements(records, size, kind):
    for seed in range(20):
        subset = random.Random(seed).sample(records, size)
        mapping = em.confounders(subset, random.Random(seed), kind)
        ids = {r.id for r in subset}
        assert set(mapping) == ids and set(mapping.values()) == ids
        assert all(a != b for a, b in mapping.items())


def test_splits_disjoint_stratified_and_deterministic(records):
    splits = em.split_emojis(records, seed=0)
    sets = {name: {r.id for r in members} for name, members in splits.items()}
    assert not (sets["train"] & sets["dev"]) and not (sets["train"] & sets["test"]) and not (sets["dev"] & sets["test"])
    assert set().union(*sets.values()) == {r.id for r in records}
    n = len(records)
    assert abs(len(sets["train"]) / n - 0.7) < 0.01
    assert abs(len(sets["dev"]) / n - 0.1) < 0.01
    assert abs(len(sets["test"]) / n - 0.2) < 0.01
    for members in splits.values():
        assert {r.category for r in members} == set(EXPECTED_CATEGORIES)
    assert em.build_rows(records, "fit", seed=0) == em.build_rows(records, "fit", seed=0)
    assert em.build_rows(records, "fit", seed=0) != em.build_rows(records, "fit", seed=1)
    assert em.split_emojis(records, seed=1) != splits


def test_row_ids_are_unique_integers_across_splits(records):
    for variant in em.VARIANTS:
        rows = [r for split_rows in em.build_rows(records, variant, seed=3).values() for r in split_rows]
        ids = [r["id"] for r in rows]
        assert all(type(i) is int for i in ids) and len(set(ids)) == len(ids)
        assert all(em.feature_name(r["img"]).isdigit() and r["img"].startswith("img/") for r in rows)


def test_category_rows(records):
    rows = em.build_rows(records, "category", seed=0, class_names=categories())
    all_rows = [r for split_rows in rows.values() for r in split_rows]
    assert len(all_rows) == len(records)  # each emoji once
    by_img = {f"img/{em.image_name(r.id)}.png": r for r in records}
    for row in all_rows:
        record = by_img[row["img"]]
        assert row["label"] == EXPECTED_CATEGORIES.index(record.category)
        assert row["text"].strip()
        if record.category == "Flags":
            assert not row["text"].endswith(" flag"), row["text"]
    assert by_img[next(r["img"] for r in all_rows if r["text"] == "andorra")].category == "Flags"
    assert "flag in hole" in {r["text"] for r in all_rows}  # only the Flags suffix is removed


def test_subset_selection_covers_categories_and_is_seeded(records):
    subset = em.select_emojis(records, 40, seed=0)
    assert len(subset) == 40 and len({r.id for r in subset}) == 40
    assert {r.category for r in subset} == set(EXPECTED_CATEGORIES)
    assert subset == em.select_emojis(records, 40, seed=0) != em.select_emojis(records, 40, seed=1)
    with pytest.raises(ValueError, match="max_emojis >= 20"):
        em.split_emojis(em.select_emojis(records, 8, seed=0), seed=0)


# --------------------------------------------------------------------------- prepare (real features)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("data")
    fit = em.prepare_emoji_memes(data_dir, "fit", seed=0, max_emojis=40, batch_size=8, progress=False)
    category = em.prepare_emoji_memes(data_dir, "category", seed=0, max_emojis=40, batch_size=8, progress=False)
    return data_dir, fit, category


def _read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_prepare_layout_counts_and_features(prepared):
    data_dir, fit, category = prepared
    root = data_dir / "datasets" / "emoji_memes" / "defaults"
    assert fit["root"] == category["root"] == str(root)
    assert fit["annotations"]["train"] == str(root / "annotations" / "train.jsonl")
    assert category["annotations"]["train"] == str(root / "annotations" / "category" / "train.jsonl")
    assert fit["counts"] == {"train": 56, "dev": 8, "test": 16}
    assert category["counts"] == {"train": 28, "dev": 4, "test": 8}
    assert fit["features"]["written"] == 40 and category["features"] == {"written": 0, "skipped_existing": 0,
                                                                         "reused": 40}
    assert (root / "annotations" / "category" / "classes.txt").read_text().splitlines() == EXPECTED_CATEGORIES
    feature_files = sorted((root / "features").glob("*.npy"))
    assert len(feature_files) == 80  # 40 x (features + info)
    stems = {em.feature_name(r["img"]) for s in ("train", "dev", "test") for r in _read_jsonl(fit["annotations"][s])}
    assert len(stems) == 40
    for stem in sorted(stems)[:5]:
        feats = np.load(root / "features" / f"{stem}.npy")
        info = np.load(root / "features" / f"{stem}_info.npy", allow_pickle=True).item()
        assert feats.shape == (50, 1280) and np.isfinite(feats).all()
        assert (info["bbox"] >= 0).all() and (info["bbox"] <= 64).all()
    summary = em.validate_dataset_dir(root)
    assert summary["features_checked"] == 40 and sum(summary["rows"].values()) == 80 + 40


def test_prepare_is_cached_and_rebuilds_on_new_params(prepared):
    data_dir, fit, _ = prepared
    start = time.perf_counter()
    again = em.prepare_emoji_memes(data_dir, "fit", seed=0, max_emojis=40, batch_size=8, progress=False)
    assert time.perf_counter() - start < 1.0
    assert again["cached"] is True and again["counts"] == fit["counts"]
    train = _read_jsonl(fit["annotations"]["train"])
    reseeded = em.prepare_emoji_memes(data_dir, "fit", seed=1, max_emojis=40, batch_size=8, progress=False)
    assert reseeded["cached"] is False
    assert reseeded["features"]["reused"] == 40  # same subset for every seed: no new extraction
    assert _read_jsonl(reseeded["annotations"]["train"]) != train
    em.prepare_emoji_memes(data_dir, "fit", seed=0, max_emojis=40, batch_size=8, progress=False)
    assert _read_jsonl(fit["annotations"]["train"]) == train  # back to seed 0, identical


def test_prepare_reextracts_deleted_features(prepared):
    data_dir, fit, _ = prepared
    stem = em.feature_name(_read_jsonl(fit["annotations"]["dev"])[0]["img"])
    (Path(fit["features_dir"]) / f"{stem}.npy").unlink()
    result = em.prepare_emoji_memes(data_dir, "fit", seed=0, max_emojis=40, batch_size=8, progress=False)
    assert result["cached"] is False and result["features"]["written"] == 1
    assert (Path(fit["features_dir"]) / f"{stem}.npy").is_file()


def test_concurrent_prepare_waits_for_the_one_holding_the_lock(prepared, tmp_path):
    """Runs sharing a data folder (benchmarks with --jobs, two users) build it one at a time."""
    data_dir, fit, _ = prepared
    shared = tmp_path / "data"
    shutil.copytree(data_dir / "datasets" / "emoji_memes" / "defaults" / "features",
                    shared / "datasets" / "emoji_memes" / "defaults" / "features")
    script = ("import sys; from mmf_refnet.data import emoji_memes as em; print('ready', flush=True); "
              "r = em.prepare_emoji_memes(sys.argv[1], 'fit', seed=5, max_emojis=40, progress=False); "
              "print(r['counts']['train'], r['features']['reused'])")
    root = em.dataset_root(shared)
    with em._prepare_lock(root):
        other = subprocess.Popen([sys.executable, "-c", script, str(shared)], stdout=subprocess.PIPE, text=True)
        assert other.stdout.readline().strip() == "ready"
        time.sleep(3.0)  # unlocked, this prepare (features all present) takes well under a second
        assert other.poll() is None, "prepare ran while another process held the lock"
        assert not (root / "annotations" / "train.jsonl").exists()
    out, _ = other.communicate(timeout=120)
    assert other.returncode == 0 and out.split() == [str(fit["counts"]["train"]), "40"]
    assert em.prepare_emoji_memes(shared, "fit", seed=5, max_emojis=40, progress=False)["cached"] is True


def test_prepare_write_images(prepared):
    data_dir, fit, _ = prepared
    result = em.prepare_emoji_memes(data_dir, "fit", seed=0, max_emojis=40, progress=False, write_images=True)
    rows = _read_jsonl(result["annotations"]["test"])
    image_dir = Path(result["root"]) / "images"
    assert all((image_dir / r["img"]).is_file() for r in rows)
    record = load_emoji_index()[int(em.feature_name(rows[0]["img"]))]
    from PIL import Image

    with Image.open(image_dir / rows[0]["img"]) as written:
        assert np.array_equal(np.asarray(written), np.asarray(emoji_images([record])[record.id]))


def test_check_feature_files_names_id_and_file(tmp_path):
    rows = [{"id": 17, "img": "img/00099.png", "text": "x", "label": 1}]
    with pytest.raises(FileNotFoundError, match=r"row id 17 .*00099\.npy"):
        em.check_feature_files({"train.jsonl": rows}, tmp_path)


# --------------------------------------------------------------------------- repair (issue 16)


def _file_hashes(folder, skip=()) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file() and p.name not in skip}


def _fit_only_copy(prepared, destination):
    """The fixture's folder with its features and fit annotations (fixture untouched)."""
    data_dir, _, _ = prepared
    shutil.copytree(data_dir, destination, ignore=shutil.ignore_patterns("category", "images"))
    return em.dataset_root(destination)


def test_a_missing_feature_is_restored_without_rewriting_changed_annotations(prepared, tmp_path):
    root = _fit_only_copy(prepared, tmp_path / "data")
    train = root / "annotations" / "train.jsonl"
    train.write_text("".join(train.read_text().splitlines(keepends=True)[:10]))  # the user's subset
    missing = root / "features" / f"{em.feature_name(_read_jsonl(root / 'annotations' / 'dev.jsonl')[0]['img'])}.npy"
    before = _file_hashes(root, skip=(em.MARKER_FILE,))
    missing.unlink()
    with pytest.warns(UserWarning, match=f"kept {train} as changed by you"):
        result = em.prepare_emoji_memes(tmp_path / "data", "fit", seed=0, max_emojis=40, progress=False)
    assert result["features"]["written"] == 1 and result["written_annotations"] == []
    assert result["kept_annotations"] == [str(train)] and len(_read_jsonl(train)) == 10
    after = _file_hashes(root, skip=(em.MARKER_FILE,))
    assert set(after) == set(before) and {k for k in after if after[k] != before[k]} <= {f"features/{missing.name}"}


def test_new_parameters_refuse_to_overwrite_changed_annotations(prepared, tmp_path):
    root = _fit_only_copy(prepared, tmp_path / "data")
    dev = root / "annotations" / "dev.jsonl"
    rows = _read_jsonl(dev)
    rows[0]["text"] = "my own caption"
    dev.write_text("".join(json.dumps(row) + "\n" for row in rows))
    before = _file_hashes(root)
    with pytest.raises(em.ChangedAnnotationsError) as error:
        em.prepare_emoji_memes(tmp_path / "data", "fit", seed=3, max_emojis=40, progress=False)
    assert str(error.value).startswith(f"emoji_memes: {dev} differ(s) from what mmf-refnet generated there")
    assert "Nothing was changed" in str(error.value) and "prepare=false" in str(error.value)
    assert _file_hashes(root) == before


def test_a_copied_folder_is_checked_where_it_is(prepared, tmp_path):
    original = _fit_only_copy(prepared, tmp_path / "original")
    for path in (original / "annotations").iterdir():
        path.unlink()  # prepare here, so that the marker is written for this folder
    em.prepare_emoji_memes(tmp_path / "original", "fit", seed=0, max_emojis=40, progress=False)
    shutil.copytree(tmp_path / "original", tmp_path / "copy")
    shutil.rmtree(tmp_path / "original")
    copy = em.dataset_root(tmp_path / "copy")
    before = _file_hashes(copy)
    result = em.prepare_emoji_memes(tmp_path / "copy", "fit", seed=0, max_emojis=40, progress=False)
    assert result["cached"] is True and result["annotations"]["train"] == str(copy / "annotations" / "train.jsonl")
    assert _file_hashes(copy) == before
    assert str(tmp_path) not in (copy / "annotations" / em.MARKER_FILE).read_text()


def test_the_builder_validates_the_folder_it_loads(prepared, tmp_path):
    import argparse

    from mmf.utils.configuration import Configuration

    from mmf_refnet.data.builder import EmojiMemesBuilder
    from tests import runner

    _fit_only_copy(prepared, tmp_path / "elsewhere")
    root = _fit_only_copy(prepared, tmp_path / "data")
    stem = em.feature_name(_read_jsonl(root / "annotations" / "test.jsonl")[3]["img"])
    np.save(root / "features" / f"{stem}.npy", np.zeros((50, 64), np.float32))  # wrong width in the loaded copy
    config = runner.tiny_config(str(tmp_path), "hateful_memes", "vilbert", {
        "includes": [os.path.join(runner.PROJECT_CONFIGS, "demo", "vilbert.yaml")],
        "dataset_config": {"emoji_memes": {"max_emojis": 40, "max_features": 50, "confounders": "subcategory"}}})
    args = argparse.Namespace(opts=[f"config={config}", "dataset=emoji_memes", f"env.data_dir={tmp_path / 'data'}"],
                              config_override=None)
    section = Configuration(args).get_config().dataset_config.emoji_memes
    with pytest.raises(em.DatasetValidationError) as error:
        EmojiMemesBuilder().build(section)
    assert f"feature file '{root / 'features' / stem}.npy': found dim 64 (shape (50, 64)), expected (N, 1280)" \
        in str(error.value)


# --------------------------------------------------------------------------- validation errors


@pytest.fixture
def small_dataset(tmp_path):
    """A valid 2-image dataset with synthetic features (no model needed)."""
    root = tmp_path / "defaults"
    (root / "annotations").mkdir(parents=True)
    (root / "features").mkdir()
    for stem in ("00001", "00002"):
        write_features(root / "features", stem, np.ones((50, 1280), np.float32), 64, 64)
    rows = [
        {"id": 1, "img": "img/00001.png", "text": "a cat", "label": 1},
        {"id": 2, "img": "img/00002.png", "text": "a dog", "label": 0},
    ]
    (root / "annotations" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def _write_lines(root, lines):
    path = root / "annotations" / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_validate_accepts_a_valid_dir(small_dataset):
    assert em.validate_dataset_dir(small_dataset)["features_checked"] == 2


@pytest.mark.parametrize("bad_line, message", [
    ('{"id": 3, "img": "img/00001.png", "text": "oops"', "malformed JSON"),
    ('{"id": 3, "img": "img/00001.png", "label": 1}', "missing key(s) ['text']"),
    ('{"id": 3, "img": "img/00001.png", "text": "  ", "label": 1}', "(id 3): empty caption"),
    ('{"id": "3", "img": "img/00001.png", "text": "x", "label": 1}', "id must be an integer"),
    ('{"id": 1, "img": "img/00001.png", "text": "x", "label": 1}', "duplicate id 1 (first on line 1)"),
    ('{"id": 3, "img": "img/00003.png", "text": "x", "label": 1}', "00003.npy' does not exist"),
])
def test_validate_names_file_line_and_problem(small_dataset, bad_line, message):
    path = _write_lines(small_dataset, ['{"id": 1, "img": "img/00001.png", "text": "a cat", "label": 1}',
                                        '{"id": 2, "img": "img/00002.png", "text": "a dog", "label": 0}', bad_line])
    with pytest.raises(em.DatasetValidationError) as error:
        em.validate_dataset_dir(small_dataset)
    assert f"{path}:3" in str(error.value)
    assert message in str(error.value)
    assert "1 problem(s)" in str(error.value)


def test_validate_reports_wrong_feature_dim_and_label_range(small_dataset):
    np.save(small_dataset / "features" / "00002.npy", np.zeros((50, 2048), np.float32))
    shutil.copy(small_dataset / "features" / "00001_info.npy", small_dataset / "features" / "00002_info.npy")
    (small_dataset / "annotations" / "classes.txt").write_text("no\nyes\n")
    _write_lines(small_dataset, ['{"id": 1, "img": "img/00001.png", "text": "a cat", "label": 2}',
                                 '{"id": 2, "img": "img/00002.png", "text": "a dog", "label": 0}'])
    with pytest.raises(em.DatasetValidationError) as error:
        em.validate_dataset_dir(small_dataset)
    text = str(error.value)
    assert "train.jsonl:1 (id 1): label 2 >= number of classes 2" in text
    assert "train.jsonl:2 (id 2): feature file" in text and "00002.npy': found dim 2048" in text
    assert "expected (N, 1280)" in text


def test_validate_reports_bad_boxes_and_missing_annotations(small_dataset, tmp_path):
    write_features(small_dataset / "features", "00001", np.ones((50, 1280), np.float32), 64, 64)
    info = np.load(small_dataset / "features" / "00001_info.npy", allow_pickle=True).item()
    info["bbox"] = info["bbox"] * 2  # outside the 64x64 image
    np.save(small_dataset / "features" / "00001_info.npy", info)
    with pytest.raises(em.DatasetValidationError, match="boxes outside the 64x64 image"):
        em.validate_dataset_dir(small_dataset)
    (tmp_path / "nothing" / "annotations").mkdir(parents=True)
    with pytest.raises(em.DatasetValidationError, match="no annotation files"):
        em.validate_dataset_dir(tmp_path / "nothing")
