"""Your own data: the README's four commands, as written, on a generated image folder; and the
checks, splits, configs and prediction rows behind them."""

import argparse
import csv
import glob
import json
import os
import re
import shlex
import subprocess

import pytest
import torch
import yaml

from mmf_refnet.data import own_data
from mmf_refnet.data.image_text import prediction_rows
from tests import own_images, runner

MARKER = "<!-- tests/test_own_data.py runs the next block as written -->"


def readme_commands() -> list:
    with open(os.path.join(runner.REPO, "README.md")) as handle:
        text = handle.read()
    block = re.search(re.escape(MARKER) + r"\s*```bash\n(.*?)```", text, re.S)
    assert block, "README has no own-data command block"
    return [line for line in block.group(1).replace("\\\n", " ").splitlines() if line.strip()]


def _environment(tmp) -> dict:
    env = runner.offline_env({"HF_HOME": str(tmp / "hf_home"), "HF_HUB_CACHE": str(tmp / "hf_home" / "hub")})
    env["PATH"] = os.path.dirname(runner.console_script("mmf_run")) + os.pathsep + env.get("PATH", "")
    return env


@pytest.fixture(scope="module")
def own_run(tmp_path_factory):
    """A 'repository root' with the project configs and my_data/ (3 classes x 30 images); the commands run there."""
    root = tmp_path_factory.mktemp("own")
    os.symlink(os.path.join(runner.REPO, "projects"), root / "projects")
    own_images.make_folder(str(root / "my_data"), per_class=30)
    outputs = []
    for command in readme_commands():
        result = subprocess.run(shlex.split(command), cwd=root, env=_environment(root), capture_output=True,
                                text=True, timeout=1200)
        assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        outputs.append(result.stdout + result.stderr)
    return {"root": root, "outputs": outputs}


def _read_jsonl(path):
    with open(path) as handle:
        return [json.loads(line) for line in handle]


def test_readme_commands_train_and_predict_above_chance(own_run):
    root = own_run["root"]
    test_rows = _read_jsonl(root / "my_data" / "data_splits" / "test.jsonl")
    (path,) = glob.glob(str(root / "save" / "my_data" / "predictions" / "image_text_*test*.csv"))
    with open(path) as handle:
        predictions = list(csv.DictReader(handle))
    assert [row["id"] for row in predictions] == [row["id"] for row in test_rows]  # one row per test id
    assert list(predictions[0]) == ["id", "label", "proba_circle", "proba_square", "proba_triangle"]
    for row in predictions:
        probabilities = [float(row[f"proba_{name}"]) for name in own_images.SHAPES]
        assert abs(sum(probabilities) - 1) < 1e-5
        assert row["label"] == list(own_images.SHAPES)[probabilities.index(max(probabilities))]
    correct = sum(p["label"] == t["label"] for p, t in zip(predictions, test_rows))
    assert len(test_rows) == 9 and correct >= 7, f"{correct}/9 held-out rows right (chance: 3/9)"


def test_readme_commands_show_training_and_metrics(own_run):
    train_output = own_run["outputs"][2]
    assert re.search(r"progress: \d+/30, train/total_loss", train_output)
    assert re.search(r"val/image_text/accuracy: [0-9.]+, val/image_text/macro_f1", train_output)


# --- the checks behind `refnet own-data-config` ---------------------------------------------------

def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def test_bad_rows_are_named_by_file_and_line(tmp_path):
    good = '{"id": 1, "img": "img/1.png", "text": "a", "label": 0}'
    cases = {
        "line 2: not valid JSON": [good, '{"id": 2, '],
        "line 2: no img": [good, '{"id": 2, "text": "b", "label": 1}'],
        "line 2: id 1 repeats line 1": [good, '{"id": 1, "img": "img/2.png", "text": "b", "label": 1}'],
    }
    for expected, lines in cases.items():
        path = _write(tmp_path / "data.jsonl", lines)
        with pytest.raises(own_data.OwnDataError, match=f"{re.escape(path)}, {expected}"):
            own_data.read_rows(path)
    with pytest.raises(own_data.OwnDataError, match="labels mix integers and strings"):
        own_data.find_classes([{"id": 1, "label": 0}, {"id": 2, "label": "cat"}], "x")
    with pytest.raises(own_data.OwnDataError, match="found 1 class"):
        own_data.find_classes([{"id": 1, "label": "cat"}, {"id": 2}], "x")


