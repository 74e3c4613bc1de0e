"""Each compat shim is needed: the same snippet fails with rc10's error when that
one shim is switched off (MMF_REFNET_SKIP_SHIMS) and works with all shims on."""

import textwrap

import pytest
import torch
import transformers

from tests import forkserver, replicas, runner

PRELUDE = """
import os, sys, argparse, logging
sys.path.insert(0, {repo!r})
import mmf_refnet
tmp = {tmp!r}
os.makedirs(tmp, exist_ok=True)
"""

SNIPPETS = {
    "collections_abc": ("""
        from mmf.utils.logger import Logger
        logger = object.__new__(Logger)
        logger._is_master = False
        Logger.log_progress(logger, {"a": 1})
    """, "has no attribute 'Mapping'"),
    "omegaconf_legacy": ("""
        from tests import inprocess
        inprocess.configuration(tmp, "vilbert")
    """, "Missing key"),
    "torchvision_stub": ("import mmf.datasets.databases.image_database", "No module named 'torchvision'"),
    "demjson_alias": ("import mmf.utils.configuration", "No module named 'demjson'"),
    "transformers_layout": ("import mmf.models.vilbert", "No module named 'transformers."),
    "default_configs": ("""
        from tests import inprocess
        inprocess.configuration(tmp, "vilbert")
    """, "defaults.yaml"),
    "config_names_model": ("""
        from mmf.utils.configuration import Configuration
        from tests import runner
        Configuration(argparse.Namespace(opts=["config=" + runner.tiny_config(tmp, "hateful_memes", "vilbert")],
                                         config_override=None))
    """, "Required argument 'model' not passed"),
    "config_file_keys": ("""
        import yaml
        from mmf.utils.configuration import Configuration
        from tests import runner
        path = tmp + "/typo.yaml"
        with open(path, "w") as handle:
            yaml.safe_dump({"includes": [runner.tiny_config(tmp, "hateful_memes", "refnet_ms")],
                            "model_config": {"refnet_ms": {"ms_los": {"weight": 5.0}}}}, handle)
        try:
            Configuration(argparse.Namespace(opts=["config=" + path], config_override=None))
        except ValueError as error:
            assert f"{path}: model_config.refnet_ms.ms_los (did you mean: ms_loss?)" in str(error), str(error)
        else:
            raise AssertionError("a typo in a config file was accepted")
    """, "a typo in a config file was accepted"),
    "unknown_model": ("""
        from tests import inprocess
        try:
            inprocess.configuration(tmp, "vilbert", opts=["model=refnett"])
        except KeyError as error:
            assert "ReFNet models: refnet, refnet_ms" in str(error)
        else:
            raise AssertionError("no error for an unknown model")
    """, "no error for an unknown model"),
    "seed_zero": ("""
        import torch
        from mmf_cli import run
        draws = []
        for _ in range(2):
            assert run.set_seed(0) == 0
            draws.append(torch.rand(3))
        assert torch.equal(*draws), "training.seed=0 did not seed"
    """, "training.seed=0 did not seed"),
    "logger_isatty": ("""
        from mmf.utils.logger import StreamToLogger
        assert StreamToLogger(logging.getLogger("x")).isatty() is False
    """, "has no attribute 'isatty'"),
    "from_pretrained_none": ("""
        from transformers.models.bert.configuration_bert import BertConfig
        from mmf.models.vilbert import ViLBERTBase
        from tests import replicas
        ViLBERTBase.from_pretrained(None, config=BertConfig.from_dict(replicas.tiny_vilbert_overrides(30) | {
            "v_target_size": 10, "bi_attention_type": 1, "fast_mode": False, "visual_target": 0, "with_coattention": True,
            "dynamic_attention": False, "task_specific_tokens": False, "fixed_v_layer": 0, "fixed_t_layer": 0,
            "v_initializer_range": 0.02, "visualization": False, "in_batch_pairs": False, "v_hidden_act": "gelu"}))
    """, "Error"),
    "pretrained_weights": ("""
        os.environ["HF_HUB_CACHE"] = tmp + "/empty_hub_cache"
        from tests import inprocess
        config = inprocess.configuration(tmp, "vilbert", opts=["model_config.vilbert.bert_model_name=bert-base-uncased",
                                                                "env.cache_dir=" + tmp + "/mmf_cache"])
        try:
            inprocess.build(config, "vilbert")
        except Exception as error:
            assert "HF_HUB_OFFLINE=1" in str(error) and "a local directory" in str(error), f"unclear: {error!r}"
        else:
            raise AssertionError("built without weights")
    """, "unclear"),
    "console_log": ("""
        import io
        from mmf.utils.logger import Logger
        from tests import inprocess
        config = inprocess.configuration(tmp, "vilbert")
        console = io.StringIO()
        saved, sys.stdout = sys.stdout, console
        try:
            logger = Logger(config, "mmf.train")  # training.stdout_capture is on, as in every MMF run
            logger.log_progress({"progress": "2/6", "train/total_loss": 0.5, "eta": "3s"})
        finally:
            sys.stdout = saved
        shown = console.getvalue()
        assert "progress: 2/6, train/total_loss: 0.5, eta: 3s" in shown, f"nothing on the console: {shown!r}"
        assert "progress: 2/6" in open(os.path.join(tmp, "save", "train.log")).read()
    """, "nothing on the console"),
    "vilbert_device": ("""
        from tests import inprocess
        from omegaconf import open_dict
        config = inprocess.configuration(tmp, "vilbert")
        model = inprocess.build(config, "vilbert")
        model(inprocess.batch())
    """, "Torch not compiled with CUDA enabled"),
    "pretrained_upgrade": ("""
        import torch
        from types import SimpleNamespace
        from omegaconf import OmegaConf
        from mmf.utils.checkpoint import Checkpoint
        from tests import inprocess
        model = inprocess.build(inprocess.configuration(tmp, "refnet_ms"), "refnet_ms")
        decoders = model.model.refiner.decoders
        old_layout = {}  # a checkpoint from before the decoders were stacked
        for index, modality in enumerate(decoders.modalities):
            for number, layer in (("0", decoders.hidden), ("3", decoders.output)):
                key = f"model.refiner.decoders.{modality}.{number}"
                old_layout[key + ".weight"] = torch.full_like(layer.weight[index].t(), index + 1.0)
                old_layout[key + ".bias"] = torch.full_like(layer.bias[index], index + 1.0)
        old_layout["model.fusion.bias"] = torch.zeros_like(model.model.fusion.bias)  # one tensor that fits as it is
        checkpoint = object.__new__(Checkpoint)
        mapping = {"checkpoint": {"pretrained_state_mapping": {"model.refiner": "model.refiner",
                                                               "model.fusion": "model.fusion"}}}
        checkpoint.trainer = SimpleNamespace(model=model, config=OmegaConf.create(mapping),
                                             writer=SimpleNamespace(write=lambda *args, **kwargs: None))
        checkpoint._load_pretrained(old_layout)
        for layer in (decoders.hidden, decoders.output):
            for tensor in (layer.weight, layer.bias):
                assert torch.equal(tensor[1], torch.full_like(tensor[1], 2.0)), "the old checkpoint's decoders were skipped"
    """, "the old checkpoint's decoders were skipped"),
    "pretrained_report": ("""
        import torch
        from types import SimpleNamespace
        from omegaconf import OmegaConf
        from mmf.utils.checkpoint import Checkpoint
        from tests import inprocess
        model = inprocess.build(inprocess.configuration(tmp, "refnet_ms"), "refnet_ms")
        wider = {key: torch.zeros(*value.shape[:-1], value.shape[-1] + 1) if value.dim() else value
                 for key, value in model.state_dict().items() if key.startswith("model.bert.")}
        checkpoint = object.__new__(Checkpoint)
        mapping = {"checkpoint": {"pretrained_state_mapping": {"model.bert": "model.bert"}}}
        checkpoint.trainer = SimpleNamespace(model=model, config=OmegaConf.create(mapping),
                                             writer=SimpleNamespace(write=lambda *args, **kwargs: None))
        try:
            checkpoint._load_pretrained(wider)  # a checkpoint of another size
        except ValueError as error:
            assert "do not fit the model" in str(error) and "model.bert.embeddings" in str(error), str(error)
        else:
            raise AssertionError("no error for a checkpoint of another size")
    """, "The size of tensor a"),
    "anomaly_detection": ("""
        import torch
        from omegaconf import OmegaConf
        from mmf.common.registry import registry
        from mmf.trainers.base_trainer import BaseTrainer

        class Writer:
            def write(self, *args, **kwargs):
                pass

        class NoLoopTrainer(BaseTrainer):
            def __init__(self):
                self.config = OmegaConf.create({"training": {"detect_anomaly": False}})
                self.run_type, self.model, self.writer = "train", torch.nn.Linear(1, 1), Writer()
                self.max_epochs, self.max_updates, self.num_updates = None, 0, 0

            def profile(self, text):
                pass

            def finalize(self):
                assert not torch.is_anomaly_enabled(), "anomaly detection is on during train()"

        registry.register("writer", Writer())
        NoLoopTrainer().train()
    """, "anomaly detection is on during train()"),
    "data_parallel_refused": ("""
        import torch
        from mmf.trainers.base_trainer import BaseTrainer
        from omegaconf import OmegaConf
        from mmf_refnet.compat.data_parallel_refused import DataParallelRefused

        torch.cuda.device_count = lambda: 2  # two GPUs visible, no torchrun
        trainer = BaseTrainer.__new__(BaseTrainer)
        trainer.device, trainer.distributed, trainer.model = torch.device("cuda", 0), False, torch.nn.Linear(2, 2)
        trainer.config = OmegaConf.create({"training": {"find_unused_parameters": False}})
        try:
            trainer.parallelize_model()
        except DataParallelRefused as error:
            assert "torchrun --nproc_per_node=2" in str(error) and "CUDA_VISIBLE_DEVICES=0" in str(error), error
        assert not isinstance(trainer.model, torch.nn.DataParallel), "the model was wrapped in DataParallel"
    """, "the model was wrapped in DataParallel"),
    "distributed_eval": ("""
        import torch
        import torch.distributed as dist
        from omegaconf import OmegaConf
        from torch.testing._internal.distributed.fake_pg import FakeStore
        from mmf.common.registry import registry
        from mmf.utils import build

        dist.init_process_group("fake", rank=0, world_size=2, store=FakeStore())  # 2 processes, seen from rank 0
        registry.register("config", OmegaConf.create({"training": {"batch_size": 8}}))

        class ValSplit(torch.utils.data.Dataset):
            dataset_type, dataset_name = "val", "hateful_memes"

            def __len__(self):
                return 15

            def __getitem__(self, index):
                return index

        rows = []
        try:
            for rank in (0, 1):
                sampler = build._add_extra_args_for_dataloader(ValSplit(), {})["sampler"]
                sampler.rank = rank
                rows += list(sampler)
        finally:
            dist.destroy_process_group()
        assert sorted(rows) == list(range(15)), f"2 ranks evaluate {len(rows)} rows of 15"
    """, "2 ranks evaluate 16 rows of 15"),
    "distributed_checks": ("""
        from types import SimpleNamespace
        import torch.distributed as dist
        from omegaconf import OmegaConf
        from torch.testing._internal.distributed.fake_pg import FakeStore
        from mmf.utils import build

        dist.init_process_group("fake", rank=1, world_size=2, store=FakeStore())
        config = OmegaConf.create({"env": {"save_dir": tmp}, "distributed": {"rank": 1}, "training": {"batch_size": 9}})
        try:
            build.build_config(SimpleNamespace(freeze=lambda: None, get_config=lambda: config))
        except ValueError as error:
            assert "training.batch_size=9 does not split among 2 processes" in str(error), error
        else:
            raise AssertionError("training.batch_size=9 accepted for 2 processes")
        finally:
            dist.destroy_process_group()
    """, "training.batch_size=9 accepted for 2 processes"),
    "lmdb_shared_env": ("""
        from mmf.datasets.databases.readers.feature_readers import LMDBFeatureReader
        from tests import replicas
        root = replicas.hateful_memes(tmp + "/data", sizes=(2, 2, 2))
        readers = [LMDBFeatureReader(6, root + "/features/detectron.lmdb") for _ in range(2)]
        for reader in readers:
            reader._init_db()
    """, "already open"),
    "distributed_cpu": ("""
        import socket, subprocess
        worker = (
            "import sys, mmf_refnet, torch.distributed as dist; from mmf.utils import distributed; "
            "rank, port = int(sys.argv[1]), sys.argv[2]; "
            "dist.init_process_group('gloo', init_method='tcp://127.0.0.1:' + port, rank=rank, world_size=2); "
            "print('SEES', distributed.get_rank(), distributed.get_world_size()); dist.barrier()"
        )
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
        ranks = [subprocess.Popen([sys.executable, "-c", worker, str(r), str(port)], stdout=subprocess.PIPE, text=True)
                 for r in range(2)]
        seen = sorted(p.communicate(timeout=120)[0].split("SEES")[-1].split() for p in ranks)
        assert seen == [["0", "2"], ["1", "2"]], f"ranks see (rank, world size) {seen}"
    """, "ranks see (rank, world size) [['0', '1'], ['0', '1']]"),
    "dataset_paths": ("""
        from tests import inprocess
        from mmf.datasets.builders.hateful_memes.builder import HatefulMemesBuilder
        config = inprocess.configuration(tmp, "vilbert", opts=["env.data_dir=" + tmp + "/nowhere"])
        try:
            HatefulMemesBuilder().build(config.dataset_config.hateful_memes)
        except Exception as error:
            assert "nowhere/datasets/hateful_memes" in str(error), f"no path in: {error}"
        else:
            raise AssertionError("no error for a missing data dir")
    """, "no path in"),
    "zoo_download": ("""
        import hashlib, tarfile
        from mmf.utils.download import download_resources
        os.makedirs(tmp + "/src/detectron.lmdb")
        open(tmp + "/src/detectron.lmdb/data.mdb", "w").write("features")
        folder = tmp + "/features"
        os.makedirs(folder)
        with tarfile.open(folder + "/features.tar.gz", "w:gz") as tar:  # placed by hand, as the error message says
            tar.add(tmp + "/src/detectron.lmdb", arcname="detectron.lmdb")
        digest = hashlib.sha256(open(folder + "/features.tar.gz", "rb").read()).hexdigest()
        download_resources([{"url": "mmf://datasets/x/features.tar.gz", "file_name": "features.tar.gz",
                             "hashcode": digest}], folder, "1.0")
        assert os.path.isfile(folder + "/detectron.lmdb/data.mdb"), "the archive placed by hand was not extracted"
    """, "the archive placed by hand was not extracted"),
    "zoo_model_key": ("""
        from mmf.common.registry import registry
        from mmf.utils.checkpoint import load_pretrained_model
        from tests import inprocess
        registry.register("config", inprocess.configuration(tmp, "vilbert"))
        try:
            load_pretrained_model("vilbert.pretrained.cc.smal")  # a typo
        except KeyError as error:
            assert "vilbert.pretrained.cc.small" in str(error), str(error)
        else:
            raise AssertionError("no error for an unknown zoo key")
    """, "is not iterable"),
    "zoo_when_missing": ("""
        from mmf.common.registry import registry
        from mmf.datasets.builders.mmimdb.builder import MMIMDbBuilder
        from tests import inprocess, replicas
        replicas.mmimdb(tmp + "/data", sizes=(2, 2, 2))  # everything in place, in MMF's layout
        config = inprocess.configuration(tmp, "vilbert", dataset="mmimdb", opts=["env.data_dir=" + tmp + "/data"])
        registry.register("config", config)
        MMIMDbBuilder().build(config.dataset_config.mmimdb)
    """, "Download failed"),
    "hm_convert": ("""
        from mmf_cli.hm_convert import HMConverter
        from tests import replicas
        zip_path = replicas.hateful_memes_zip(tmp + "/hm.zip", "pw", sizes=(2, 1, 1))  # phase 2
        sys.argv = ["mmf_convert_hm", "--zip_file", zip_path, "--password", "pw", "--mmf_data_folder", tmp + "/mmf",
                    "--bypass_checksum", "1"]
        HMConverter().convert()
        assert os.path.isfile(tmp + "/mmf/datasets/hateful_memes/defaults/annotations/dev_unseen.jsonl")
    """, "dev.jsonl doesn't exist"),
    "annotation_lines": ("""
        from mmf.datasets.databases.annotation_database import AnnotationDatabase
        open(tmp + "/bad.jsonl", "w").write('{"id": 1}\\n{"id": \\n')
        try:
            AnnotationDatabase({}, tmp + "/bad.jsonl")
        except Exception as error:
            assert "bad.jsonl, line 2" in str(error), f"no file/line in: {type(error).__name__}: {error}"
    """, "no file/line in"),
    "checkpoint_atomic": ("""
        import io, torch
        from tests.checkpoint_stubs import bare_checkpoint
        checkpoint = bare_checkpoint(tmp)
        checkpoint.save(3)
        save = torch.save

        def dies_halfway(obj, target, *args, **kwargs):  # the process is killed while the file is written
            buffer = io.BytesIO()
            save(obj, buffer)
            handle = open(target, "wb") if isinstance(target, str) else target
            handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            handle.flush()
            raise KeyboardInterrupt("killed")

        torch.save = dies_halfway
        try:
            checkpoint.save(5)
        except KeyboardInterrupt:
            pass
        finally:
            torch.save = save
        assert not os.path.exists(tmp + "/models/model_5.ckpt"), "a half-written model_5.ckpt was left"
        assert torch.load(tmp + "/current.ckpt")["num_updates"] == 3
    """, "a half-written model_5.ckpt was left"),
    "checkpoint_read_errors": ("""
        from tests.checkpoint_stubs import bare_checkpoint
        open(tmp + "/empty.ckpt", "wb").close()
        try:
            bare_checkpoint(tmp)._torch_load(tmp + "/empty.ckpt")
        except Exception as error:
            assert "empty.ckpt" in str(error), f"no file named: {type(error).__name__}: {error}"
    """, "no file named: EOFError"),
    "checkpoint_key_match": ("""
        import torch
        from tests.checkpoint_stubs import bare_checkpoint
        torch.save({"model": {"other.weight": torch.zeros(2, 2)}}, tmp + "/other.ckpt")
        try:
            bare_checkpoint(tmp)._load(tmp + "/other.ckpt")
        except ValueError as error:
            assert "2 of the model's 2 weights are missing" in str(error), error
        else:
            raise AssertionError("a checkpoint of another model loaded without a word")
    """, "a checkpoint of another model loaded without a word"),
    "resume_source": ("""
        import torch
        from tests.checkpoint_stubs import bare_checkpoint, write_checkpoint
        checkpoint = bare_checkpoint(tmp, resume=True)
        write_checkpoint(tmp + "/models/model_4.ckpt", 4, value=7.0)
        write_checkpoint(tmp + "/current.ckpt", "truncated")
        checkpoint.load_state_dict()
        assert torch.equal(checkpoint.trainer.model.weight, torch.full((2, 2), 7.0))
    """, "current.ckpt is truncated"),
    "best_restore": ("""
        import torch
        from tests.checkpoint_stubs import bare_checkpoint, write_checkpoint
        checkpoint = bare_checkpoint(tmp, best_update=4)
        write_checkpoint(tmp + "/models/model_4.ckpt", 4, value=7.0)
        write_checkpoint(tmp + "/best.ckpt", "truncated")
        checkpoint.restore()
        assert torch.equal(checkpoint.trainer.model.weight, torch.full((2, 2), 7.0))
    """, "best.ckpt is truncated"),
    "save_dir_lock": ("""
        import subprocess, sys
        from types import SimpleNamespace
        from omegaconf import OmegaConf
        from mmf.common.registry import registry
        from mmf.utils import build
        config = {"env": {"save_dir": tmp}, "distributed": {"rank": None}}
        run = f"build.build_config(SimpleNamespace(freeze=lambda: None, get_config=lambda: OmegaConf.create({config!r})))"
        holder = subprocess.Popen([sys.executable, "-c", "import time, mmf_refnet; from types import SimpleNamespace; "
                                   "from omegaconf import OmegaConf; from mmf.utils import build; "
                                   f"{run}; print('HOLDING', flush=True); time.sleep(120)"],
                                  stdout=subprocess.PIPE, text=True)
        previous = registry.get("config", no_warning=True)
        try:
            assert holder.stdout.readline().strip() == "HOLDING"
            build.build_config(SimpleNamespace(freeze=lambda: None, get_config=lambda: OmegaConf.create(config)))
        except RuntimeError as error:
            assert f"is in use by another run: pid {holder.pid}" in str(error), error
        else:
            raise AssertionError("a second run started on a save_dir in use")
        finally:
            holder.kill()
            registry.register("config", previous)
    """, "a second run started on a save_dir in use"),
    "feature_errors": ("""
        from mmf.datasets.databases.features_database import FeaturesDatabase
        from omegaconf import OmegaConf
        from tests import replicas
        root = replicas.hateful_memes(tmp + "/data", sizes=(2, 2, 2))
        db = FeaturesDatabase(OmegaConf.create({"max_features": 6}), root + "/features/detectron.lmdb")
        try:
            db._read_features_and_info("99999.npy")
        except Exception as error:
            assert "99999.npy" in str(error) and "detectron.lmdb" in str(error), f"unclear: {error!r}"
    """, "unclear"),
}


