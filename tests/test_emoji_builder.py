"""The emoji_memes MMF builder end to end: auto-prepared data, training, ablation, bad variants."""

import os

import pytest
import torch

from tests import replicas, runner

SMALL = {"max_emojis": 40, "max_features": 50}


def _config(tmp_path, model="refnet_ms", dataset_overrides=None):
    overrides = replicas.tiny_vilbert_overrides(30522)
    overrides.update({"v_feature_size": 1280, "bert_model_name": None})
    config = runner.tiny_config(str(tmp_path), "hateful_memes", model, {
        "includes": [os.path.join(runner.PROJECT_CONFIGS, "demo", f"{model}.yaml")],
        "model_config": {model: overrides},
        "dataset_config": {"emoji_memes": {**SMALL, **(dataset_overrides or {})},
                           "hateful_memes": {"max_features": 50}},
        "training": {"early_stop": {"criteria": "emoji_memes/roc_auc"}},
    })
    return config


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("emoji_data"))


def test_mmf_run_prepares_and_trains_on_emoji_memes(data_dir, tmp_path):
    config = _config(tmp_path)
    runner.run_mmf("mmf_run", config, data_dir, str(tmp_path / "save"), "dataset=emoji_memes")
    with open(tmp_path / "save" / "train.log") as handle:
        log = handle.read()
    assert "val/emoji_memes/roc_auc" in log and "val/emoji_memes/refiner_image" in log
    root = os.path.join(data_dir, "datasets", "emoji_memes", "defaults")
    assert os.path.isfile(os.path.join(root, "annotations", "train.jsonl"))


def test_ablation_blanks_one_modality(data_dir, tmp_path):
    import argparse

    from mmf.utils.build import build_dataset  # noqa: E402
    from mmf.utils.configuration import Configuration

    from tests import inprocess  # noqa: F401  (loads the plugin)

    config = _config(tmp_path, dataset_overrides={"ablate": "image"})
    cfg = Configuration(argparse.Namespace(opts=[f"config={config}", "dataset=emoji_memes",
                                                 f"env.data_dir={data_dir}"], config_override=None)).get_config()
    dataset = build_dataset("emoji_memes", cfg.dataset_config.emoji_memes, "val")
    sample = dataset[0]
    assert torch.count_nonzero(sample.image_feature_0) == 0 and sample.input_mask.sum() > 2
    cfg.dataset_config.emoji_memes.ablate = "text"
    dataset = build_dataset("emoji_memes", cfg.dataset_config.emoji_memes, "val")
    sample = dataset[0]
    assert sample.input_mask.sum() == 2 and torch.count_nonzero(sample.image_feature_0) > 0  # [CLS] [SEP] only


def test_variant_and_annotation_dir_must_agree(data_dir, tmp_path):
    config = _config(tmp_path, dataset_overrides={"variant": "category"})
    result = runner.run_mmf("mmf_run", config, data_dir, str(tmp_path / "save"), "dataset=emoji_memes", check=False)
    assert result.returncode != 0
    assert "dataset_config.emoji_memes.variant is 'category' but annotation_dir is" in result.stderr


def test_mmf_run_restores_a_missing_feature_and_keeps_changed_annotations(data_dir, tmp_path):
    """A deleted feature is re-extracted; the user's shortened train.jsonl is trained on, not regenerated."""
    import hashlib
    import json
    import shutil

    from mmf_refnet.data import emoji_memes as em

    em.prepare_emoji_memes(data_dir, "fit", seed=0, max_emojis=40, confounder_kind="random", progress=False)
    shutil.copytree(data_dir, tmp_path / "data")
    root = em.dataset_root(tmp_path / "data")
    annotations = {name: root / "annotations" / name for name in ("train.jsonl", "dev.jsonl", "test.jsonl")}
    lines = annotations["train.jsonl"].read_text().splitlines(keepends=True)
    annotations["train.jsonl"].write_text("".join(lines[:12]))
    before = {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in annotations.items()}
    stem = em.feature_name(json.loads(annotations["dev.jsonl"].read_text().splitlines()[0])["img"])
    (root / "features" / f"{stem}.npy").unlink()

    runner.run_mmf("mmf_run", _config(tmp_path), str(tmp_path / "data"), str(tmp_path / "save"), "dataset=emoji_memes",
                   "training.max_updates=2", "training.batch_size=4")
    assert {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in annotations.items()} == before
    assert (root / "features" / f"{stem}.npy").is_file()
