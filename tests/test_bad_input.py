"""Bad inputs fail with errors that name the file, key or value (subprocess mmf_run).

In-process versions with more cases: tests/test_input_checks.py, tests/test_config_keys.py."""

import glob
import hashlib
import os
import pickle
import shutil

import lmdb
import pytest

from tests import replicas, runner
from tests.test_input_checks import edit_lmdb, read_rows, write_rows


@pytest.fixture()
def hm(tmp_path):
    data_dir = str(tmp_path / "data")
    root = replicas.hateful_memes(data_dir, sizes=(16, 8, 8))
    return {"data": data_dir, "root": root, "config": runner.tiny_config(str(tmp_path), "hateful_memes", "vilbert")}


def _fails(hm, tmp_path, *opts, data_dir=None, config=None):
    result = runner.run_mmf("mmf_run", config or hm["config"], data_dir or hm["data"], str(tmp_path / "save"), *opts,
                            check=False)
    assert result.returncode != 0
    return result.stderr + result.stdout


def _tree_hash(folder) -> str:
    digest = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(folder, "**", "*"), recursive=True)):
        digest.update(os.path.relpath(path, folder).encode())
        if os.path.isfile(path):
            with open(path, "rb") as handle:
                digest.update(handle.read())
    return digest.hexdigest()


def _refused(hm, tmp_path, *opts, config=None, before_training=True):
    """mmf_run fails, the data folder is unchanged and (by default) no update ran."""
    before = _tree_hash(hm["data"])
    output = _fails(hm, tmp_path, *opts, config=config)
    assert _tree_hash(hm["data"]) == before
    if before_training:
        assert "progress:" not in output and not glob.glob(str(tmp_path / "save" / "**" / "*.ckpt"), recursive=True)
    return output


def _annotation(hm, name):
    return os.path.join(hm["root"], "annotations", name)


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


# --- rows, labels, features and config files (issue 16); more cases in-process ----------------


def test_every_bad_row_of_a_file_is_named_before_training(hm, tmp_path):
    path = _annotation(hm, "train.jsonl")
    rows = read_rows(path)
    del rows[5]["text"]
    rows[2]["label"] = "1"
    rows[9]["id"] = rows[7]["id"]
    write_rows(path, rows)
    output = _refused(hm, tmp_path)
    assert f"3 problem(s) in {path} (dataset_config.hateful_memes.annotations.train):" in output
    assert f"{path}, line 6 (id {rows[5]['id']}): no 'text' key; expected the caption, a string" in output
    assert f"{path}, line 3 (id {rows[2]['id']}): 'label' is '1' (a string); expected an integer class index" in output
    assert f"{path}, line 10 (id {rows[7]['id']}): duplicate id {rows[7]['id']}, first on line 8" in output


def test_num_labels_3_on_binary_data_is_refused_before_training(hm, tmp_path):
    config = runner.tiny_config(str(tmp_path), "hateful_memes", "refnet_ms",
                                {"model_config": {"refnet_ms": {"num_labels": 3}}})
    output = _refused(hm, tmp_path, config=config)
    assert ("model_config.refnet_ms.num_labels is 3, but the data has 2 classes (the Hateful Memes layout is binary "
            "without a classes.txt beside the annotations; labels found: [0, 1]). Set model_config.refnet_ms.num_labels=2"
            in output)


def test_train_val_inference_with_an_unlabeled_test_split_is_refused_before_training(hm, tmp_path):
    output = _refused(hm, tmp_path, "run_type=train_val_inference")
    path = _annotation(hm, "test_unseen.jsonl")
    assert f"{path} (dataset_config.hateful_memes.annotations.test):" in output
    assert "8 of 8 rows have no 'label'" in output and "then write predictions for unlabeled rows with mmf_predict" \
        in output
    assert "KeyError: 'targets'" not in output


def test_feature_of_the_wrong_width_is_named(hm, tmp_path):
    key = f"{read_rows(_annotation(hm, 'train.jsonl'))[4]['id']:05d}"
    store = os.path.join(hm["root"], "features", "detectron.lmdb")
    edit_lmdb(store, key, lambda entry: {**entry, "features": entry["features"][:, :8]})
    output = _refused(hm, tmp_path)
    assert f"feature '{key}.npy' in " in output and f"has width 8 (shape ({replicas.N_BOXES}, 8)); expected " \
        f"{replicas.FEATURE_DIM} (model_config.vilbert.v_feature_size)" in output
    assert "expanded size" not in output


def test_yaml_typo_is_refused_naming_file_key_and_nearest(hm, tmp_path):
    config = runner.tiny_config(str(tmp_path), "hateful_memes", "refnet_ms",
                                {"model_config": {"refnet_ms": {"ms_los": {"weight": 5.0}}}})
    output = _refused(hm, tmp_path, config=config)
    assert f"{config}: model_config.refnet_ms.ms_los (did you mean: ms_loss?)" in output
