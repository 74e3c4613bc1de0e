"""``bert_model_name``: a Hugging Face hub name read from a hub-layout cache offline, a local
directory, or null; clear errors offline when nothing is cached (refnet and rc10's vilbert)."""

import argparse
import os
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from mmf_refnet import assets
from mmf_refnet.modules import pretrained
from tests import fake_hub, hf_cache, inprocess, replicas, runner

# MiniLM-L6's sizes (the demo's text stream); the name stays the configs' default.
MINILM_SIZES = {"vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
                "intermediate_size": 1536, "max_position_embeddings": 512, "t_biattention_id": [4, 5]}


def minilm_sized_config(tmp_path, model: str, sizes=None, name=None) -> str:
    """The tiny test config of ``model`` on hateful_memes, with MiniLM's sizes and the project's bert_model_name."""
    path = runner.tiny_config(str(tmp_path), "hateful_memes", model)
    with open(path) as handle:
        config = yaml.safe_load(handle)
    block = config["model_config"][model]
    del block["bert_model_name"]
    if name is not None:
        block["bert_model_name"] = name
    block.update(MINILM_SIZES if sizes is None else sizes)
    with open(path, "w") as handle:
        yaml.safe_dump(config, handle)
    return path


def build(tmp_path, model: str, sizes=None, name=None):
    from mmf.utils.configuration import Configuration

    path = minilm_sized_config(tmp_path, model, sizes, name)
    opts = [f"config={path}", f"env.save_dir={tmp_path}/save", f"env.cache_dir={tmp_path}/mmf_cache"]
    config = Configuration(argparse.Namespace(opts=opts, config_override=None)).get_config()
    assert config.model_config[model].bert_model_name == (name or "bert-base-uncased")  # the project's default
    return inprocess.build(config, model)


def assert_text_stream_is_minilm(built) -> None:
    """Every BERT tensor of MiniLM-L6 is in ViLBERT's text stream; the other streams start random."""
    expected = load_file(os.path.join(assets.asset_path("minilm"), "model.safetensors"))
    state = built.model.bert.state_dict()  # ViLBERTBase, in both models
    shared = [name for name in expected if name in state]
    assert sorted(set(expected) - set(shared)) == ["embeddings.position_ids", "pooler.dense.bias", "pooler.dense.weight"]
    assert len(shared) == 101
    for name in shared:
        assert torch.equal(state[name], expected[name]), name
    assert not torch.equal(state["encoder.v_layer.0.attention.self.query.weight"][:8, :8],
                           expected["encoder.layer.0.attention.self.query.weight"][:8, :8])


@pytest.fixture()
def hf_home(tmp_path, monkeypatch):
    home = tmp_path / "hf_home"
    for name, value in hf_cache.hub_env(str(home)).items():
        monkeypatch.setenv(name, value)
    return home


@pytest.mark.parametrize("model", ["refnet_ms", "vilbert"])
def test_hub_name_loads_from_the_hub_cache_offline(tmp_path, hf_home, model):
    snapshot = hf_cache.minilm_as(str(hf_home / "hub"), "bert-base-uncased")
    assert os.path.islink(os.path.join(snapshot, "model.safetensors"))  # huggingface_hub's layout: links to blobs
    assert_text_stream_is_minilm(build(tmp_path, model))


def test_local_directory_loads_its_weights(tmp_path, hf_home):
    source = assets.asset_path("minilm")
    config = pretrained_config(tmp_path)
    model, info = pretrained.from_pretrained(_vilbert_base(), source, config, "model_config.refnet.bert_model_name", [])
    expected = load_file(os.path.join(source, "model.safetensors"))
    assert torch.equal(model.state_dict()["encoder.layer.5.output.dense.weight"], expected["encoder.layer.5.output.dense.weight"])
    assert not pretrained.missing_text_stream(info["missing_keys"])


def _vilbert_base():
    from mmf.models.vilbert import ViLBERTBase

    return ViLBERTBase


