"""EfficientNet-Lite0 grid-region extraction (mmf_refnet.data.features).

Runs the real ImageNet weights on a handful of vendored emojis (CPU, seconds).
"""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from mmf_refnet.data import features as F
from mmf_refnet.data.emoji import emoji_images, load_emoji_index

# emoji name -> an ImageNet-1k class it should rank in the top 5
IMAGENET_EXPECTED = {"ambulance": 407, "soccer ball": 805, "umbrella": 879}


def _emoji(name):
    record = next(r for r in load_emoji_index() if r.name == name)
    return emoji_images([record])[record.id]


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    """4 PNG emojis, one non-square RGB JPEG, one corrupt PNG and a non-image file."""
    directory = tmp_path_factory.mktemp("images")
    for name in ["ambulance", "soccer ball", "umbrella", "banana"]:
        _emoji(name).save(directory / f"{name.replace(' ', '_')}.png")
    _emoji("red apple").convert("RGB").resize((96, 48)).save(directory / "wide_apple.jpg")
    (directory / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    (directory / "notes.txt").write_text("ignored: not an image")
    return directory


@pytest.fixture(scope="module")
def extracted(image_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("features")
    report = F.extract_features(image_dir, out, batch_size=2, progress=False)
    return out, report


def test_report_counts_and_corrupt_file_is_reported(extracted, image_dir):
    out, report = extracted
    assert report.written == 5
    assert report.skipped_existing == 0
    assert len(report.failed) == 1
    path, reason = report.failed[0]
    assert path == str(image_dir / "broken.png")
    assert reason  # e.g. "UnidentifiedImageError: cannot identify image file ..."
    names = sorted(p.name for p in out.iterdir())
    assert "broken.npy" not in names and "notes.npy" not in names
    assert not [n for n in names if n.endswith(".tmp")]
    assert len([n for n in names if n.endswith("_info.npy")]) == 5


def test_feature_files_shape_values_and_boxes(extracted):
    out, _ = extracted
    for stem, (width, height) in {"ambulance": (64, 64), "wide_apple": (96, 48)}.items():
        feats = np.load(out / f"{stem}.npy")
        assert feats.shape == (F.NUM_REGIONS, F.FEATURE_DIM) == (50, 1280)
        assert feats.dtype == np.float32
        assert np.isfinite(feats).all() and feats.std() > 0
        # region 0 is the global mean of the 49 grid cells
        np.testing.assert_allclose(feats[0], feats[1:].mean(axis=0), rtol=1e-4, atol=1e-5)
        info = np.load(out / f"{stem}_info.npy", allow_pickle=True).item()
        assert (info["image_width"], info["image_height"]) == (width, height)
        assert info["num_boxes"] == 50
        bbox = info["bbox"]
        assert bbox.shape == (50, 4) and bbox.dtype == np.float32
        np.testing.assert_allclose(bbox[0], [0, 0, width, height])
        assert (bbox[:, [0, 2]] >= 0).all() and (bbox[:, [0, 2]] <= width).all()
        assert (bbox[:, [1, 3]] >= 0).all() and (bbox[:, [1, 3]] <= height).all()
        assert (bbox[:, 2] > bbox[:, 0]).all() and (bbox[:, 3] > bbox[:, 1]).all()
        cell_area = ((bbox[1:, 2] - bbox[1:, 0]) * (bbox[1:, 3] - bbox[1:, 1])).sum()
        assert cell_area == pytest.approx(width * height, rel=1e-5)  # the cells tile the image


def test_different_images_give_different_features(extracted):
    out, _ = extracted
    a, b = np.load(out / "ambulance.npy")[0], np.load(out / "banana.npy")[0]
    cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    assert cosine < 0.95


def test_global_region_is_the_classifier_input_and_predicts_imagenet(extracted):
    """Region 0 fed to the ImageNet head equals the full network; top-5 is sensible."""
    out, _ = extracted
    net = F.load_backbone()
    for name, imagenet_class in IMAGENET_EXPECTED.items():
        feats = torch.from_numpy(np.load(out / f"{name.replace(' ', '_')}.npy"))
        with torch.inference_mode():
            logits_from_region = net._fc(feats[0])
            logits_full = net(F.preprocess(_emoji(name))[None])[0]
        torch.testing.assert_close(logits_from_region, logits_full, rtol=1e-3, atol=1e-3)
        assert imagenet_class in logits_from_region.topk(5).indices.tolist(), name


def test_mmf_rc10_reader_reads_the_files(extracted):
    """rc10's PaddedFasterRCNNFeatureReader pads to max_features and returns the info keys ViLBERT uses."""
    from mmf.datasets.databases.readers.feature_readers import FeatureReader

    out, _ = extracted
    reader = FeatureReader(base_path=str(out), depth_first=False, max_features=100)
    feature, info = reader.read("umbrella.npy")
    assert tuple(feature.shape) == (100, 1280)
    assert int(info["max_features"]) == 50
    assert torch.count_nonzero(feature[50:]) == 0
    np.testing.assert_allclose(feature[:50].numpy(), np.load(out / "umbrella.npy"))
    assert info["bbox"].shape == (50, 4) and info["image_width"] == 64 and info["image_height"] == 64


def test_skip_existing_and_recompute(extracted, image_dir):
    out, _ = extracted
    before = os.stat(out / "banana.npy").st_mtime_ns
    again = F.extract_features(image_dir, out, batch_size=4, progress=False)
    assert (again.written, again.skipped_existing, len(again.failed)) == (0, 5, 1)
    assert os.stat(out / "banana.npy").st_mtime_ns == before
    forced = F.extract_features([image_dir / "banana.png"], out, skip_existing=False, progress=False)
    assert (forced.written, forced.skipped_existing) == (1, 0)
    assert os.stat(out / "banana.npy").st_mtime_ns != before


def test_in_memory_images_keyed_by_name(tmp_path):
    images = {"00007": _emoji("umbrella"), "x": Image.new("RGBA", (30, 20), (255, 0, 0, 255))}
    report = F.extract_features_from_images(images, tmp_path, batch_size=8, progress=False)
    assert (report.written, report.failed) == (2, [])
    info = np.load(tmp_path / "x_info.npy", allow_pickle=True).item()
    assert (info["image_width"], info["image_height"]) == (30, 20)
    assert np.load(tmp_path / "00007.npy").shape == (50, 1280)


def test_empty_and_missing_dirs_raise_naming_the_dir(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="empty"):
        F.extract_features(empty, tmp_path / "out", progress=False)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        F.extract_features(tmp_path / "nowhere", tmp_path / "out", progress=False)


def test_duplicate_stems_are_reported_not_overwritten(tmp_path):
    _emoji("umbrella").save(tmp_path / "same.png")
    _emoji("banana").convert("RGB").save(tmp_path / "same.jpg")
    report = F.extract_features(tmp_path, tmp_path / "out", progress=False)
    assert report.written == 1
    assert len(report.failed) == 1 and "duplicate output name" in report.failed[0][1]


def test_region_boxes_grid():
    boxes = F.region_boxes(70, 35)
    assert boxes.shape == (50, 4)
    np.testing.assert_allclose(boxes[1], [0, 0, 10, 5])
    np.testing.assert_allclose(boxes[7], [60, 0, 70, 5])  # last cell of the first row
    np.testing.assert_allclose(boxes[49], [60, 30, 70, 35])


def test_cli_summary_and_exit_codes(image_dir, tmp_path, capsys):
    out = tmp_path / "cli_out"
    code = F.main_extract_features(["--images", str(image_dir), "--out", str(out), "--batch-size", "8", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0
    assert "5 written, 0 skipped (existing), 1 failed" in captured.out and str(out) in captured.out
    assert "broken.png" in captured.err

    only_broken = tmp_path / "only_broken"
    only_broken.mkdir()
    (only_broken / "bad.png").write_bytes(b"garbage")
    assert F.main_extract_features(["--images", str(only_broken), "--out", str(out / "b"), "--no-progress"]) == 1

    empty = tmp_path / "empty"
    empty.mkdir()
    assert F.main_extract_features(["--images", str(empty), "--out", str(out / "c")]) == 1
    assert str(empty) in capsys.readouterr().err
