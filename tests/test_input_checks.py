"""Bad annotation rows, labels and features are refused when the dataset is built or read
(in-process, against MMF's dataset code); each error names the file, line, row id, key and
value. The same cases through `mmf_run` are in tests/test_bad_input.py."""

import argparse
import json
import os
import pickle

import lmdb
import numpy as np
import pytest

from tests import inprocess, replicas, runner  # noqa: F401  (inprocess loads the plugin)


def configure(tmp_path, data_dir, model="vilbert", dataset="hateful_memes", overrides=None, opts=()):
    from mmf.utils.configuration import Configuration

    path = runner.tiny_config(str(tmp_path), dataset, model, overrides)
    args = argparse.Namespace(opts=[f"config={path}", f"env.data_dir={data_dir}", f"env.save_dir={tmp_path}/save",
                                    *opts], config_override=None)
    return Configuration(args).get_config()


def build(config, split, dataset="hateful_memes"):
    from mmf.utils.build import build_dataset

    return build_dataset(dataset, config.dataset_config[dataset], split)


def annotation_file(config, split, dataset="hateful_memes"):
    section = config.dataset_config[dataset]
    return os.path.join(section.data_dir, section.annotations[split][0])


def feature_store(config, dataset="hateful_memes"):
    section = config.dataset_config[dataset]
    return os.path.join(section.data_dir, section.features.train[0])


def read_rows(path):
    with open(path) as handle:
        return [json.loads(line) for line in handle]


def write_rows(path, rows):
    with open(path, "w") as handle:
        handle.write("".join(json.dumps(row) + "\n" for row in rows))


def edit_row(path, index, drop=None, **changes):
    rows = read_rows(path)
    rows[index].update(changes)
    if drop:
        del rows[index][drop]
    write_rows(path, rows)
    return rows[index]


def edit_lmdb(store, key, change):
    """``change(entry) -> entry or None`` (None: the key stays listed, its value is deleted)."""
    env = lmdb.open(store, map_size=1 << 28)
    with env.begin(write=True) as txn:
        entry = change(pickle.loads(txn.get(key.encode())))
        if entry is None:
            txn.delete(key.encode())
        else:
            txn.put(key.encode(), pickle.dumps(entry))
    env.close()


@pytest.fixture()
def hm(tmp_path):
    data_dir = str(tmp_path / "data")
    replicas.hateful_memes(data_dir, sizes=(8, 6, 6))
    return data_dir


# --------------------------------------------------------------------------- rows


@pytest.mark.parametrize("key", ["text", "img", "id"])
def test_a_row_without_a_key_names_file_line_and_key(hm, tmp_path, key):
    from mmf_refnet.data.row_checks import AnnotationError

    config = configure(tmp_path, hm)
    path = annotation_file(config, "train")
    row = edit_row(path, 3, drop=key)
    where = f"{path}, line 4" + (f" (id {row['id']})" if key != "id" else "")
    with pytest.raises(AnnotationError) as error:
        build(config, "train")
    assert f"\n  {where}: no '{key}' key; expected " in str(error.value)


@pytest.mark.parametrize("value,expected", [
    (5, "'label' is 5; expected an integer class index in [0, 2)"),
    (-1, "'label' is -1; expected an integer class index in [0, 2)"),
    ("1", "'label' is '1' (a string); expected an integer class index"),
    (True, "'label' is True (bool); expected an integer class index"),
])
def test_a_bad_label_names_file_line_id_and_value(hm, tmp_path, value, expected):
    from mmf_refnet.data.row_checks import AnnotationError

    config = configure(tmp_path, hm)
    path = annotation_file(config, "val")
    row = edit_row(path, 2, label=value)
    with pytest.raises(AnnotationError) as error:
        build(config, "val")
    assert f"{path}, line 3 (id {row['id']}): {expected}" in str(error.value)


def test_an_empty_split_is_refused(hm, tmp_path):
    from mmf_refnet.data.row_checks import AnnotationError

    config = configure(tmp_path, hm)
    path = annotation_file(config, "test")
    write_rows(path, [])
    with pytest.raises(AnnotationError) as error:
        build(config, "test")
    assert str(error.value) == (f"{path} (dataset_config.hateful_memes.annotations.test) has no rows: every split "
                                "needs at least one annotated row")


def test_duplicate_ids_name_the_id_and_both_lines(hm, tmp_path):
    from mmf_refnet.data.row_checks import AnnotationError

    config = configure(tmp_path, hm)
    path = annotation_file(config, "test")
    first = read_rows(path)[1]["id"]
    edit_row(path, 4, id=first)
    with pytest.raises(AnnotationError) as error:
        build(config, "test")
    assert f"{path}, line 5 (id {first}): duplicate id {first}, first on line 2" in str(error.value)