def pretrained_config(tmp_path, **changes):
    """transformers' BertConfig of a MiniLM-sized ViLBERT (as the models build it from model_config)."""
    from omegaconf import OmegaConf
    from transformers.models.bert.configuration_bert import BertConfig

    config = inprocess.configuration(tmp_path / "cfg", "refnet")
    values = OmegaConf.to_container(config.model_config.refnet, resolve=True)
    values.update(MINILM_SIZES, **changes)
    return BertConfig.from_dict(values)


@pytest.mark.parametrize("model", ["refnet_ms", "vilbert"])
def test_empty_cache_offline_is_a_clear_error_from_mmf_run(tmp_path, model):
    data_dir = str(tmp_path / "data")
    replicas.hateful_memes(data_dir, sizes=(16, 8, 8))
    home = str(tmp_path / "empty_hf_home")
    result = runner.run_cli("mmf_run", minilm_sized_config(tmp_path, model), data_dir, str(tmp_path / "save"),
                            f"env.cache_dir={tmp_path}/mmf_cache", env=hf_cache.hub_env(home), check=False)
    assert result.returncode != 0
    output = result.stderr + result.stdout
    key = f"model_config.{model}.bert_model_name"
    assert f"{key} is 'bert-base-uncased', a Hugging Face hub name, but HF_HUB_OFFLINE=1" in output
    assert os.path.join(home, "hub", "models--bert-base-uncased") in output
    assert os.path.join(str(tmp_path), "mmf_cache", "distributed_-1", "models--bert-base-uncased") in output
    assert f"or set {key} to a local directory with config.json" in output
    # only our message, not transformers' or huggingface_hub's traceback
    assert "site-packages/transformers/" not in output and "site-packages/huggingface_hub/" not in output


def test_sizes_that_do_not_fit_the_weights_name_every_key(tmp_path, hf_home):
    hf_cache.minilm_as(str(hf_home / "hub"), "bert-base-uncased")
    with pytest.raises(pretrained.WeightsMismatch) as error:
        build(tmp_path, "refnet", sizes={**MINILM_SIZES, "hidden_size": 768, "num_hidden_layers": 12,
                                         "t_biattention_id": [10, 11]})
    message = str(error.value)
    assert "model_config.refnet.hidden_size is 768 but the checkpoint's is 384" in message
    assert "model_config.refnet.num_hidden_layers is 12 but the checkpoint's is 6" in message
    assert "set model_config.refnet.hidden_size=384 model_config.refnet.num_hidden_layers=6" in message