def _python(code, skip):
    """``python -c code`` with ``skip``'s shims off, in a new process (forked from the preloaded server,
    tests/forkserver.py: MMF and the plugin are imported afresh in each)."""
    env = runner.offline_env({"MMF_REFNET_SKIP_SHIMS": skip, "PYTHONPATH": runner.REPO})
    return forkserver.run(["-c", code], env, timeout=300)


def _program(tmp, body):
    return textwrap.dedent(PRELUDE.format(repo=runner.REPO, tmp=str(tmp))) + textwrap.dedent(body)


def _assert_fails_without(name, tmp_path, snippets):
    body, error = snippets[name]
    result = _python(_program(tmp_path, body), skip=name)
    assert result.returncode != 0, f"{name}: the snippet worked without its shim"
    assert error in result.stderr + result.stdout, result.stderr[-3000:]


@pytest.mark.parametrize("name", sorted(SNIPPETS))
def test_snippet_fails_without_its_shim(name, tmp_path):
    _assert_fails_without(name, tmp_path, SNIPPETS)


def test_every_snippet_works_with_all_shims(tmp_path):
    """One interpreter runs every snippet (each in its own function) with all shims on."""
    checks = []
    for name, (body, _) in sorted(SNIPPETS.items()):
        checks.append(f"def check_{name}(tmp):\n    os.makedirs(tmp, exist_ok=True)\n"
                      + textwrap.indent(textwrap.dedent(body), "    "))
    runner_code = """
failed = []
for name, check in sorted((k, v) for k, v in list(globals().items()) if k.startswith("check_")):
    try:
        check(os.path.join(tmp, name))
    except BaseException as error:
        failed.append(f"{name}: {type(error).__name__}: {error}")
print("FAILED:", failed)
sys.exit(1 if failed else 0)
"""
    result = _python(_program(tmp_path, "\n".join(checks) + runner_code), skip="")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.skipif(int(transformers.__version__.split(".")[0]) < 5, reason="transformers < 5 has no post_init requirement")
