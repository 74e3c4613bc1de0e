"""Every command line of the README's code blocks, run as written.

``COMMANDS`` maps each command line (continuation lines joined, spaces collapsed) to how it is
run; a README command line without an entry, or an entry whose line left the README, fails
``test_every_readme_command_line_has_an_entry``: a new command in the README needs a row here.

Each command runs, with its exact text, through ``bash -c`` in a scratch copy of the repository
(its ``.venv`` linked) where earlier commands' outputs stay, as in a user's session: the demo's
checkpoint feeds the analysis commands. Data is the tests' replicas in MMF's layout under
``MMF_DATA_DIR``. How far a command runs:

- ``complete``: to its end (the demo, predictions, the analysis tools); its outputs are checked;
- ``first_forward``: the paper-schedule trainings (22k updates of ViLBERT-base) run until their
  trainer hands the first batch to the model: the command line's config, its includes, the model
  and dataset names, the data, the model and optimizer build and the checkpoint loading are then
  all done; a ``sitecustomize`` on ``PYTHONPATH`` stops the process there (exit 97), saving the
  model's weights where ``save_model`` says so that later commands find the file the run would
  have written (a pretraining's ``refnet_final.pth``, a ``best.ckpt``);
- ``ci``: ``bash scripts/test.sh`` is the command that runs this test; ``.ci/run`` must run it;
- ``elsewhere``: another test runs the line as written (the own-data commands: tests/test_own_data.py
  reads them from the README); the check asserts that it does;
- ``fails_named``: the command runs to a clear, expected error (``mmf_convert_hm`` on a replica zip,
  whose SHA-256 is not the challenge's: the checksum error names the hash and ``--bypass_checksum``);
- ``nodes``: a command for every node of a multi-node run, started twice at once (2 "nodes" on this
  machine, one process each), then as ``first_forward``.

The SLURM line runs with stand-ins for ``sbatch``, ``srun`` and ``scontrol`` (tests/slurm_stub/: the
batch script runs at once, ``srun`` starts its command once per node) on ``PATH``.

Offline, ``bert-base-uncased`` (the real-data configs' ``bert_model_name``) comes from a Hugging
Face cache in the hub layout made here (BERT-base's shapes, zero weights: the commands stop at the
first batch), and ``vilbert.pretrained.cc.small`` from a zoo folder of ViLBERT-base's shapes under
``<MMF_DATA_DIR>/models``, marked downloaded as rc10's zoo marks it.
"""

import csv
import glob
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, Optional

import pytest
from omegaconf import OmegaConf

from tests import replicas, runner

README = os.path.join(runner.REPO, "README.md")
STOPPED = 97
STOP_HOOK = f'''
import os

import torch


def _stop_at_the_first_forward(module, args):
    from mmf.models.base_model import BaseModel

    if isinstance(module, BaseModel):
        target = os.environ.get("REFNET_README_SAVE_MODEL")
        if target and int(os.environ.get("LOCAL_RANK", "0")) == 0:
            os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
            torch.save(module.state_dict(), target)
        os.write(2, b"README check: the first batch reached the model\\n")  # MMF's logger may own sys.stdout
        os._exit({STOPPED})


torch.nn.modules.module.register_module_forward_pre_hook(_stop_at_the_first_forward)
'''


@dataclass
class Entry:
    how: str  # complete | first_forward | ci | elsewhere | fails_named | nodes
    check: Optional[Callable] = None  # (workspace, output) -> None
    save_model: Optional[str] = None  # first_forward: where the stopped run leaves its weights
    timeout: int = 900
    env: Optional[Callable] = None  # workspace -> extra environment variables for this command


def readme_command_lines(text: str):
    """(normalised line, exact text) of every command in the README's bash code blocks."""
    commands = []
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S):
        pending = []
        for line in block.splitlines():
            if not line.strip() and not pending:
                continue
            pending.append(line)
            if not line.rstrip().endswith("\\"):
                exact = "\n".join(pending)
                commands.append((" ".join(exact.replace("\\\n", " ").split()), exact))
                pending = []
    return commands


