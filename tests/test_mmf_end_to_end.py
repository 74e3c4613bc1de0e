"""``mmf_run`` / ``mmf_predict`` (offline, CPU) on generated replicas: the installed console scripts as
subprocesses where the script or several processes are the point (the first training, the 2-process gloo
run), their function in this process elsewhere (tests/inprocess_run.py)."""

import csv
import glob
import json
import os
import re
import socket
import subprocess

import pytest
import torch
from omegaconf import OmegaConf

from mmf_refnet.train_log import last_metrics
from tests import replicas, runner


def val_metrics(save_dir: str) -> dict:
    """The last 'val/...' progress line of train.log as {metric: value}."""
    metrics = last_metrics(save_dir, "val")
    assert metrics, f"no validation line in {save_dir}/train.log"
    return metrics


@pytest.fixture(scope="module")
def hm_data(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("hm_data"))
    replicas.hateful_memes(data_dir, sizes=(64, 32, 24), rule="image")
    return data_dir


@pytest.fixture(scope="module")
def hm_vilbert(hm_data, tmp_path_factory):
    work = str(tmp_path_factory.mktemp("hm_vilbert"))
    config = runner.tiny_config(work, "hateful_memes", "vilbert")
    save = os.path.join(work, "save")
    result = runner.run_cli("mmf_run", config, hm_data, save)
    return {"config": config, "save": save, "data": hm_data, "stdout": result.stdout + result.stderr}


def test_vilbert_trains_on_hateful_memes_and_learns(hm_vilbert):
    metrics = val_metrics(hm_vilbert["save"])
    assert {"accuracy", "binary_f1", "roc_auc"} <= set(metrics)
    # the label is the image bit (balanced classes): chance is 0.5
    assert metrics["accuracy"] >= 0.85 and metrics["roc_auc"] >= 0.9
    for name in ("best.ckpt", "current.ckpt", "vilbert_final.pth", "config.yaml"):
        assert os.path.exists(os.path.join(hm_vilbert["save"], name)), name


def test_rc10s_scheduler_steps_raise_no_deprecation_warning(hm_vilbert):
    # rc10 steps the scheduler by update number; torch's warning about it would reach every user's console
    assert OmegaConf.load(os.path.join(hm_vilbert["save"], "config.yaml")).training.lr_scheduler is True
    assert "The epoch parameter in `scheduler.step()`" not in hm_vilbert["stdout"]


def test_anomaly_detection_is_off_by_default(hm_vilbert):
    assert "Anomaly Detection has been enabled" not in hm_vilbert["stdout"]


def test_resume_continues_from_the_checkpoint(hm_vilbert, tmp_path):
    save = str(tmp_path / "save")
    subprocess.run(["cp", "-r", hm_vilbert["save"], save], check=True)
    runner.run_mmf("mmf_run", hm_vilbert["config"], hm_vilbert["data"], save, "checkpoint.resume=True",
                   "training.max_updates=10")
    state = torch.load(os.path.join(save, "current.ckpt"), map_location="cpu", weights_only=False)
    assert state["num_updates"] >= 10  # rc10 counts its final validation as one more update
    with open(os.path.join(save, "train.log")) as handle:
        progress = [int(m) for m in re.findall(r"progress: (\d+)/10, train", handle.read())]
    assert progress and min(progress) > 6  # no update before the checkpoint's 6 was redone


def test_predict_writes_the_leaderboard_csv(hm_vilbert, tmp_path):
    runner.run_mmf("mmf_predict", hm_vilbert["config"], hm_vilbert["data"], str(tmp_path), "run_type=test",
                   f"checkpoint.resume_file={hm_vilbert['save']}/best.ckpt", "checkpoint.resume_pretrained=False")
    files = glob.glob(str(tmp_path / "**" / "*.csv"), recursive=True)
    assert len(files) == 1, files
    with open(files[0]) as handle:
        rows = list(csv.DictReader(handle))
    test_ids = [row["id"] for row in map(json.loads, open(os.path.join(
        hm_vilbert["data"], "datasets/hateful_memes/defaults/annotations/test_unseen.jsonl")))]
    assert list(rows[0]) == ["id", "proba", "label"]
    assert sorted(int(r["id"]) for r in rows) == sorted(test_ids)
    assert all(0.0 <= float(r["proba"]) <= 1.0 and r["label"] in ("0", "1") for r in rows)
    assert all((float(r["proba"]) > 0.5) == (r["label"] == "1") for r in rows)


