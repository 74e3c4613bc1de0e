"""Helpers to run the unmodified ``mmf_run`` / ``mmf_predict`` console scripts on replicas."""

import copy
import os
import shutil
import subprocess
import sys

import yaml

from tests import replicas

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROJECT_CONFIGS = os.path.join(REPO, "projects", "refnet", "configs")


def console_script(name: str) -> str:
    path = shutil.which(name, path=os.path.dirname(sys.executable)) or shutil.which(name)
    if path is None:
        raise FileNotFoundError(f"{name} is not installed next to {sys.executable}")
    return path


# A zoo download that a test did not arrange goes to a closed local port, never to MMF's server.
UNREACHABLE_MIRROR = "http://127.0.0.1:9/mmf/data/"


def offline_env(extra=None) -> dict:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
                "MMF_ZOO_MIRROR": UNREACHABLE_MIRROR})
    env.pop("MMF_USER_DIR", None)
    env.update(extra or {})
    return env


def tiny_config(tmp_path, dataset: str, model: str, overrides=None) -> str:
    """A config that includes the project config and shrinks ViLBERT and the schedule."""
    tokenizer = replicas.write_tokenizer(os.path.join(tmp_path, "tokenizer"))
    config = {
        "includes": [project_config(dataset, model)],
        "model": model,
        "model_config": {model: tiny_model(model)},
        "dataset_config": {dataset: {"max_features": replicas.N_BOXES, "processors": {"text_processor": {"params": {
            "tokenizer_config": {"type": tokenizer}, "max_seq_length": 16}}}}},
        "training": {"batch_size": 16, "max_updates": 6, "log_interval": 2, "evaluation_interval": 3,
                     "checkpoint_interval": 3, "seed": 1, "num_workers": 0,
                     "device": os.environ.get("REFNET_TEST_DEVICE", "cpu")},
        "scheduler": {"params": {"num_warmup_steps": 0}},
        "optimizer": {"params": {"lr": 1.0e-3}},
    }
    _merge(config, overrides or {})
    path = os.path.join(tmp_path, f"{dataset}_{model}.yaml")
    with open(path, "w") as handle:
        yaml.safe_dump(config, handle)
    return path


REFNET_MODELS = ("refnet", "refnet_ms", "visual_bert_refnet", "mmbt_refnet")
TINY_HEAD = {"fused_dim": 16, "classifier": {"hidden_dim": 16, "dropout": 0.0}, "refiner": {"hidden_dim": 32, "dropout": 0.0}}


def project_config(dataset: str, model: str) -> str:
    """The project config of ``model`` on ``dataset``; for a backbone with no file of its own there,
    the dataset's defaults (the test config names the model)."""
    path = os.path.join(PROJECT_CONFIGS, dataset, f"{model}.yaml")
    return path if os.path.exists(path) else os.path.join(PROJECT_CONFIGS, dataset, "defaults.yaml")


def tiny_model(model: str) -> dict:
    """Backbone and head sizes that train in seconds on a CPU."""
    vocab = replicas.vocab_size()
    bert = {"vocab_size": vocab, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 64, "max_position_embeddings": 64, "bert_model_name": None,
            "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    if model == "visual_bert_refnet":
        overrides = {**bert, "visual_embedding_dim": replicas.FEATURE_DIM}
    elif model == "mmbt_refnet":
        overrides = {**bert, "modal_hidden_size": replicas.FEATURE_DIM,
                     "modal_encoder": {"params": {"in_dim": replicas.FEATURE_DIM}}}
    else:
        overrides = replicas.tiny_vilbert_overrides(vocab)
    if model in REFNET_MODELS:
        overrides.update(copy.deepcopy(TINY_HEAD))  # a test's overrides merge into it: never into TINY_HEAD itself
    return overrides


def _merge(base: dict, extra: dict) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def run_cli(script: str, config: str, data_dir: str, save_dir: str, *opts, env=None, check=True, timeout=600):
    """The installed console script ``script`` in a new process."""
    command = [console_script(script), f"config={config}", f"env.data_dir={data_dir}", f"env.save_dir={save_dir}", *opts]
    result = subprocess.run(command, capture_output=True, text=True, env=offline_env(env), timeout=timeout)
    return _checked(result, command, check)


def run_mmf(script: str, config: str, data_dir: str, save_dir: str, *opts, env=None, check=True):
    """``script`` (mmf_run / mmf_predict) as ``run_cli`` runs it, in this process (tests/inprocess_run.py)."""
    from tests import inprocess_run

    command = [f"config={config}", f"env.data_dir={data_dir}", f"env.save_dir={save_dir}", *opts]
    return _checked(inprocess_run.run(script, command, offline_env(env)), [script, *command], check)


def _checked(result, command, check):
    if check and result.returncode != 0:
        output = f"{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{output}")
    return result


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_ranks(plan: list, work_dir: str, processes: int = 2, env=None, timeout: float = 900) -> list:
    """``plan`` (tests/distributed_harness.py's runs) on ``processes`` gloo ranks with torchrun's
    environment, each rank a process forked from the preloaded server (tests/forkserver.py);
    the ranks' CompletedProcess-like results, rank by rank."""
    import json

    from tests import forkserver

    path = os.path.join(work_dir, f"plan_{len(os.listdir(work_dir))}.json")
    with open(path, "w") as handle:
        json.dump(plan, handle)
    port = str(free_port())
    children = []
    for rank in range(processes):
        rank_env = offline_env({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(processes),
                                "LOCAL_WORLD_SIZE": str(processes), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port,
                                **(env or {})})
        children.append(forkserver.start([os.path.join(REPO, "tests", "distributed_harness.py"), path], rank_env))
    try:
        for child in children:
            child.wait(timeout)
    finally:
        for child in children:
            child.kill()
    for rank, child in enumerate(children):
        assert child.returncode == 0, f"rank {rank} exited with {child.returncode}:\n{child.stderr[-5000:]}"
    return children