# --- checks -------------------------------------------------------------------------------------

def _demo_ran(workspace, output):
    assert "refnet demo (refnet_ms) finished" in output, output[-3000:]
    save = os.path.join(workspace, "save", "demo", "refnet_ms")
    assert os.path.isfile(os.path.join(save, "best.ckpt"))
    rows = _csv_rows(glob.glob(os.path.join(save, "predictions", "*.csv")))
    assert rows and list(rows[0]) == ["id", "proba", "label"]


def _csv_rows(paths):
    assert len(paths) == 1, paths
    with open(paths[0]) as handle:
        return list(csv.DictReader(handle))


def _ci_runs_it(workspace, output):
    with open(os.path.join(runner.REPO, ".ci", "run")) as handle:
        assert re.search(r"^exec bash scripts/test\.sh$", handle.read(), flags=re.M)


def _stopped_at_the_first_forward(processes: int = 1):
    def check(workspace, output):
        assert output.count("README check: the first batch reached the model") == processes, output[-4000:]
    return check


def _loaded_the_pretraining(workspace, output):
    _stopped_at_the_first_forward()(workspace, output)
    with open(max(glob.glob(os.path.join(workspace, "save", "logs", "train_*.log")), key=os.path.getmtime)) as handle:
        log = handle.read()  # MMF logs there, not to the terminal
    copied = re.findall(r"Copying (model\.\w+)\.", log)
    assert "Pretrained model loaded" in log and {"model.bert", "model.fusion", "model.refiner"} <= set(copied)


def _mmimdb_few_labels_for_20000_updates(workspace, output):
    _stopped_at_the_first_forward()(workspace, output)
    config = OmegaConf.load(os.path.join(workspace, "save", "config.yaml"))
    assert config.training.max_updates == 20000 and config.dataset_config.mmimdb.label_fraction == 0.05


def _wrote_the_leaderboard_csv(workspace, output):
    rows = _csv_rows(glob.glob(os.path.join(workspace, "save", "**", "hateful_memes_*test*.csv"), recursive=True))
    with open(os.path.join(workspace, "data", "datasets", "hateful_memes", "defaults", "annotations",
                           "test_unseen.jsonl")) as handle:
        test_ids = sorted(json.loads(line)["id"] for line in handle)
    assert list(rows[0]) == ["id", "proba", "label"] and sorted(int(row["id"]) for row in rows) == test_ids


def _graph_sweep(workspace, output):
    with open(os.path.join(workspace, "save", "graph", "graph_synthetic_cosine_downk.json")) as handle:
        results = json.load(handle)["results"]
    assert [(r["m"], r["noise"]) for r in results] == [(m, noise) for m in (4, 8) for noise in (0.0, 0.01, 0.1)]
    assert results[0]["gw_err"] < 1e-3


def _graph_of_checkpoint(workspace, output):
    assert "full R²" in output
    assert os.path.isfile(os.path.join(workspace, "save", "graph", "graph_checkpoint.json"))


def _tsne_written(workspace, output):
    assert os.path.getsize(os.path.join(workspace, "save", "tsne.png")) > 10_000


def _run_by_test_own_data(workspace, line):
    from tests import test_own_data

    assert line in [" ".join(command.split()) for command in test_own_data.readme_commands()]


def _loaded_the_zoo_backbone(workspace, output):
    _stopped_at_the_first_forward()(workspace, output)
    with open(max(glob.glob(os.path.join(workspace, "save", "logs", "train_*.log")), key=os.path.getmtime)) as handle:
        log = handle.read()
    assert re.search(r"model\.bert <- model\.bert: (\d+) of \1 tensors", log), log[-3000:]


HM_PASSWORD = "readme-test-password"