@pytest.mark.parametrize("dataset,num_labels,metric", [
    ("mmimdb", 5, "multilabel_micro_f1"),  # 4 genres + MMF's <unk> slot of the answer vocabulary
    ("visual_entailment", 3, "accuracy"),
])
def test_vilbert_trains_on_mmimdb_and_snli_ve(dataset, num_labels, metric, tmp_path):
    data_dir = str(tmp_path / "data")
    getattr(replicas, dataset)(data_dir)
    overrides = {"model_config": {"vilbert": {"num_labels": num_labels}}}
    config = runner.tiny_config(str(tmp_path), dataset, "vilbert", overrides)
    runner.run_mmf("mmf_run", config, data_dir, str(tmp_path / "save"))
    metrics = val_metrics(str(tmp_path / "save"))
    assert metric in metrics and 0.0 <= metrics[metric] <= 1.0
    if dataset == "mmimdb":
        assert "refnet_multilabel_macro_f1" in metrics


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_process_gloo_run_completes_with_ddp(hm_data, tmp_path):
    config = runner.tiny_config(str(tmp_path), "hateful_memes", "refnet_ms")
    command = [runner.console_script("torchrun"), "--nproc_per_node=2", f"--master_port={_free_port()}",
               runner.console_script("mmf_run"), f"config={config}", f"env.data_dir={hm_data}",
               f"env.save_dir={tmp_path}/save", "distributed.backend=gloo"]
    result = subprocess.run(command, capture_output=True, text=True, env=runner.offline_env(), timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    with open(tmp_path / "save" / "train.log") as handle:
        log = handle.read()
    assert "DistributedDataParallel" in log  # the model was wrapped: gradients are synchronised
    assert log.count("Finished run") == 1  # only rank 0 logs
    assert os.path.exists(tmp_path / "save" / "best.ckpt")


@pytest.mark.parametrize("model", ["refnet", "refnet_ms", "visual_bert_refnet", "mmbt_refnet"])
def test_refnet_learns_a_label_only_the_interaction_predicts(model, tmp_path):
    data_dir = str(tmp_path / "data")
    replicas.hateful_memes(data_dir, sizes=(256, 64, 16), rule="xor")
    overrides = {"training": {"max_updates": 200, "evaluation_interval": 100, "checkpoint_interval": 100,
                              "log_interval": 100, "batch_size": 32}, "optimizer": {"params": {"lr": 2.0e-3}}}
    config = runner.tiny_config(str(tmp_path), "hateful_memes", model, overrides)
    runner.run_mmf("mmf_run", config, data_dir, str(tmp_path / "save"))
    metrics = val_metrics(str(tmp_path / "save"))
    # text bit XOR image bit: each modality alone is at chance (0.5)
    assert metrics["accuracy"] >= 0.85 and metrics["roc_auc"] >= 0.9, metrics
    assert "refiner_text" in metrics and "refiner_image" in metrics
    assert ("ms_loss" in metrics) == (model != "refnet")  # refnet's zeta is 0: the term is off


def test_config_written_as_in_the_readme_needs_no_model_or_dataset_argument(hm_vilbert):
    with open(os.path.join(hm_vilbert["save"], "config.yaml")) as handle:
        saved = handle.read()
    assert "model: vilbert" in saved and "datasets: hateful_memes" in saved


def test_user_dir_model_trains_beside_the_plugin(hm_data, tmp_path):
    user_dir = tmp_path / "my_refnet_user_dir"
    user_dir.mkdir()
    (user_dir / "model.yaml").write_text("model_config:\n  user_mean_model:\n    losses:\n    - type: cross_entropy\n")
    (user_dir / "__init__.py").write_text(f'''
import os, torch
from mmf.common.registry import registry
from mmf.models.base_model import BaseModel

@registry.register_model("user_mean_model")
class UserMeanModel(BaseModel):
    @classmethod
    def config_path(cls):
        return {str(user_dir / "model.yaml")!r}

    def build(self):
        self.classifier = torch.nn.Linear({replicas.FEATURE_DIM}, 2)

    def forward(self, sample_list):
        return {{"scores": self.classifier(sample_list.image_feature_0.mean(1))}}
''')
    config = runner.tiny_config(str(tmp_path), "hateful_memes", "vilbert")
    runner.run_mmf("mmf_run", config, hm_data, str(tmp_path / "save"), "model=user_mean_model", f"env.user_dir={user_dir}")
    assert val_metrics(str(tmp_path / "save"))["accuracy"] >= 0.5
