"""Bad inputs fail with errors that name the file, key or value (subprocess mmf_run)."""

import os
import pickle
import shutil

import lmdb
import pytest

from tests import replicas, runner


@pytest.fixture()
def hm(tmp_path):
    data_dir = str(tmp_path / "data")
    root = replicas.hateful_memes(data_dir, sizes=(16, 8, 8))
    return {"data": data_dir, "root": root, "config": runner.tiny_config(str(tmp_path), "hateful_memes", "vilbert")}


def _fails(hm, tmp_path, *opts, data_dir=None):
    result = runner.run_cli("mmf_run", hm["config"], data_dir or hm["data"], str(tmp_path / "save"), *opts, check=False)
    assert result.returncode != 0
    return result.stderr + result.stdout


def test_missing_data_dir_names_the_expected_path(hm, tmp_path):
    output = _fails(hm, tmp_path, data_dir=str(tmp_path / "nowhere"))
    assert f"{tmp_path}/nowhere/datasets/hateful_memes/defaults/annotations/train.jsonl" in output
    assert "mmf_convert_hm" in output


def test_missing_annotation_file_names_key_and_path(hm, tmp_path):
    os.remove(os.path.join(hm["root"], "annotations", "dev_unseen.jsonl"))
    output = _fails(hm, tmp_path)
    assert "dataset_config.hateful_memes.annotations.val" in output
    assert os.path.join(hm["root"], "annotations", "dev_unseen.jsonl") in output


def test_missing_feature_store_names_key_path_and_the_zoo_file(hm, tmp_path):
    shutil.rmtree(os.path.join(hm["root"], "features", "detectron.lmdb"))
    output = _fails(hm, tmp_path)  # the zoo download goes to runner's unreachable mirror
    assert "dataset_config.hateful_memes.features.train" in output and "detectron.lmdb" in output
    assert f"{runner.UNREACHABLE_MIRROR}datasets/hateful_memes/defaults/features/features_2020_10_01.tar.gz" in output
    assert os.path.join(hm["root"], "features", "features.tar.gz") in output and "by hand" in output


def test_malformed_annotation_line_names_file_and_line(hm, tmp_path):
    path = os.path.join(hm["root"], "annotations", "train.jsonl")
    lines = open(path).read().splitlines()
    lines[2] = lines[2][:-5]
    open(path, "w").write("\n".join(lines) + "\n")
    output = _fails(hm, tmp_path)
    assert f"{path}, line 3: not valid JSON" in output


def test_missing_feature_for_an_id_names_it(hm, tmp_path):
    store = os.path.join(hm["root"], "features", "detectron.lmdb")
    env = lmdb.open(store)
    with env.begin(write=True) as txn:
        keys = pickle.loads(txn.get(b"keys"))
        txn.put(b"keys", pickle.dumps(keys[1:]))  # the first train image is gone
    env.close()
    output = _fails(hm, tmp_path)
    assert f"no features for '{keys[0].decode()}.npy'" in output and store in output


def test_unknown_model_lists_refnet_models(hm, tmp_path):
    output = _fails(hm, tmp_path, "model=refnett")
    assert "No model named 'refnett' has been registered" in output
    assert "ReFNet models: refnet, refnet_ms" in output


def test_minilm_asset_directory_can_be_overridden_and_a_bad_one_is_named(tmp_path, monkeypatch):
    from mmf_refnet.assets import MissingAsset, asset_path

    packaged = asset_path("bert_uncased_tokenizer")
    assert os.path.isfile(os.path.join(packaged, "vocab.txt"))
    monkeypatch.setenv("REFNET_MINILM_DIR", str(tmp_path))
    assert asset_path("minilm") == str(tmp_path)
    monkeypatch.setenv("REFNET_MINILM_DIR", str(tmp_path / "absent"))
    with pytest.raises(MissingAsset, match=r"absent \(from \$REFNET_MINILM_DIR\), which is not a directory"):
        asset_path("bert_uncased_tokenizer")