def _converter_checked_the_zip(workspace, output):
    assert "--bypass_checksum=1" in output and "c1363aae9649c79a" in output, output[-3000:]
    assert os.path.isfile(os.path.join(workspace, "hateful_memes.zip"))  # checked before anything moved
    assert not glob.glob(os.path.join(workspace, "convert_data", "**", "*.jsonl"), recursive=True)  # nothing converted


HM = "projects/refnet/configs/hateful_memes"
COMMANDS = {
    "bash scripts/setup.sh && .venv/bin/refnet demo": Entry("complete", _demo_ran, timeout=2400),
    "bash scripts/test.sh": Entry("ci", _ci_runs_it),
    f"mmf_run config={HM}/refnet_ms.yaml # also vilbert.yaml, refnet.yaml":
        Entry("first_forward", _stopped_at_the_first_forward(), save_model="save/best.ckpt"),
    "mmf_run config=projects/refnet/configs/mmimdb/refnet_ms.yaml": Entry("first_forward", _stopped_at_the_first_forward()),
    "mmf_run config=projects/refnet/configs/visual_entailment/refnet_ms.yaml":
        Entry("first_forward", _stopped_at_the_first_forward()),
    f"mmf_predict config={HM}/refnet_ms.yaml run_type=test checkpoint.resume_file=save/best.ckpt "
    "checkpoint.resume_pretrained=False": Entry("complete", _wrote_the_leaderboard_csv),
    f"torchrun --nproc_per_node=2 $(which mmf_run) config={HM}/refnet_ms.yaml distributed.backend=gloo":
        Entry("first_forward", _stopped_at_the_first_forward(processes=2)),
    f"torchrun --nnodes=$NODE_COUNT --nproc_per_node=$GPUS_PER_NODE --rdzv_backend=c10d --rdzv_endpoint=$MASTER_HOST:29400 "
    f"--rdzv_id=refnet_hm $(which mmf_run) config={HM}/refnet_ms.yaml":
        Entry("nodes", _stopped_at_the_first_forward(processes=2),
              env=lambda workspace: {"NODE_COUNT": "2", "GPUS_PER_NODE": "1", "MASTER_HOST": "localhost"}),
    f"sbatch --nodes=2 --gpus-per-node=8 scripts/slurm_train.sh config={HM}/refnet_ms.yaml":
        Entry("first_forward", _stopped_at_the_first_forward(processes=2),
              env=lambda workspace: {"GPUS_PER_NODE": "1", "PATH": os.pathsep.join(
                  [os.path.join(runner.REPO, "tests", "slurm_stub"), os.path.dirname(sys.executable), os.environ["PATH"]])}),
    f"mmf_run config={HM}/pretrain.yaml env.save_dir=save/pretrain":
        Entry("first_forward", _stopped_at_the_first_forward(), save_model="save/pretrain/refnet_final.pth"),
    f"mmf_run config={HM}/refnet_ms.yaml dataset_config.hateful_memes.label_fraction=0.05 "
    "checkpoint.resume_pretrained=True checkpoint.resume_file=save/pretrain/refnet_final.pth":
        Entry("first_forward", _loaded_the_pretraining),
    "mmf_run config=projects/refnet/configs/mmimdb/refnet_ms.yaml dataset_config.mmimdb.label_fraction=0.05 "
    "training.max_updates=20000": Entry("first_forward", _mmimdb_few_labels_for_20000_updates),
    f"mmf_run config={HM}/visual_bert_refnet.yaml": Entry("first_forward", _stopped_at_the_first_forward()),
    "mmf_run config=projects/refnet/configs/mmimdb/mmbt_refnet.yaml": Entry("first_forward", _stopped_at_the_first_forward()),
    "refnet analyze graph --synthetic --m 4 8 --noise 0 0.01 0.1 --out save/graph # Theorem 4.1":
        Entry("complete", _graph_sweep),
    "refnet analyze graph --checkpoint save/demo/refnet_ms/best.ckpt --opt env.data_dir=save/demo/data "
    "--out save/graph": Entry("complete", _graph_of_checkpoint),
    "refnet analyze tsne --checkpoint save/demo/refnet_ms/best.ckpt --out save/tsne.png":
        Entry("complete", _tsne_written),
    'mmf_convert_hm --zip_file=hateful_memes.zip --password="$HM_PASSWORD"':
        Entry("fails_named", _converter_checked_the_zip,
              env=lambda workspace: {"HM_PASSWORD": HM_PASSWORD,
                                     "MMF_DATA_DIR": os.path.join(workspace, "convert_data")}),
    "MMF_ZOO_MIRROR=http://localhost:8765/mmf/data/ mmf_run config=projects/refnet/configs/mmimdb/refnet_ms.yaml":
        Entry("first_forward", _stopped_at_the_first_forward()),
    "mmf_run config=projects/refnet/configs/mmimdb/refnet_ms.yaml env.zoo_mirror=http://localhost:8765/mmf/data/":
        Entry("first_forward", _stopped_at_the_first_forward()),
    "mmf_run config=projects/refnet/configs/mmimdb/refnet_ms.yaml checkpoint.resume_zoo=vilbert.pretrained.cc.small "
    "checkpoint.resume_pretrained=True": Entry("first_forward", _loaded_the_zoo_backbone),
    "refnet extract-features --images my_data/img --out my_data/features": Entry("elsewhere"),
    "refnet own-data-config my_data/data.jsonl --backbone minilm --out my_data/refnet_ms.yaml": Entry("elsewhere"),
    "mmf_run config=my_data/refnet_ms.yaml env.save_dir=save/my_data": Entry("elsewhere"),
    "mmf_predict config=my_data/refnet_ms.yaml run_type=test env.save_dir=save/my_data "
    "env.report_dir=save/my_data/predictions checkpoint.resume_file=save/my_data/best.ckpt "
    "checkpoint.resume_pretrained=False": Entry("elsewhere"),
}