def test_a_valid_replica_builds_every_split(hm, tmp_path):
    config = configure(tmp_path, hm, model="refnet_ms")
    sizes = [len(build(config, split)) for split in ("train", "val", "test")]
    assert sizes == [8, 6, 6]


# --------------------------------------------------------------------------- labels vs model and run_type


@pytest.mark.parametrize("model", ["vilbert", "refnet", "refnet_ms"])
@pytest.mark.parametrize("num_labels", [3, 1])
def test_num_labels_must_equal_the_classes(hm, tmp_path, model, num_labels):
    from mmf_refnet.data.row_checks import AnnotationError

    config = configure(tmp_path, hm, model=model, opts=[f"model_config.{model}.num_labels={num_labels}"])
    with pytest.raises(AnnotationError) as error:
        build(config, "train")
    message = str(error.value)
    assert (f"model_config.{model}.num_labels is {num_labels}, but the data has 2 classes (the Hateful Memes layout "
            "is binary without a classes.txt beside the annotations; labels found: [0, 1]). "
            f"Set model_config.{model}.num_labels=2") in message
    if num_labels == 1:
        assert "softmax cross-entropy over one class is 0 for every sample" in message
    else:
        assert "roc_auc is nan on every evaluation and no best checkpoint is written" in message


def test_a_classes_file_sets_the_class_count(hm, tmp_path):
    config = configure(tmp_path, hm, opts=["model_config.vilbert.num_labels=3"])
    path = annotation_file(config, "train")
    with open(os.path.join(os.path.dirname(path), "classes.txt"), "w") as handle:
        handle.write("no\nyes\nmaybe\n")
    assert len(build(config, "train")) == 8


def _strip_labels(path):
    write_rows(path, [{k: v for k, v in row.items() if k != "label"} for row in read_rows(path)])


def test_train_val_inference_refuses_an_unlabeled_test_split(hm, tmp_path):
    from mmf_refnet.data.row_checks import AnnotationError

    config = configure(tmp_path, hm, opts=["run_type=train_val_inference"])
    path = annotation_file(config, "test")
    first = read_rows(path)[0]["id"]
    with pytest.raises(AnnotationError) as error:
        build(config, "test")
    assert f"6 of 6 rows have no 'label' (first: line 1 (id {first})), but run_type=train_val_inference" in str(error.value)
    assert "Train with run_type=train_val, then write predictions for unlabeled rows with mmf_predict" in str(error.value)
    assert len(build(configure(tmp_path / "b", hm, opts=["run_type=train_val"]), "test")) == 6
    predicting = configure(tmp_path / "c", hm, opts=["run_type=test", "evaluation.predict=true"])
    assert len(build(predicting, "test")) == 6


def test_an_unlabeled_val_split_is_refused_unless_nothing_reads_labels(hm, tmp_path):
    from mmf_refnet.data.row_checks import AnnotationError

    config = configure(tmp_path, hm, model="refnet")
    _strip_labels(annotation_file(config, "val"))
    with pytest.raises(AnnotationError, match="run_type=train_val evaluates the val split with losses and metrics"):
        build(config, "val")
    pretraining = configure(tmp_path / "p", hm, model="refnet",
                            opts=["model_config.refnet.pretrain_refiner=true", "evaluation.metrics=[]"])
    assert len(build(pretraining, "val")) == 6


# --------------------------------------------------------------------------- features


def _train_feature(config, index):
    return f"{read_rows(annotation_file(config, 'train'))[index]['id']:05d}"


def test_an_empty_lmdb_entry_names_the_feature_and_store(hm, tmp_path):
    from mmf_refnet.compat.feature_errors import BadFeatureError

    config = configure(tmp_path, hm)
    key, store = _train_feature(config, 2), feature_store(config)
    edit_lmdb(store, key, lambda entry: None)
    dataset = build(config, "train")
    dataset[1]
    with pytest.raises(BadFeatureError) as error:
        dataset[2]
    assert str(error.value).startswith(f"the entry for '{key}.npy' (annotation key 'feature_path') in {store} is "
                                       "empty or unreadable (TypeError: a bytes-like object is required")


