"""Resuming and checkpoints (issue 16): a run killed at any moment resumes as the
same run, checkpoint files are never left half-written, damaged or mismatched
checkpoints are named, and two runs cannot share one save_dir.

The end-to-end rows run ``mmf_run`` (tests/resume_harness.py: MMF's own
``mmf_cli.run`` plus kill/pause hooks and a record of every update's loss) on a
tiny refnet_ms with dropout (so random numbers matter), LR warmup (so the
schedule matters) and 4 batches per epoch (so resumes fall mid-epoch). The
reference is one uninterrupted run; a resumed run must give the same loss at
every update it trains (1e-6) and the same final model.
"""

import hashlib
import json
import os
import random
import shutil
import time

import pytest
import torch
from omegaconf import OmegaConf

from mmf_refnet import checkpoint_files
from mmf_refnet.checkpoint_files import CheckpointFileError, CheckpointWarning
from mmf_refnet.data.resumable import EpochBatches, default_batch_sampler
from tests import forkserver, inprocess, replicas, runner
from tests.checkpoint_stubs import bare_checkpoint, truncate, write_checkpoint
from tests.test_trainer import make_trainer, train_step

HARNESS = os.path.join(runner.REPO, "tests", "resume_harness.py")
MAX_UPDATES = 12
OVERRIDES = {
    "model_config": {"refnet_ms": {"hidden_dropout_prob": 0.1, "v_hidden_dropout_prob": 0.1,
                                   "classifier": {"dropout": 0.2}, "refiner": {"dropout": 0.2}}},
    "training": {"max_updates": MAX_UPDATES, "log_interval": 1, "checkpoint_interval": 2, "evaluation_interval": 4,
                 "early_stop": {"criteria": "total_loss", "minimize": True}},
    "scheduler": {"params": {"num_warmup_steps": 4}},
}
FINAL = "refnet_ms_final.pth"


def harness(run, save, *opts, env=None, wait=True, label="run"):
    """The harness on ``run``'s config and data into ``save`` (a process of its own, forked from the
    preloaded server: tests/forkserver.py); events go to ``<save>.<label>.jsonl``."""
    command = [HARNESS, f"config={run['config']}", f"env.data_dir={run['data']}", f"env.save_dir={save}", *opts]
    extra = {"REFNET_EVENTS": f"{save}.{label}.jsonl", **(env or {})}
    if not wait:
        return forkserver.start(command, runner.offline_env(extra))
    return forkserver.run(command, runner.offline_env(extra), timeout=600)


def events(save, label="run") -> list:
    path = f"{save}.{label}.jsonl"
    return [json.loads(line) for line in open(path)] if os.path.exists(path) else []


def losses(save) -> dict:
    return {event["update"]: event["loss"] for event in events(save) if "loss" in event}


def assert_same_run(reference, save, first_update):
    """Every update of the resumed run equals the reference's; it started at ``first_update``."""
    trained = [event for event in events(save) if "loss" in event]
    assert [event["update"] for event in trained] == list(range(first_update, MAX_UPDATES + 1))
    expected = losses(reference["save"])
    for event in trained:
        assert abs(event["loss"] - expected[event["update"]]) <= 1e-6, (event, expected[event["update"]])


def assert_same_final_model(reference, save):
    expected = torch.load(os.path.join(reference["save"], FINAL), map_location="cpu")
    got = torch.load(os.path.join(save, FINAL), map_location="cpu")
    assert set(got) == set(expected)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-6, rtol=0, msg=name)
    best = checkpoint_files.read_metadata(os.path.join(save, "best.ckpt"))
    assert best["num_updates"] == checkpoint_files.read_metadata(os.path.join(reference["save"], "best.ckpt"))[
        "num_updates"]


def checkpoint_update(path):
    return checkpoint_files.read_metadata(path)["num_updates"]


def temporaries(save):
    return sorted(os.path.relpath(os.path.join(root, name), save) for root, _, names in os.walk(save)
                  for name in names if checkpoint_files.TEMPORARY_MARK in name)