with open(README) as _handle:
    README_COMMANDS = readme_command_lines(_handle.read())


def test_every_readme_command_line_has_an_entry():
    lines = [line for line, _ in README_COMMANDS]
    missing = [line for line in lines if line not in COMMANDS]
    assert not missing, f"README command lines without an entry in tests/test_readme.py COMMANDS: {missing}"
    gone = [line for line in COMMANDS if line not in lines]
    assert not gone, f"COMMANDS entries whose line is no longer in the README: {gone}"


# --- the workspace: a copy of the repository, replicas as MMF's data -----------------------------

def _copy_repository(target: str) -> None:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=runner.REPO, capture_output=True, check=True).stdout.decode().split("\0")
    for relative in filter(None, listed):
        source = os.path.join(runner.REPO, relative)
        if os.path.isfile(source):
            os.makedirs(os.path.dirname(os.path.join(target, relative)), exist_ok=True)
            shutil.copy2(source, os.path.join(target, relative))
    os.symlink(os.path.join(runner.REPO, ".venv"), os.path.join(target, ".venv"))


def _detectron_sized(lmdb_path: str, regions: int = 100, dim: int = 2048) -> None:
    """An MMF feature lmdb's regions zero-padded to Detectron's ``regions`` × ``dim`` (boxes repeated):
    the replicas' are tiny, and the paper configs' models read 100 × 2048 (checked when read)."""
    import pickle

    import lmdb
    import numpy as np

    env = lmdb.open(lmdb_path, map_size=1 << 30)
    with env.begin(write=True) as txn:
        for key in pickle.loads(txn.get(b"keys")):
            item = pickle.loads(txn.get(key))
            features, boxes = item["features"], item["bbox"]
            item["features"] = np.pad(features, ((0, regions - len(features)), (0, dim - features.shape[1])))
            item["bbox"] = np.concatenate([boxes, np.repeat(boxes[-1:], regions - len(boxes), axis=0)])
            item["num_boxes"] = regions
            txn.put(key, pickle.dumps(item))
    env.close()