def test_post_init_shim_is_needed_on_transformers_5(tmp_path):
    snippets = {"transformers_post_init": (SNIPPETS["from_pretrained_none"][0], "all_tied_weights_keys")}
    _assert_fails_without("transformers_post_init", tmp_path, snippets)


def test_shims_apply_once_and_all_are_listed():
    from mmf_refnet import compat

    compat.apply_pre()
    compat.apply_post()
    assert compat.applied() == frozenset(compat.PRE_IMPORT + compat.POST_IMPORT)
    for name in compat.PRE_IMPORT + compat.POST_IMPORT:
        module = __import__(f"mmf_refnet.compat.{name}", fromlist=["apply"])
        assert module.__doc__ and "rc10" in module.__doc__, f"{name} must say which rc10 behaviour it fixes"


def test_torchvision_stub_fails_loudly_when_used():
    import torchvision

    if not getattr(torchvision, "mmf_refnet_stub", False):
        pytest.skip("a real torchvision is installed")
    with pytest.raises(ImportError, match="torchvision is not usable"):
        torchvision.transforms.Compose([])


def test_replica_tokenizer_is_what_tests_use():
    assert replicas.vocab_size() > len(replicas.SPECIAL_TOKENS)


# --- fused_attention --------------------------------------------------------

@pytest.fixture()
def fused_on_cpu(monkeypatch):
    """The shim acts on CUDA tensors only (slower on the CPU); these tests run it on the CPU."""
    from mmf_refnet.compat import fused_attention

    monkeypatch.setattr(fused_attention, "DEVICE_TYPES", {"cuda", "cpu"})


