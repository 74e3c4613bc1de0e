"""Two nodes simulated on one machine: two ``torchrun`` agents, one process each, meeting through
c10d rendezvous on localhost, as the README's multi-node command starts them on two hosts.

A 2-node run trains with checkpoints; the same run with node 1 killed (SIGKILL after update 7,
tests/resume_harness.py) and both nodes restarted with ``checkpoint.resume=True`` gives every
later update the uninterrupted run's loss on both ranks, and the same final model; ``mmf_predict``
on two nodes writes every test id once. Only global rank 0 writes checkpoints and holds the
save_dir lock (node 1's process is rank 1 with LOCAL_RANK 0)."""

import csv
import glob
import json
import os
import subprocess
import time

import pytest
import torch

from tests import replicas, runner

HARNESS = os.path.join(runner.REPO, "tests", "resume_harness.py")
MAX_UPDATES = 12
OVERRIDES = {"training": {"max_updates": MAX_UPDATES, "batch_size": 8, "log_interval": 1, "checkpoint_interval": 2,
                          "evaluation_interval": 4, "early_stop": {"criteria": "total_loss", "minimize": True}}}


def two_nodes(program, args, save, env_per_node=({}, {}), timeout=600):
    """``torchrun`` on 2 "nodes" (c10d rendezvous on localhost); (returncode, output) per node."""
    port, agents = runner.free_port(), []
    for node, extra in enumerate(env_per_node):
        command = [runner.console_script("torchrun"), "--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d",
                   f"--rdzv_endpoint=localhost:{port}", f"--rdzv_id={os.path.basename(save)}", program, *args]
        env = runner.offline_env({"REFNET_EVENTS": f"{save}.node{node}.jsonl", **extra})
        agents.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env))
    results = []
    for agent in agents:
        try:
            output, _ = agent.communicate(timeout=timeout)
        finally:
            agent.kill()
        results.append((agent.returncode, output))
    return results


def losses(save, node) -> dict:
    path = f"{save}.node{node}.jsonl"
    events = [json.loads(line) for line in open(path)] if os.path.exists(path) else []
    return {event["update"]: event["loss"] for event in events if "loss" in event}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    work = tmp_path_factory.mktemp("multinode")
    data = str(work / "data")
    replicas.hateful_memes(data, sizes=(64, 15, 15), rule="image")
    config = runner.tiny_config(str(work), "hateful_memes", "refnet_ms", OVERRIDES)
    args = lambda save, *opts: [f"config={config}", f"env.data_dir={data}", f"env.save_dir={save}", *opts]  # noqa: E731
    saves = {name: str(work / name) for name in ("reference", "resumed", "predicted")}
    outputs = {"reference": two_nodes(HARNESS, args(saves["reference"]), saves["reference"])}
    outputs["killed"] = two_nodes(HARNESS, args(saves["resumed"]), saves["resumed"] + ".killed",
                                  env_per_node=({}, {"REFNET_KILL_AFTER_UPDATE": "7"}))
    outputs["resumed"] = two_nodes(HARNESS, args(saves["resumed"], "checkpoint.resume=True"), saves["resumed"])
    outputs["predicted"] = two_nodes(runner.console_script("mmf_predict"), args(
        saves["predicted"], "run_type=test", f"checkpoint.resume_file={saves['reference']}/best.ckpt",
        "checkpoint.resume_pretrained=False"), saves["predicted"])
    return {"work": work, "data": data, "saves": saves, "outputs": outputs}


def test_two_nodes_train_and_only_rank_zero_writes(runs):
    (code0, out0), (code1, out1) = runs["outputs"]["reference"]
    assert code0 == code1 == 0, out0[-3000:] + out1[-3000:]
    save = runs["saves"]["reference"]
    assert sorted(losses(save, 0)) == sorted(losses(save, 1)) == list(range(1, MAX_UPDATES + 1))
    with open(os.path.join(save, "train.log")) as handle:
        log = handle.read()
    assert log.count("Finished run") == 1 and "DistributedDataParallel" in log
    with open(os.path.join(save, ".run.lock")) as handle:
        assert handle.read() == ""  # rank 0 held it and emptied it on its clean exit; rank 1 never wrote it
    written = {os.path.basename(path) for path in glob.glob(os.path.join(save, "models", "*.ckpt"))}
    assert written == {f"model_{update}.ckpt" for update in range(2, MAX_UPDATES + 1, 2)}