def test_split_is_stratified_seeded_and_keeps_unlabeled_rows_in_training():
    rows = [{"id": i, "label": ["a", "b", "c"][i % 3]} for i in range(60)] + [{"id": 100 + i} for i in range(5)]
    splits = own_data.split_rows(rows, (0.8, 0.1, 0.1), seed=3)
    assert splits == own_data.split_rows(rows, (0.8, 0.1, 0.1), seed=3)
    assert splits != own_data.split_rows(rows, (0.8, 0.1, 0.1), seed=4)
    for split, per_class in (("val", 2), ("test", 2)):
        assert sorted(row["label"] for row in splits[split]) == sorted(["a", "b", "c"] * per_class)
    assert sum(1 for row in splits["train"] if "label" not in row) == 5
    assert sorted(row["id"] for split in splits.values() for row in split) == sorted(row["id"] for row in rows)


def test_missing_features_name_rows_and_the_extract_command(tmp_path):
    rows = [{"id": "x", "img": "img/x.png"}, {"id": "y", "img": "img/y.jpg"}]
    (tmp_path / "features").mkdir()
    for name in ("x.npy", "x_info.npy", "y.npy"):
        (tmp_path / "features" / name).write_bytes(b"")
    with pytest.raises(own_data.OwnDataError) as error:
        own_data.check_features(rows, str(tmp_path / "features"), "data.jsonl", "my_data/img")
    message = str(error.value)
    assert "1 of 2 rows have no features" in message and "id 'y' (img 'img/y.jpg')" in message
    assert f"refnet extract-features --images my_data/img --out {tmp_path / 'features'}" in message


@pytest.mark.parametrize("classes, metrics, criterion", [
    ([0, 1], ["accuracy", "binary_f1", "roc_auc"], "image_text/roc_auc"),
    (["cat", "dog", "fox"], ["accuracy", "macro_f1"], "image_text/accuracy"),
])
def test_config_metrics_and_schedule_follow_the_classes(classes, metrics, criterion):
    training = own_data.schedule(train_rows=100, batch_size=32, epochs=10)
    assert training["max_updates"] == 40 and training["evaluation_interval"] == 4
    config = own_data.build_config("/t", "refnet_ms", "minilm", classes, {"train": "a", "val": "b", "test": "c"},
                                   "/f", {"train": 100, "val": 10, "test": 10}, training)
    assert config["includes"] == ["/t/refnet_ms.yaml", "/t/minilm.yaml"]
    assert config["model_config"]["refnet_ms"]["num_labels"] == len(classes)
    assert config["evaluation"]["metrics"] == metrics
    assert config["training"]["early_stop"]["criteria"] == criterion


def test_prediction_rows_binary_is_the_hateful_memes_format_and_n_class_lists_every_class():
    probabilities = torch.tensor([[0.2, 0.8], [0.9, 0.1]])
    assert prediction_rows(["a", 7], probabilities, [0, 1]) == [
        {"id": "a", "proba": pytest.approx(0.8), "label": 1}, {"id": 7, "proba": pytest.approx(0.1), "label": 0}]
    rows = prediction_rows([1], torch.tensor([[0.1, 0.3, 0.6]]), ["cat", "dog", "fox"])
    assert rows == [{"id": 1, "label": "fox", "proba_cat": pytest.approx(0.1), "proba_dog": pytest.approx(0.3),
                     "proba_fox": pytest.approx(0.6)}]