def output(result) -> str:
    return result.stdout + result.stderr


def train_log(save) -> str:
    """Everything MMF's logger wrote (with ``training.stdout_capture`` it does not print): warnings included."""
    with open(os.path.join(save, "train.log")) as handle:
        return handle.read()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run."""
    work = tmp_path_factory.mktemp("resume")
    data = str(work / "data")
    replicas.hateful_memes(data, sizes=(64, 32, 8), rule="image")
    run = {"config": runner.tiny_config(str(work), "hateful_memes", "refnet_ms", OVERRIDES), "data": data,
           "save": str(work / "reference"), "work": work}
    result = harness(run, run["save"])
    assert result.returncode == 0, output(result)[-4000:]
    assert sorted(losses(run["save"])) == list(range(1, MAX_UPDATES + 1))
    return run


@pytest.fixture(scope="module")
def killed_after_7(reference):
    """A run killed (SIGKILL) after update 7: its last checkpoint is update 6, two batches into epoch 2."""
    save = str(reference["work"] / "killed_after_7")
    result = harness(reference, save, env={"REFNET_KILL_AFTER_UPDATE": "7"})
    assert result.returncode == -9, output(result)[-3000:]
    assert checkpoint_update(os.path.join(save, "current.ckpt")) == 6
    return save


def copy_of(save, tmp_path):
    target = str(tmp_path / "save")
    shutil.copytree(save, target)
    return target


# --- kill -9, then resume ----------------------------------------------------

def test_kill_between_saves_resumes_the_same_run(reference, killed_after_7, tmp_path):
    save = copy_of(killed_after_7, tmp_path)
    result = harness(reference, save, "checkpoint.resume=True")
    assert result.returncode == 0, output(result)[-4000:]
    assert_same_run(reference, save, first_update=7)  # one update redone (checkpoints every 2)
    assert_same_final_model(reference, save)
    killed_pid = json.load(open(os.path.join(killed_after_7, ".run.lock")))["pid"]  # the lock it could not release
    assert f"took over the lock of env.save_dir {save} from pid {killed_pid}" in output(result)


# file being written, update, what the file holds right after the kill (None: absent, n: intact update n),
# first update the resumed run trains (None: training had ended)
KILLED_WRITES = [
    ("current.ckpt", 10, 8, 9),
    ("models/model_10.ckpt", 10, None, 9),
    ("best.ckpt", 8, 4, 9),  # after update 8's snapshot, before its evaluation's best.ckpt was in place
    ("config.yaml", None, None, 1),
    (FINAL, None, None, None),
]


@pytest.mark.parametrize("name,update,left,first_update", KILLED_WRITES)
def test_kill_while_writing_a_checkpoint_file_then_resume(reference, tmp_path, name, update, left, first_update):
    if update is not None:
        assert {"write": name, "update": update} in events(reference["save"])  # the reference wrote it then
    save = str(tmp_path / "save")
    setting = name if update is None else f"{name}@{update}"
    killed = harness(reference, save, env={"REFNET_KILL_IN_WRITE": setting}, label="killed")
    assert killed.returncode == -9, output(killed)[-3000:]
    left_over = temporaries(save)  # killed inside that write: its temporary holds half the bytes
    assert len(left_over) == 1 and os.path.basename(left_over[0]).startswith(f".{os.path.basename(name)}.tmp-")
    path = os.path.join(save, name)
    if left is None:
        assert not os.path.exists(path)
    else:
        assert checkpoint_files.is_intact(path) and checkpoint_update(path) == left

    resumed = harness(reference, save, "checkpoint.resume=True")
    assert resumed.returncode == 0, output(resumed)[-4000:]
    assert temporaries(save) == []  # the killed run's temporary was removed
    if first_update is None:
        assert losses(save) == {}
    else:
        assert_same_run(reference, save, first_update)
    if name == "best.ckpt":
        assert "the run stopped before evaluating update 8: evaluating it now" in train_log(save)
    assert_same_final_model(reference, save)


def test_damaged_current_ckpt_falls_back_to_the_newest_intact_checkpoint(reference, killed_after_7, tmp_path):
    save = copy_of(killed_after_7, tmp_path)
    truncate(os.path.join(save, "current.ckpt"))
    result = harness(reference, save, "checkpoint.resume=True")
    assert result.returncode == 0, output(result)[-4000:]
    warning = f"CheckpointWarning: {save}/current.ckpt is truncated ("
    assert warning in train_log(save)
    assert f"resuming from {save}/models/model_6.ckpt, the newest intact checkpoint" in train_log(save)
    assert_same_run(reference, save, first_update=7)


def test_damaged_best_ckpt_without_a_replacement_stops_before_training(reference, killed_after_7, tmp_path):
    save = copy_of(killed_after_7, tmp_path)
    truncate(os.path.join(save, "best.ckpt"))  # best update: 4
    os.remove(os.path.join(save, "models", "model_4.ckpt"))
    result = harness(reference, save, "checkpoint.resume=True")
    assert result.returncode != 0
    assert (f"{save}/best.ckpt is truncated" in output(result)
            and f"{save}/models/model_4.ckpt (the checkpoint of the best update 4) is missing" in output(result))
    assert losses(save) == {}  # stopped before the first update, not in the final restore


# --- two runs, one save_dir ----------------------------------------------------

def fingerprint(folder) -> dict:
    prints = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                prints[os.path.relpath(path, folder)] = (os.stat(path).st_mtime_ns, hashlib.sha256(handle.read()).digest())
    return prints


def test_a_second_run_on_a_save_dir_in_use_stops_and_changes_nothing(reference, tmp_path):
    save, control = str(tmp_path / "save"), tmp_path / "control"
    control.mkdir()
    first = harness(reference, save, env={"REFNET_PAUSE_AFTER_UPDATE": f"5:{control}"}, wait=False)
    try:
        deadline = time.monotonic() + 300
        while not (control / "paused").exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()[1][-3000:]
            time.sleep(0.2)
        before = fingerprint(save)
        second = runner.run_mmf("mmf_run", reference["config"], reference["data"], save, check=False)
        assert second.returncode != 0
        message = output(second)
        assert f"env.save_dir {save} is in use by another run: pid {first.pid} on host " in message
        assert "started 20" in message and f"command: {HARNESS} config={reference['config']}" in message
        assert fingerprint(save) == before  # not a byte, not a timestamp changed
        (control / "go").touch()
        stdout, stderr = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stderr[-3000:]
    assert_same_run(reference, save, first_update=1)  # the first run was not disturbed


# --- damaged and mismatched checkpoint files ----------------------------------

DAMAGE = {
    "truncated": (lambda path: truncate(path), "is truncated"),
    "random bytes": (lambda path: open(path, "wb").write(b"?" + random.Random(0).randbytes(4095)),
                     "is not a PyTorch checkpoint"),
    "empty": (lambda path: open(path, "wb").close(), "is empty (0 bytes)"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_checkpoint_file_names_the_file_and_the_way_out(tmp_path, damage):
    path = str(tmp_path / "current.ckpt")
    torch.save({"model": {"w": torch.ones(64, 64)}, "num_updates": 3}, path)
    make_damage, expected = DAMAGE[damage]
    make_damage(path)
    with pytest.raises(CheckpointFileError) as error:
        bare_checkpoint(str(tmp_path))._torch_load(path)  # rc10's loader, as resume, restore and mmf_predict call it
    message = str(error.value)
    assert message.startswith(f"checkpoint file {path} {expected}")
    assert "newest intact checkpoint" in message and "checkpoint.resume_file" in message
    assert "weights_only=False" not in message and "weights_only" not in message


def test_mmf_predict_names_a_checkpoint_that_is_not_one(reference, tmp_path):
    path = str(tmp_path / "model.ckpt")
    DAMAGE["random bytes"][0](path)
    result = runner.run_mmf("mmf_predict", reference["config"], reference["data"], str(tmp_path / "save"),
                            "run_type=test", f"checkpoint.resume_file={path}", "checkpoint.resume_pretrained=False",
                            check=False)
    assert result.returncode != 0
    assert f"CheckpointFileError: checkpoint file {path} is not a PyTorch checkpoint" in output(result)
    assert "weights_only=False" not in output(result)


def test_mmf_predict_refuses_a_checkpoint_of_another_model(reference, tmp_path):
    """The issue's case: vilbert config + a refnet_ms checkpoint + rc10's hint checkpoint.reset.optimizer=True."""
    config = runner.tiny_config(str(tmp_path), "hateful_memes", "vilbert")
    result = runner.run_mmf("mmf_predict", config, reference["data"], str(tmp_path / "save"), "run_type=test",
                            f"checkpoint.resume_file={reference['save']}/best.ckpt",
                            "checkpoint.resume_pretrained=False", "checkpoint.reset.optimizer=True", check=False)
    assert result.returncode != 0
    message = output(result)
    assert f"checkpoint {reference['save']}/best.ckpt does not fit model 'vilbert' of this config" in message
    assert "weights in it are unknown to the model (model.fusion" in message
    assert "It was saved by a run of model 'refnet_ms'" in message and "checkpoint.allow_partial_load=True" in message
    assert not list((tmp_path / "save").rglob("*.csv"))


def test_partial_load_by_name_loads_the_matching_weights_and_warns(tmp_path):
    source = make_trainer(tmp_path / "refnet_ms")
    source.checkpoint.save(0)
    saved = str(tmp_path / "refnet_ms" / "save" / "current.ckpt")
    with pytest.raises(ValueError) as refused:
        make_trainer(tmp_path / "refused", model="vilbert", checkpoint={"resume_file": saved})
    counts = refused.value.args[0]
    assert "missing from it" in counts and "unknown to the model" in counts
    with pytest.warns(CheckpointWarning, match="checkpoint.allow_partial_load=True: checkpoint .* does not fit"):
        partial = make_trainer(tmp_path / "partial", model="vilbert", checkpoint={
            "resume_file": saved, "allow_partial_load": True, "reset": {"optimizer": True}})
    mine, theirs = partial.model.state_dict(), source.model.state_dict()
    shared = [key for key in mine if key in theirs]
    assert len(shared) > 20 and all(torch.equal(mine[key], theirs[key]) for key in shared)


def test_checkpoints_of_the_older_refiner_layout_still_load_strictly(tmp_path):
    """Per-modality decoder keys (before the batched refiner) are upgraded by the model, so no key mismatch."""
    source = make_trainer(tmp_path / "source")
    state = source.model.state_dict()
    decoders = source.model.model.refiner.decoders
    old = {key: value for key, value in state.items() if ".refiner.decoders." not in key}
    for index, modality in enumerate(decoders.modalities):
        for number, layer in (("0", "hidden"), ("3", "output")):
            prefix = f"model.refiner.decoders.{modality}.{number}"
            old[f"{prefix}.weight"] = state[f"model.refiner.decoders.{layer}.weight"][index].t()
            old[f"{prefix}.bias"] = state[f"model.refiner.decoders.{layer}.bias"][index]
    path = str(tmp_path / "old_layout.pth")
    torch.save(old, path)
    loaded = make_trainer(tmp_path / "loaded", seed=5, checkpoint={"resume_file": path})
    for key, value in state.items():
        assert torch.equal(loaded.model.state_dict()[key], value), key


def test_pretrained_state_mapping_still_copies_chosen_prefixes(tmp_path):
    """pretrain (refnet) -> fine-tune (refnet_ms): the mapped parts are copied, the classifier stays new."""
    source = make_trainer(tmp_path / "pretrain", model="refnet")
    path = str(tmp_path / "pretrained.pth")
    torch.save(source.model.state_dict(), path)
    tuned = make_trainer(tmp_path / "tune", seed=7, checkpoint={"resume_file": path, "resume_pretrained": True})
    mine, theirs = tuned.model.state_dict(), source.model.state_dict()
    assert torch.equal(mine["model.fusion.weight"], theirs["model.fusion.weight"])
    assert torch.equal(mine["model.bert.embeddings.word_embeddings.weight"],
                       theirs["model.bert.embeddings.word_embeddings.weight"])
    classifier = [key for key in mine if key.startswith("model.classifier")]
    assert classifier and not all(torch.equal(mine[key], theirs[key]) for key in classifier)


# --- which checkpoint a resume loads -------------------------------------------

def checkpoint_folder(tmp_path, files=None, best_update=4):
    """A save_dir with small checkpoints: {relative path: update or 'truncated'}."""
    checkpoint = bare_checkpoint(str(tmp_path), best_update=best_update)
    for name, update in (files or {}).items():
        write_checkpoint(str(tmp_path / name), update)
    return checkpoint


def test_resume_uses_current_ckpt_or_the_newest_intact_one(tmp_path):
    from mmf_refnet.compat.resume_source import resume_candidate

    assert resume_candidate(checkpoint_folder(tmp_path / "empty")) is None
    intact = checkpoint_folder(tmp_path / "intact", {"current.ckpt": 6, "models/model_6.ckpt": 6})
    assert resume_candidate(intact) == str(tmp_path / "intact" / "current.ckpt")
    folder = checkpoint_folder(tmp_path / "damaged", {"current.ckpt": "truncated", "models/model_4.ckpt": 4,
                                                      "models/model_6.ckpt": "truncated", "best.ckpt": 2})
    with pytest.warns(CheckpointWarning) as warned:
        assert resume_candidate(folder) == str(tmp_path / "damaged" / "models" / "model_4.ckpt")
    assert str(warned[0].message).startswith(f"{tmp_path}/damaged/current.ckpt is truncated")
    lost = checkpoint_folder(tmp_path / "lost", {"current.ckpt": "truncated", "models/model_4.ckpt": "truncated"})
    with pytest.raises(CheckpointFileError, match=f"cannot resume the run in {tmp_path}/lost: .*current.ckpt is "
                                                  "truncated.*and no other checkpoint there is intact"):
        resume_candidate(lost)


def test_resume_file_given_with_resume_is_named_when_the_run_continues(tmp_path):
    trainer = make_trainer(tmp_path)
    train_step(trainer, inprocess.batch(size=8))
    trainer.checkpoint.save(trainer.num_updates, trainer.current_iteration)
    start = str(tmp_path / "start.pth")
    torch.save(trainer.model.state_dict(), start)
    with pytest.warns(CheckpointWarning, match=f"holds this run's checkpoint {tmp_path}/save/current.ckpt: continuing "
                                               f"that run; {start} .* drop checkpoint.resume=True"):
        resumed = make_trainer(tmp_path, checkpoint={"resume": True, "resume_file": start})
    assert resumed.num_updates == 1


def test_final_restore_falls_back_from_a_damaged_best_ckpt(tmp_path):
    from mmf_refnet.compat.best_restore import best_source

    good = checkpoint_folder(tmp_path / "good", {"best.ckpt": 4, "models/model_4.ckpt": 4})
    assert best_source(good) == str(tmp_path / "good" / "best.ckpt")
    for case, best in (("truncated", "truncated"), ("stale", 2)):
        folder = checkpoint_folder(tmp_path / case, {"best.ckpt": best, "models/model_4.ckpt": 4})
        with pytest.warns(CheckpointWarning, match="restoring the best model from .*models/model_4.ckpt"):
            assert best_source(folder) == str(tmp_path / case / "models" / "model_4.ckpt")
    lost = checkpoint_folder(tmp_path / "lost", {"best.ckpt": "truncated"})
    with pytest.warns(CheckpointWarning, match="The final model is training's last one, not the best"):
        assert best_source(lost) is None


def test_a_damaged_best_ckpt_is_rebuilt_when_the_run_resumes(tmp_path):
    from mmf_refnet.compat.best_restore import check_best_on_resume

    folder = checkpoint_folder(tmp_path, {"best.ckpt": "truncated", "models/model_4.ckpt": 4})
    with pytest.warns(CheckpointWarning, match="best.ckpt is truncated .*; rebuilt it from .*model_4.ckpt"):
        check_best_on_resume(folder)
    with open(tmp_path / "best.ckpt", "rb") as rebuilt, open(tmp_path / "models" / "model_4.ckpt", "rb") as source:
        assert rebuilt.read() == source.read()


# --- the pieces of the training state ----------------------------------------

def test_resumed_trainer_continues_the_learning_rate_schedule(tmp_path):
    """rc10 built the scheduler after loading: the first update after a resume used lr·λ(0) (0 under warmup)."""
    schedule = {"type": "warmup_linear", "params": {"num_warmup_steps": 4, "num_training_steps": 12}}
    trainer = make_trainer(tmp_path, scheduler=schedule)
    for seed in range(3):
        train_step(trainer, inprocess.batch(size=8, seed=seed))
    expected = [group["lr"] for group in trainer.optimizer.param_groups]
    assert expected[0] == pytest.approx(1e-3 * 2 / 4)  # after update 3 rc10 steps the schedule to λ(2)
    trainer.checkpoint.save(trainer.num_updates, trainer.current_iteration)
    continued, reset = (make_trainer(tmp_path, seed=99, scheduler=schedule, checkpoint={"resume": True, **extra})
                        for extra in ({}, {"reset": {"optimizer": True}}))  # with the saved scheduler state; without
    for resumed in (continued, reset):
        assert [group["lr"] for group in resumed.optimizer.param_groups] == pytest.approx(expected, abs=1e-12)
    expected_loss, _ = train_step(trainer, inprocess.batch(size=8, seed=3))
    loss, _ = train_step(continued, inprocess.batch(size=8, seed=3))
    assert loss == pytest.approx(expected_loss, abs=1e-6)
    assert continued.optimizer.param_groups[0]["lr"] == trainer.optimizer.param_groups[0]["lr"] == pytest.approx(
        1e-3 * 3 / 4)


def test_epoch_order_skips_consumed_batches_and_does_not_depend_on_the_process_count():
    dataset = list(range(37))
    batches = EpochBatches(default_batch_sampler(dataset, 6, seed=3, num_replicas=1, rank=0))
    batches.set_epoch(2)
    epoch = list(batches)
    assert sorted(i for batch in epoch for i in batch) == dataset
    batches.set_epoch(2)
    batches.skip_next(4)
    assert list(batches) == epoch[4:]
    assert list(batches) == epoch  # the skip applies to one iteration only
    batches.set_epoch(3)
    assert list(batches) != epoch
    permutation = [i for batch in epoch for i in batch]
    for world in (2, 3):
        ranks = [EpochBatches(default_batch_sampler(dataset, 6 // world, seed=3, num_replicas=world, rank=rank))
                 for rank in range(world)]
        for rank in ranks:
            rank.set_epoch(2)
        first_two = [i for rank in ranks for batch in list(rank)[:2] for i in batch]
        assert sorted(first_two) == sorted(permutation[:12])  # any process count: the same samples consumed


def test_only_rank_zero_locks_the_save_dir(tmp_path, monkeypatch):
    from mmf_refnet.compat.save_dir_lock import lock_save_dir, run_rank

    config = OmegaConf.create({"env": {"save_dir": str(tmp_path / "save")}, "distributed": {"rank": None}})
    monkeypatch.delenv("RANK", raising=False)
    assert run_rank(config) == 0
    monkeypatch.setenv("RANK", "1")
    assert run_rank(config) == 1 and lock_save_dir(config) is None
    assert not (tmp_path / "save").exists()
    config.distributed.rank = 0
    lock = lock_save_dir(config)
    try:
        assert json.load(open(tmp_path / "save" / ".run.lock"))["pid"] == os.getpid()
    finally:
        lock.release()
    assert open(tmp_path / "save" / ".run.lock").read() == ""  # released: nothing stale left