def test_a_killed_node_resumes_as_the_same_run(runs):
    killed = runs["outputs"]["killed"]
    assert killed[1][0] != 0 and killed[0][0] != 0  # node 1's worker died; node 0's lost its peer
    (code0, out0), (code1, out1) = runs["outputs"]["resumed"]
    assert code0 == code1 == 0, out0[-3000:] + out1[-3000:]
    reference, resumed = runs["saves"]["reference"], runs["saves"]["resumed"]
    for node in (0, 1):
        expected, got = losses(reference, node), losses(resumed, node)
        assert sorted(got) == list(range(7, MAX_UPDATES + 1)), sorted(got)  # from update 6's checkpoint
        for update, loss in got.items():
            assert abs(loss - expected[update]) <= 1e-6, (node, update, loss, expected[update])
    final = "refnet_ms_final.pth"
    expected = torch.load(os.path.join(reference, final), map_location="cpu")
    got = torch.load(os.path.join(resumed, final), map_location="cpu")
    assert set(got) == set(expected) and all(torch.allclose(got[key], expected[key], atol=1e-6, rtol=0) for key in got)


def test_two_nodes_predict_every_test_id_once(runs):
    (code0, out0), (code1, out1) = runs["outputs"]["predicted"]
    assert code0 == code1 == 0, out0[-3000:] + out1[-3000:]
    (path,) = glob.glob(os.path.join(runs["saves"]["predicted"], "**", "*.csv"), recursive=True)
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    with open(os.path.join(runs["data"], "datasets/hateful_memes/defaults/annotations/test_unseen.jsonl")) as handle:
        test_ids = [str(json.loads(line)["id"]) for line in handle]
    assert [row["id"] for row in rows] == test_ids


HOLDER = """
import socket, sys, time
socket.gethostname = lambda: sys.argv[2]  # the host this process runs on
from mmf_refnet.run_lock import SaveDirLock
lock = SaveDirLock(sys.argv[1])
try:
    lock.acquire()
    print("HOLDING", flush=True)
except Exception as error:
    print("REFUSED", error, flush=True)
    sys.exit(3)
time.sleep(float(sys.argv[3]))
"""


def test_a_live_lock_on_a_shared_save_dir_is_never_taken_over_from_another_host(tmp_path):
    """Two hosts on one shared filesystem (here: two processes with other host names): the second is
    refused and leaves the holder's lock file as it was; a holder killed with SIGKILL leaves a stale
    lock that the next run takes over, naming it."""
    from tests import forkserver

    save = str(tmp_path / "save")
    env = runner.offline_env({"PYTHONPATH": runner.REPO})
    holder = forkserver.start(["-c", HOLDER, save, "node-a", "120"], env)
    lock_file = os.path.join(save, ".run.lock")
    deadline = time.monotonic() + 60
    while not (os.path.exists(lock_file) and os.path.getsize(lock_file)):
        assert holder.poll() is None and time.monotonic() < deadline, holder.stderr
        time.sleep(0.1)
    before = open(lock_file).read()
    contender = forkserver.run(["-c", HOLDER, save, "node-b", "0"], env)
    assert contender.returncode == 3, contender.stdout + contender.stderr
    assert f"is in use by another run: pid {holder.pid} on host node-a" in contender.stdout
    assert open(lock_file).read() == before  # neither taken over nor emptied
    holder.kill()
    assert holder.wait(60) == -9
    taker = forkserver.run(["-c", HOLDER, save, "node-b", "0"], env)
    assert taker.returncode == 0 and "HOLDING" in taker.stdout
    assert f"took over the lock of env.save_dir {save} from pid {holder.pid} on host node-a" in taker.stderr