NO_DROPOUT = [f"model_config.refnet_ms.{key}=0" for key in (
    "hidden_dropout_prob", "attention_probs_dropout_prob", "v_hidden_dropout_prob", "v_attention_probs_dropout_prob",
    "classifier.dropout", "refiner.dropout")]


def _padded_batch():
    """Text padded after 5 tokens on half the rows, so the additive masks matter."""
    from tests import inprocess

    batch = inprocess.batch(size=6)
    batch.input_mask[::2, 5:] = 0
    return batch


def _run(model, batch, fused: bool):
    from mmf_refnet.compat import fused_attention

    previous, fused_attention.ENABLED = fused_attention.ENABLED, fused
    try:
        model.zero_grad(set_to_none=True)
        output = model(batch)
        sum(loss.sum() for loss in output["losses"].values()).backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        return output, grads
    finally:
        fused_attention.ENABLED = previous


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_fused_attention_equals_rc10_attention_in_values_and_gradients(tmp_path, fused_on_cpu, device):
    """Every attention kind (text, image, both co-attention directions) through SDPA = rc10's written-out math."""
    from tests import inprocess

    model = inprocess.build(inprocess.configuration(tmp_path, "refnet_ms", opts=NO_DROPOUT), "refnet_ms")
    model = model.to(device).train()
    batch = _padded_batch().to(device)
    fused, fused_grads = _run(model, batch, True)
    stock, stock_grads = _run(model, batch, False)
    atol = 1e-6 if device == "cpu" else 1e-5  # CUDA's fused kernel sums in another order
    assert torch.allclose(fused["scores"], stock["scores"], atol=10 * atol)
    for key, value in stock["losses"].items():
        assert fused["losses"][key].item() == pytest.approx(value.item(), rel=1e-4, abs=atol), key
    assert any(".attention.self.query." in n for n in stock_grads) and any(".biattention.query1." in n for n in stock_grads)
    for name, grad in stock_grads.items():
        assert torch.allclose(fused_grads[name], grad, rtol=1e-4, atol=atol), name
    # the masks matter: padding changes the result, and both paths see it alike
    unpadded, _ = _run(model, inprocess.batch(size=6).to(device), True)
    assert not torch.allclose(unpadded["scores"], fused["scores"], atol=1e-4)