def _zeros_fp16(module_on_meta) -> dict:
    """A module's state dict as fp16 zeros (shapes are all the commands here need: they stop at the first batch)."""
    import torch

    return {key: torch.zeros(value.shape, dtype=torch.float16 if value.is_floating_point() else value.dtype)
            for key, value in module_on_meta.state_dict().items()}


def _bert_base_in_hub_cache(cache_dir: str) -> None:
    """``bert-base-uncased`` in the hub layout: BERT-base's config and shapes, the packaged tokenizer files."""
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig, BertModel

    from mmf_refnet import assets
    from tests import hf_cache

    source = os.path.join(cache_dir, "_bert_base")
    os.makedirs(source)
    config = BertConfig()  # bert-base-uncased's sizes (vocabulary 30522, 12 x 768)
    with torch.device("meta"):
        model = BertModel(config, add_pooling_layer=True)
    save_file(_zeros_fp16(model), os.path.join(source, "model.safetensors"), metadata={"format": "pt"})
    config.to_json_file(os.path.join(source, "config.json"))
    tokenizer_files = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
    for name in tokenizer_files:
        shutil.copy(os.path.join(assets.asset_path("minilm"), name), os.path.join(source, name))
    hf_cache.populate(cache_dir, "bert-base-uncased", source, files=("config.json", "model.safetensors") + tokenizer_files)
    shutil.rmtree(source)


def _vilbert_base_in_model_zoo(data_dir: str, key: str = "vilbert.pretrained.cc.small") -> None:
    """MMF's zoo checkpoint ``key`` as rc10 leaves it after the download: ``<data_dir>/models/<key>/``
    with ``config.yaml``, ``model.pth`` (ViLBERT-base pretraining model: ``model.bert.*``, ``model.cls.*``)
    and the ``.built.json`` marker of the zoo entry's version."""
    import torch
    import yaml
    from mmf.models.vilbert import BertPreTrainingHeads, ViLBERTBase
    from mmf.utils.configuration import load_yaml
    from mmf.utils.download import mark_done
    from omegaconf import OmegaConf
    from transformers.models.bert.configuration_bert import BertConfig

    model_yaml = os.path.join(runner.REPO, "mmf_refnet", "configs", "models", "refnet.yaml")
    vilbert_config = OmegaConf.to_container(OmegaConf.load(model_yaml).model_config.refnet)
    vilbert_config.update(training_head_type="pretraining", fusion_method="mul", v_target_size=1601)
    settings = BertConfig.from_dict(vilbert_config)
    with torch.device("meta"):
        pretraining = torch.nn.Module()
        pretraining.model = torch.nn.Module()
        pretraining.model.bert = ViLBERTBase(settings)
        pretraining.model.cls = BertPreTrainingHeads(settings)
    folder = os.path.join(data_dir, "models", key)
    os.makedirs(folder)
    torch.save(_zeros_fp16(pretraining), os.path.join(folder, "model.pth"))
    with open(os.path.join(folder, "config.yaml"), "w") as handle:
        yaml.safe_dump({"model": "vilbert", "model_config": {"vilbert": vilbert_config}}, handle)
    zoo = load_yaml(os.path.join(runner.REPO, "mmf_refnet", "mmf_root", "configs", "zoo", "models.yaml"))
    mark_done(folder, OmegaConf.select(zoo, key).version)


