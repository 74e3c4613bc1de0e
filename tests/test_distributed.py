"""Several processes train, evaluate and predict what one process does (2 gloo ranks on the CPU
stand in for GPUs and nodes).

The 2-process runs are tests/distributed_harness.py on 2 ranks with torchrun's environment (each
rank a process forked from the preloaded server), every run of a plan in the same 2 processes;
the 1-process runs are ``mmf_run``'s function in this process. Data: the tests' Hateful Memes
replica (64 train rows, 15 val, 15 test: splits that do not divide by 2). Models: the tiny ones of
tests/runner.py, dropout 0, fp32, Adam at lr 1e-3 (a step moves a weight by up to 1e-3).
"""

import csv
import glob
import json
import os
import re

import pytest
import torch

from mmf_refnet.train_log import last_metrics
from tests import replicas, runner

MODELS = ("refnet", "refnet_ms", "vilbert")
LABELS = {  # name: options (dataset_config.hateful_memes.<key>=...)
    "all labeled": [],
    "half, natural mixing": ["label_fraction=0.5", "labeled_per_batch=None"],
    "half, 4 rows a batch": ["label_fraction=0.5", "labeled_per_batch=4"],
    "half, a share of 0.5": ["label_fraction=0.5", "labeled_per_batch=0.5"],
}
TRAIN = ("run_type=train", "training.batch_size=8", "training.max_updates=8", "training.log_interval=4",
         "training.checkpoint_interval=100", "training.evaluation_interval=100", "distributed.backend=gloo")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    data = str(root / "data")
    replicas.hateful_memes(data, sizes=(64, 15, 15), rule="image")
    configs = {}
    for model in MODELS:
        os.makedirs(root / model)
        configs[model] = runner.tiny_config(str(root / model), "hateful_memes", model)
    return {"root": root, "data": data, "configs": configs}


def _opts(work, model, save, *extra, data=None):
    return [f"config={work['configs'][model]}", f"env.data_dir={data or work['data']}", f"env.save_dir={save}", *extra]


def _labels(name):
    return [f"dataset_config.hateful_memes.{option}" for option in LABELS[name]]


def _rank_records(save):
    return [json.load(open(os.path.join(save, f"rank{rank}.json"))) for rank in (0, 1)]


def _final(save, model):
    return torch.load(os.path.join(save, f"{model}_final.pth"), map_location="cpu")


@pytest.fixture(scope="module")
def trained(work):
    """Every model x label setting, 8 updates at global batch 8: in 1 process and on 2 ranks."""
    root, plan, runs = work["root"], [], {}
    for model in MODELS:
        for index, name in enumerate(LABELS):
            one, two = str(root / f"{model}_{index}_one"), str(root / f"{model}_{index}_two")
            runner.run_mmf("mmf_run", work["configs"][model], work["data"], one, *TRAIN, *_labels(name))
            plan.append({"script": "mmf_run", "opts": _opts(work, model, two, *TRAIN, *_labels(name),
                                                             "training.check_replicas=True")})
            runs[model, name] = one, two
    runner.run_ranks(plan, str(root))
    return runs


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("labels", LABELS)
def test_two_processes_reach_the_parameters_of_one(trained, model, labels):
    one, two = trained[model, labels]
    for record in _rank_records(two):
        assert record["returncode"] == 0, record["output"]
    expected, got = _final(one, model), _final(two, model)
    assert set(got) == set(expected)  # the model's own keys, not DDP's module.*
    worst = max(float((got[key] - expected[key]).abs().max()) for key in expected)
    assert worst <= 1e-4, f"{model}, {labels}: parameters differ by {worst}"
    other = _final(trained[model, "all labeled" if labels != "all labeled" else "half, natural mixing"][0], model)
    assert max(float((other[key] - expected[key]).abs().max()) for key in expected) > 1e-3  # the tolerance is tight