def test_a_checkpoint_without_bert_keys_is_refused(tmp_path):
    from safetensors.torch import save_file

    directory = tmp_path / "not_bert"
    directory.mkdir()
    weights = load_file(os.path.join(assets.asset_path("minilm"), "model.safetensors"))
    save_file({f"roberta.{name}": tensor for name, tensor in weights.items()}, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(open(os.path.join(assets.asset_path("minilm"), "config.json")).read())
    with pytest.raises(pretrained.WeightsMismatch, match=r"101 tensors of ViLBERT's text stream are not in the checkpoint"):
        pretrained.from_pretrained(_vilbert_base(), str(directory), pretrained_config(tmp_path), "key", [])


def test_paths_that_are_not_directories_are_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = pretrained_config(tmp_path)
    with pytest.raises(pretrained.WeightsNotFound, match=r"'./my_bert', which looks like a local directory, but "
                                                         + str(tmp_path / "my_bert") + " does not exist"):
        pretrained.from_pretrained(_vilbert_base(), "./my_bert", config, "key", [])
    with pytest.raises(pretrained.WeightsNotFound, match=r"has no config.json"):
        pretrained.from_pretrained(_vilbert_base(), str(tmp_path), config, "key", [])
    (tmp_path / "config.json").write_text(open(os.path.join(assets.asset_path("minilm"), "config.json")).read())
    with pytest.raises(pretrained.WeightsNotFound, match=r"could not load weights from .* \(weight files there: no "
                                                         r"model.safetensors / pytorch_model.bin\)"):
        pretrained.from_pretrained(_vilbert_base(), str(tmp_path), config, "key", [])


def test_tokenizer_comes_from_the_cache_else_the_package_else_an_error(tmp_path, hf_home, monkeypatch):
    packaged = assets.asset_path("bert_uncased_tokenizer")
    assert pretrained.tokenizer_source("bert-base-uncased") == packaged  # empty cache: the shipped copy
    snapshot = hf_cache.minilm_as(str(hf_home / "hub"), "bert-base-uncased")
    assert pretrained.tokenizer_source("bert-base-uncased") == snapshot  # cached: the hub's files
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("REFNET_MINILM_DIR", str(tmp_path / "absent"))  # no package either
    with pytest.raises(pretrained.WeightsNotFound, match=r"tokenizer 'bert-base-uncased' is not in the Hugging Face "
                                                         r"cache .* and HF_HUB_OFFLINE=1"):
        pretrained.tokenizer_source("bert-base-uncased")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE")
    assert pretrained.tokenizer_source("bert-base-uncased") == "bert-base-uncased"  # online: transformers downloads


def test_project_configs_tokenize_with_bert_base_uncased(tmp_path, hf_home):
    """The real-data configs' tokenizer (``${refnet_tokenizer:bert-base-uncased}``) offline, from the package."""
    from mmf.utils.configuration import Configuration

    for dataset in ("hateful_memes", "mmimdb", "visual_entailment"):
        path = os.path.join(runner.PROJECT_CONFIGS, dataset, "refnet_ms.yaml")
        config = Configuration(argparse.Namespace(opts=[f"config={path}"], config_override=None)).get_config()
        tokenizer = config.dataset_config[dataset].processors.text_processor.params.tokenizer_config.type
        assert tokenizer == assets.asset_path("bert_uncased_tokenizer"), dataset
        assert config.model_config.refnet_ms.bert_model_name == "bert-base-uncased"


BUILD = """
import pathlib, sys
sys.path.insert(0, {repo!r})
import mmf_refnet
from tests.test_pretrained_weights import assert_text_stream_is_minilm, build
assert_text_stream_is_minilm(build(pathlib.Path({tmp!r}), "refnet_ms", name={name!r}))
print("TEXT STREAM IS MINILM")
"""


def _build_in_subprocess(tmp_path, env, name=None):
    code = BUILD.format(repo=runner.REPO, tmp=str(tmp_path), name=name)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env=runner.offline_env({**env, "PYTHONPATH": runner.REPO}))


def test_online_the_hub_name_is_downloaded_once_into_the_cache(tmp_path):
    """Online (HF_ENDPOINT: a local hub started here): downloaded into HF_HUB_CACHE, then offline from there."""
    home = str(tmp_path / "hf_home")
    with fake_hub.serve({"bert-base-uncased": assets.asset_path("minilm")}) as (endpoint, downloads):
        online = {**hf_cache.hub_env(home), "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0", "HF_ENDPOINT": endpoint,
                  "HF_HUB_DISABLE_TELEMETRY": "1"}
        first = _build_in_subprocess(tmp_path / "online", online)
        assert "TEXT STREAM IS MINILM" in first.stdout, first.stderr[-3000:]
        assert downloads["bert-base-uncased/model.safetensors"] == 1
        unknown = _build_in_subprocess(tmp_path / "unknown", online, name="someone/no-such-bert")
    snapshots = os.path.join(home, "hub", "models--bert-base-uncased", "snapshots")
    assert os.path.isfile(os.path.join(snapshots, os.listdir(snapshots)[0], "model.safetensors"))
    offline = _build_in_subprocess(tmp_path / "offline", hf_cache.hub_env(home))
    assert "TEXT STREAM IS MINILM" in offline.stdout, offline.stderr[-3000:]
    assert unknown.returncode != 0
    assert (f"model_config.refnet_ms.bert_model_name is 'someone/no-such-bert': could not get it from the Hugging "
            f"Face hub ({endpoint})") in unknown.stderr
    assert "the hub has no model of this name (or it is private or gated" in unknown.stderr
    assert "site-packages/huggingface_hub/" not in unknown.stderr