def test_a_feature_of_the_wrong_width_is_named(hm, tmp_path):
    from mmf_refnet.compat.feature_errors import BadFeatureError

    config = configure(tmp_path, hm)
    key, store = _train_feature(config, 2), feature_store(config)
    edit_lmdb(store, key, lambda entry: {**entry, "features": entry["features"][:, :8]})
    dataset = build(config, "train")
    with pytest.raises(BadFeatureError) as error:
        dataset[2]
    assert str(error.value).startswith(
        f"feature '{key}.npy' in {store} has width 8 (shape ({replicas.N_BOXES}, 8)); expected {replicas.FEATURE_DIM} "
        "(model_config.vilbert.v_feature_size)")


def test_nan_in_a_val_feature_is_named_when_read(hm, tmp_path):
    from mmf_refnet.compat.feature_errors import BadFeatureError

    config = configure(tmp_path, hm)
    key = f"{read_rows(annotation_file(config, 'val'))[3]['id']:05d}"
    store = feature_store(config)

    def poison(entry):
        entry["features"][1, 3] = np.nan
        return entry

    edit_lmdb(store, key, poison)
    dataset = build(config, "val")
    assert dataset[2].image_feature_0.shape == (replicas.N_BOXES, replicas.FEATURE_DIM)
    with pytest.raises(BadFeatureError) as error:
        dataset[3]
    total = replicas.N_BOXES * replicas.FEATURE_DIM
    assert str(error.value) == (f"feature '{key}.npy' in {store} holds NaN/inf (1 of {total} values, the first at "
                                "region 1, dim 3); re-extract the features of this image.")


# --------------------------------------------------------------------------- MM-IMDB and SNLI-VE


def test_mmimdb_genres_missing_plot_and_num_labels(tmp_path):
    from mmf_refnet.data.row_checks import AnnotationError

    data_dir = str(tmp_path / "data")
    replicas.mmimdb(data_dir, sizes=(8, 6, 6))
    config = configure(tmp_path, data_dir, dataset="mmimdb", opts=["model_config.vilbert.num_labels=5"])
    assert len(build(config, "train", "mmimdb")) == 8
    path = annotation_file(config, "val", "mmimdb")
    row = edit_row(path, 1, genres=["drama", "comdy"])
    vocab_file = config.dataset_config.mmimdb.processors.answer_processor.params.vocab_file
    with pytest.raises(AnnotationError) as error:
        build(config, "val", "mmimdb")
    assert (f"{path}, line 2 (id {row['id']!r}): genre 'comdy' is not in the class list {vocab_file} "
            "(nearest: comedy)") in str(error.value)
    edit_row(path, 1, drop="plot", genres=["drama"])
    with pytest.raises(AnnotationError, match="line 2 .*: no 'plot' key; expected the plot, a string or a list"):
        build(config, "val", "mmimdb")
    wrong = configure(tmp_path / "w", data_dir, dataset="mmimdb", opts=["model_config.vilbert.num_labels=24"])
    with pytest.raises(AnnotationError, match="model_config.vilbert.num_labels is 24, but the data has 5 classes"):
        build(wrong, "train", "mmimdb")


def _feature_folder(data_dir):
    """Wherever the replica put the SNLI-VE features (an .lmdb or a folder of .npy files)."""
    for folder, _, files in os.walk(data_dir):
        if folder.endswith(".lmdb") or any(name.endswith(".npy") for name in files):
            return folder
    raise FileNotFoundError(data_dir)


def test_snli_ve_gold_label_and_num_labels(tmp_path):
    from mmf_refnet.data.row_checks import AnnotationError

    data_dir = str(tmp_path / "data")
    replicas.visual_entailment(data_dir, sizes=(9, 6, 6))
    features = {split: [_feature_folder(data_dir)] for split in ("train", "val", "test")}
    overrides = {"dataset_config": {"visual_entailment": {"features": features}}}
    config = configure(tmp_path, data_dir, dataset="visual_entailment", overrides=overrides,
                       opts=["model_config.vilbert.num_labels=3"])
    assert len(build(config, "val", "visual_entailment")) == 6
    path = annotation_file(config, "test", "visual_entailment")
    edit_row(path, 4, gold_label="-")
    with pytest.raises(AnnotationError) as error:
        build(config, "test", "visual_entailment")
    assert (f"{path}, line 5: 'gold_label' is '-'; expected one of ['entailment', 'neutral', 'contradiction']"
            in str(error.value))
    binary = configure(tmp_path / "b", data_dir, dataset="visual_entailment", overrides=overrides,
                       opts=["model_config.vilbert.num_labels=2"])
    with pytest.raises(AnnotationError, match="num_labels is 2, but the data has 3 classes .SNLI-VE: entailment"):
        build(binary, "train", "visual_entailment")