def test_every_training_row_goes_to_one_rank_once_an_epoch(work):
    """At the project configs' seed (-1: a random one in each process; the tests' config pins 1, so it is
    set back) and at a pinned one; twice at -1, which draws a new data seed each time."""
    runs = {name: str(work["root"] / f"seed_{name}") for name in ("default", "again", "pinned")}
    seeds = {"default": "-1", "again": "-1", "pinned": "5"}
    runner.run_ranks([{"script": "mmf_run", "opts": _opts(work, "refnet_ms", runs[name], *TRAIN, f"training.seed={seeds[name]}")}
                      for name in runs], str(work["root"]))
    with open(os.path.join(work["data"], "datasets/hateful_memes/defaults/annotations/train.jsonl")) as handle:
        train_ids = sorted(json.loads(line)["id"] for line in handle)
    logged = {}
    for name, save in runs.items():
        ranks = [[row for batch in record["batches"] for row in batch] for record in _rank_records(save)]
        assert all(len(rows) == 32 for rows in ranks)  # 8 updates x 4 rows: exactly the first epoch
        assert sorted(ranks[0] + ranks[1]) == train_ids, f"{name}: rows seen twice or never"
        with open(os.path.join(save, "train.log")) as handle:
            (logged[name],) = re.findall(r"data_seed=(\d+) \(rank 0's", handle.read())
    assert logged["pinned"] == "5" and logged["default"] != logged["again"]


def test_replicas_are_checked_and_identical(trained):
    _, save = trained["refnet_ms", "half, natural mixing"]
    with open(os.path.join(save, "train.log")) as handle:
        lines = re.findall(r"update (\d+): replicas identical on 2 processes", handle.read())
    assert lines == ["4", "8"]