def test_dataset_refuses_unknown_labels_and_a_wrong_num_labels(tmp_path):
    """The image_text builder/dataset in-process on a 2-class config written by own-data-config."""
    from mmf.common.registry import registry
    from mmf.utils.configuration import Configuration

    from mmf_refnet.data.features import write_features

    rows = [{"id": i, "img": f"img/{i}.png", "text": "word", "label": ["cat", "dog"][i % 2]} for i in range(20)]
    _write(tmp_path / "data.jsonl", [json.dumps(row) for row in rows])
    (tmp_path / "features").mkdir()
    for row in rows:
        write_features(tmp_path / "features", str(row["id"]), torch.zeros(50, 1280).numpy(), 10, 10)
    out = tmp_path / "cfg.yaml"
    assert own_data.main_own_data_config([str(tmp_path / "data.jsonl"), "--out", str(out), "--backbone", "minilm",
                                          "--config-dir", runner.PROJECT_CONFIGS]) == 0

    def load(split, *opts):
        config = Configuration(argparse.Namespace(opts=[f"config={out}", *opts], config_override=None)).get_config()
        registry.register("config", config)
        builder = registry.get_builder_class("image_text")()
        builder.build_dataset(config.dataset_config.image_text, split)
        return builder.load_dataset(config.dataset_config.image_text, split)

    dataset = load("val")
    assert dataset.classes == ["cat", "dog"]
    targets = [int(dataset[i].targets) for i in range(2)]
    assert targets == [["cat", "dog"].index(dataset.annotation_db[i]["label"]) for i in range(2)]
    assert sorted(targets) == [0, 1]
    with pytest.raises(ValueError, match=r"num_labels is 3 but dataset_config.image_text.classes lists 2"):
        load("val", "model_config.refnet_ms.num_labels=3")
    with pytest.raises(ValueError, match=r"classes must be a list of label values, got '\[cat,bird\]'"):
        load("val", "dataset_config.image_text.classes=[cat,bird]")
    written = yaml.safe_load(out.read_text())
    written["dataset_config"]["image_text"]["classes"] = ["cat", "bird"]
    out.write_text(yaml.safe_dump(written))
    with pytest.raises(ValueError, match=r"dev.jsonl\), row 1 \(id \d+\): label '\w+' is not one of dataset_config."
                                         r"image_text.classes \['cat', 'bird'\]"):
        load("val")


@pytest.mark.parametrize("model", own_data.MODELS)
@pytest.mark.parametrize("backbone", own_data.BACKBONES)
def test_every_model_and_backbone_composes(tmp_path, model, backbone):
    from mmf.utils.configuration import Configuration

    from mmf_refnet import assets

    rows = [{"id": i, "img": f"img/{i}.png", "text": "w", "label": i % 2} for i in range(20)]
    _write(tmp_path / "data.jsonl", [json.dumps(row) for row in rows])
    (tmp_path / "features").mkdir()
    for row in rows:
        for name in own_data.feature_files(str(tmp_path / "features"), row["img"]):
            open(name, "wb").close()
    out = tmp_path / "cfg.yaml"
    assert own_data.main_own_data_config([str(tmp_path / "data.jsonl"), "--out", str(out), "--model", model,
                                          "--backbone", backbone, "--config-dir", runner.PROJECT_CONFIGS]) == 0
    config = Configuration(argparse.Namespace(opts=[f"config={out}"], config_override=None)).get_config()
    block = config.model_config[model]
    assert config.model == model and config.datasets == "image_text"
    assert block.num_labels == 2 and block.v_feature_size == 1280
    assert block.bert_model_name == (assets.asset_path("minilm") if backbone == "minilm" else "bert-base-uncased")
    assert block.hidden_size == (384 if backbone == "minilm" else 768)
    assert list(config.evaluation.metrics) == ["accuracy", "binary_f1", "roc_auc"]
    assert list(config.dataset_config.image_text.classes) == [0, 1]