def test_fused_attention_is_a_fused_call_and_defers_for_attention_maps(tmp_path, fused_on_cpu):
    from mmf.models import vilbert

    from tests import inprocess

    model = inprocess.build(inprocess.configuration(tmp_path, "refnet_ms"), "refnet_ms").eval()
    batch = _padded_batch()
    recorder = inprocess.OpRecorder()
    with recorder:
        model(batch)
    sdpa = [name for name in recorder.names if "scaled_dot_product" in name]
    assert sdpa and "_softmax" not in recorder.names  # every attention went through SDPA
    attention = next(m for m in model.modules() if isinstance(m, vilbert.BertBiAttention))
    attention.visualization = True  # rc10's code returns the maps
    try:
        _, _, maps = attention(torch.randn(2, 3, attention.query1.in_features), torch.zeros(2, 1, 1, 3),
                               torch.randn(2, 4, attention.query2.in_features), torch.zeros(2, 1, 1, 4))
    finally:
        attention.visualization = False
    assert maps is not None and tuple(maps["attn1"].shape) == (2, attention.num_attention_heads, 4, 3)



def test_fused_attention_leaves_cpu_tensors_to_rc10_code(tmp_path, monkeypatch):
    from mmf_refnet.compat import fused_attention
    from tests import inprocess

    assert fused_attention.DEVICE_TYPES == {"cuda"}
    model = inprocess.build(inprocess.configuration(tmp_path, "refnet_ms"), "refnet_ms").eval()
    seen = []
    real = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *args, **kwargs: seen.append(1) or real(*args, **kwargs))
    with torch.no_grad():
        model(_padded_batch())
    assert seen == []


def test_vilbert_backbone_makes_no_host_tensors_for_device_inputs(tmp_path):
    """rc10's ViLBERTBase built its default image and co-attention masks on the CPU and copied them over
    every step; with inputs on another device ('meta' here, CUDA in training) nothing is made on the host."""
    from tests import inprocess

    bert = inprocess.build(inprocess.configuration(tmp_path, "refnet_ms"), "refnet_ms").model.bert.to("meta").eval()
    batch, tokens, regions = 3, 8, 5
    ids = torch.randint(0, 100, (batch, tokens), device="meta")
    features = torch.randn(batch, regions, bert.v_embeddings.image_embeddings.in_features, device="meta")
    recorder = inprocess.OpRecorder()
    with recorder, torch.no_grad():
        outputs = bert(ids, features, torch.rand(batch, regions, 5, device="meta"), torch.zeros_like(ids),
                       torch.ones_like(ids))
    assert outputs[2].device.type == "meta" and outputs[3].shape[0] == batch
    assert recorder.names and recorder.host_ops == []