def _on_two_nodes(exact: str, workspace: str, entry: Entry) -> subprocess.CompletedProcess:
    """``exact`` on two "nodes" at once (the same line, as on every node of a run); their outputs together."""
    nodes = [subprocess.Popen(["bash", "-c", exact], cwd=workspace, env=_environment(workspace, entry),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = []
    for node in nodes:
        try:
            outputs.append(node.communicate(timeout=entry.timeout)[0])
        finally:
            node.kill()
    failed = [node.returncode for node in nodes if node.returncode != 0]
    return subprocess.CompletedProcess(exact, failed[0] if failed else 0, "".join(outputs), "")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("readme"))
    _copy_repository(root)
    data = os.path.join(root, "data")
    hateful_memes = replicas.hateful_memes(data)
    _detectron_sized(os.path.join(hateful_memes, "features", "detectron.lmdb"))
    mmimdb = replicas.mmimdb(data, classes=replicas.MMIMDB_GENRES)  # num_labels 24, as the project configs say
    _detectron_sized(os.path.join(mmimdb, "features", "features.lmdb"))
    replicas.visual_entailment(data)
    _detectron_sized(os.path.join(data, "datasets", "flickr30k", "defaults", "features", "detectron.lmdb"))
    _bert_base_in_hub_cache(os.path.join(root, "hf", "hub"))
    _vilbert_base_in_model_zoo(data)
    replicas.hateful_memes_zip(os.path.join(root, "hateful_memes.zip"), HM_PASSWORD, sizes=(2, 1, 1))
    hook = os.path.join(root, "stop_hook")
    os.makedirs(hook)
    with open(os.path.join(hook, "sitecustomize.py"), "w") as handle:
        handle.write(STOP_HOOK)
    return root


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _environment(workspace: str, entry: Entry) -> dict:
    venv_bin = os.path.dirname(sys.executable)
    env = runner.offline_env({"MMF_DATA_DIR": os.path.join(workspace, "data"),
                              "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"})
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        env.pop("OMP_NUM_THREADS", None)  # the machine's threads, as a user has them; in a worker its share (conftest)
    else:
        env["OMP_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"]
    env.update({"HF_HOME": os.path.join(workspace, "hf"), "HF_HUB_CACHE": os.path.join(workspace, "hf", "hub")})
    env.update(entry.env(workspace) if entry.env else {})
    env["PET_MASTER_PORT"] = str(_free_port())  # torchrun's --master_port (its default, 29500, may be taken)
    if entry.how in ("first_forward", "nodes"):
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.join(workspace, "stop_hook"), env.get("PYTHONPATH")]))
        if entry.save_model:
            env["REFNET_README_SAVE_MODEL"] = os.path.join(workspace, entry.save_model)
    return env


def _scheduled(line: str, exact: str):
    """The demo and the commands that read its checkpoint run in order in one worker, the other
    commands (in README order: a later one may read an earlier one's output) in another."""
    group = "readme_demo" if "refnet demo" in line or "save/demo/" in line else "readme"
    return pytest.param(line, exact, marks=pytest.mark.xdist_group(group), id=line[:60])


@pytest.mark.parametrize("line,exact", [_scheduled(line, exact) for line, exact in README_COMMANDS])
def test_readme_command_runs_as_written(line, exact, workspace):
    entry = COMMANDS.get(line)
    if entry is None:
        pytest.fail(f"no COMMANDS entry for this README command line: {line}")
    if entry.how == "ci":
        entry.check(workspace, "")
        return
    if entry.how == "elsewhere":
        _run_by_test_own_data(workspace, line)
        return
    if entry.how == "nodes":
        result = _on_two_nodes(exact, workspace, entry)
    else:
        result = subprocess.run(["bash", "-c", exact], cwd=workspace, env=_environment(workspace, entry),
                                capture_output=True, text=True, timeout=entry.timeout)
    output = result.stdout + result.stderr
    if entry.how == "complete":
        assert result.returncode == 0, f"{exact}\nexit {result.returncode}:\n{output[-6000:]}"
    elif entry.how == "fails_named":
        assert result.returncode not in (0, STOPPED), f"{exact}\nexit {result.returncode}:\n{output[-6000:]}"
    else:
        launcher = line.startswith(("torchrun", "sbatch"))  # report a stopped worker as their own failure
        stopped = result.returncode == STOPPED or (launcher and result.returncode != 0)
        assert stopped, f"{exact}\nexit {result.returncode} before the first batch reached the model:\n{output[-6000:]}"
    entry.check(workspace, output)