def test_differing_replicas_stop_the_run(tmp_path):
    code = (f"import sys, torch, torch.distributed as dist; sys.path.insert(0, {runner.REPO!r})\n"
            "from mmf_refnet import training_state\n"
            "dist.init_process_group('gloo')\n"
            "model = torch.nn.Linear(2, 2)\n"
            "torch.nn.init.constant_(model.weight, float(dist.get_rank())); torch.nn.init.zeros_(model.bias)\n"
            "try:\n    training_state.check_replicas(model, 3)\n"
            "except training_state.ReplicasDiffer as error:\n    print('REFUSED', error)\n")
    from tests import forkserver

    port, children = str(runner.free_port()), []
    for rank in (0, 1):
        env = runner.offline_env({"RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port})
        children.append(forkserver.start(["-c", code], env))
    for child in children:
        child.wait(300)
        assert "REFUSED update 3: the parameters of rank(s) [1] differ from rank 0's, first at weight" in child.stdout, (
            child.stdout + child.stderr)


@pytest.fixture(scope="module")
def evaluated(trained, work):
    """refnet_ms's 1-process checkpoint evaluated (val) and predicted (test) in 1 process and on 2 ranks."""
    one, _ = trained["refnet_ms", "all labeled"]
    checkpoint = ("checkpoint.resume_file=" + os.path.join(one, "refnet_ms_final.pth"), "checkpoint.resume_pretrained=False")
    root = work["root"]
    saves = {name: str(root / f"evaluated_{name}") for name in ("val_one", "val_two", "test_one", "test_two")}
    runner.run_mmf("mmf_run", work["configs"]["refnet_ms"], work["data"], saves["val_one"], "run_type=val",
                   "training.batch_size=4", *checkpoint)
    runner.run_mmf("mmf_predict", work["configs"]["refnet_ms"], work["data"], saves["test_one"], "run_type=test",
                   "training.batch_size=4", *checkpoint)
    runner.run_ranks([
        {"script": "mmf_run", "opts": _opts(work, "refnet_ms", saves["val_two"], "run_type=val", "training.batch_size=4",
                                            "distributed.backend=gloo", *checkpoint)},
        {"script": "mmf_predict", "opts": _opts(work, "refnet_ms", saves["test_two"], "run_type=test",
                                                "training.batch_size=4", "distributed.backend=gloo", *checkpoint)},
    ], str(root))
    return saves


def test_validation_metrics_count_each_row_once(evaluated):
    one, two = last_metrics(evaluated["val_one"], "val"), last_metrics(evaluated["val_two"], "val")
    assert {"accuracy", "binary_f1", "roc_auc", "cross_entropy", "refiner_text"} <= set(one)
    for name in ("accuracy", "binary_f1", "roc_auc", "cross_entropy", "refiner_text", "refiner_image"):
        assert abs(one[name] - two[name]) <= 1e-4, (name, one[name], two[name])  # log lines have 4 decimals


def _predictions(save):
    (path,) = glob.glob(os.path.join(save, "**", "*.csv"), recursive=True)
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_predictions_of_two_processes_have_each_id_once_in_order(evaluated, work):
    one, two = _predictions(evaluated["test_one"]), _predictions(evaluated["test_two"])
    with open(os.path.join(work["data"], "datasets/hateful_memes/defaults/annotations/test_unseen.jsonl")) as handle:
        test_ids = [str(json.loads(line)["id"]) for line in handle]
    assert [row["id"] for row in two] == [row["id"] for row in one] == test_ids
    assert max(abs(float(a["proba"]) - float(b["proba"])) for a, b in zip(one, two)) <= 1e-5
    assert [row["label"] for row in two] == [row["label"] for row in one]


def _refused(work, save, *opts, data=None):
    runner.run_ranks([{"script": "mmf_run", "opts": _opts(work, "refnet_ms", save, *opts, data=data)}], str(work["root"]))
    rank0, rank1 = _rank_records(save)
    assert rank0["returncode"] != 0 and rank1["returncode"] != 0
    assert not glob.glob(os.path.join(save, "**", "*.ckpt"), recursive=True)  # before any update
    return rank0["output"]


def test_bad_distributed_settings_are_named_before_any_update(work):
    save = str(work["root"] / "bad_batch")
    output = _refused(work, save, *TRAIN, "training.batch_size=9")
    assert ("training.batch_size=9 does not split among 2 processes (each takes training.batch_size / 2 rows of "
            "every batch): set training.batch_size=8 or 10") in output
    tiny = str(work["root"] / "tiny_val")
    replicas.hateful_memes(tiny, sizes=(8, 1, 2))
    output = _refused(work, str(work["root"] / "bad_split"), *TRAIN, data=tiny)
    assert "hateful_memes val split has 1 row(s) for 2 processes: every process needs at least one" in output
    output = _refused(work, str(work["root"] / "bad_labeled"), *TRAIN, *_labels("half, natural mixing")[:1],
                      "dataset_config.hateful_memes.labeled_per_batch=9")
    assert "labeled_per_batch=9: the number of labeled rows per batch must be between 1 and the batch size" in output


def test_a_resumed_run_keeps_the_data_seed_rank_zero_drew(work):
    """training.seed -1 draws a new seed in every run; the resumed run takes its checkpoint's."""
    save = str(work["root"] / "resumed_seed")
    first = ["run_type=train", "training.batch_size=8", "training.max_updates=4", "training.checkpoint_interval=4",
             "training.evaluation_interval=100", "training.log_interval=2", "training.seed=-1"]
    runner.run_ranks([{"script": "mmf_run", "opts": _opts(work, "refnet_ms", save, *first)},
                      {"script": "mmf_run", "opts": _opts(work, "refnet_ms", save, *first[:2], "training.max_updates=8",
                                                          *first[3:], "checkpoint.resume=True")}], str(work["root"]))
    for record in _rank_records(save):
        assert record["returncode"] == 0, record["output"]
    with open(os.path.join(save, "train.log")) as handle:
        seeds = re.findall(r"data_seed=(\d+) \(rank 0's", handle.read())
    assert len(seeds) == 2 and seeds[0] == seeds[1], seeds
