"""Config files are checked like command-line overrides (compat/config_file_keys): unknown keys
name the file, the key path and the nearest keys; open sections take new keys; numeric keys hold
numbers. The project's own configs all pass."""

import argparse
import glob
import os

import pytest
import yaml

from tests import inprocess, runner  # noqa: F401  (inprocess loads the plugin)

PROJECT_CONFIG_FILES = sorted(glob.glob(os.path.join(runner.PROJECT_CONFIGS, "**", "*.yaml"), recursive=True))


def configuration(path, *opts):
    from mmf.utils.configuration import Configuration

    return Configuration(argparse.Namespace(opts=[f"config={path}", *opts], config_override=None)).get_config()


def write_config(directory, name, content) -> str:
    path = os.path.join(str(directory), name)
    with open(path, "w") as handle:
        yaml.safe_dump(content, handle)
    return path


def project(*parts) -> str:
    return os.path.join(runner.PROJECT_CONFIGS, *parts)


# files that are included by others and name no model or no dataset: what completes them
FRAGMENTS = {"refiner_pretraining.yaml": ["dataset=hateful_memes"],
             os.path.join("own_data", "minilm.yaml"): ["model=refnet_ms", "dataset=image_text"]}


def test_every_project_config_is_found():
    assert len(PROJECT_CONFIG_FILES) >= 30
    assert {os.path.join(runner.PROJECT_CONFIGS, name) for name in FRAGMENTS} <= set(PROJECT_CONFIG_FILES)


@pytest.mark.parametrize("path", PROJECT_CONFIG_FILES, ids=lambda p: os.path.relpath(p, runner.PROJECT_CONFIGS))
def test_project_configs_pass_the_check(path):
    opts = FRAGMENTS.get(os.path.relpath(path, runner.PROJECT_CONFIGS), [])
    if os.path.basename(path) == "defaults.yaml":
        opts = ["model=vilbert"]  # shared settings name no model
    config = configuration(path, *opts)
    assert config.model in ("vilbert", "refnet", "refnet_ms", "visual_bert_refnet", "mmbt_refnet")


def test_yaml_typos_name_file_key_path_and_nearest_keys(tmp_path):
    from mmf_refnet.compat.config_file_keys import UnknownConfigKeyError

    path = write_config(tmp_path, "typos.yaml", {
        "includes": [project("hateful_memes", "refnet_ms.yaml")],
        "model_config": {"refnet_ms": {"ms_los": {"weight": 5.0}, "refiner": {"weigths": {"text": 1.0}}}},
        "trainig": {"max_updates": 5},
        "dataset_config": {"hateful_memes": {"max_featurs": 10}},
    })
    with pytest.raises(UnknownConfigKeyError) as error:
        configuration(path)
    lines = str(error.value).splitlines()
    assert lines[1:5] == [
        f"  {path}: dataset_config.hateful_memes.max_featurs (did you mean: max_features, features, use_features?)",
        f"  {path}: model_config.refnet_ms.ms_los (did you mean: ms_loss?)",
        f"  {path}: model_config.refnet_ms.refiner.weigths (did you mean: weights?)",
        f"  {path}: trainig (did you mean: training?)",
    ]


def test_a_typo_in_an_included_file_names_that_file(tmp_path):
    from mmf_refnet.compat.config_file_keys import UnknownConfigKeyError

    base = write_config(tmp_path, "base.yaml", {"includes": [project("hateful_memes", "refnet.yaml")],
                                                "training": {"batch_sise": 8}})
    top = write_config(tmp_path, "top.yaml", {"includes": ["base.yaml"], "training": {"batch_size": 8}})
    with pytest.raises(UnknownConfigKeyError) as error:
        configuration(top)
    assert f"\n  {base}: training.batch_sise (did you mean: batch_size?)\n" in str(error.value)
    assert top not in str(error.value)


def test_sections_of_unregistered_models_or_datasets_are_refused(tmp_path):
    from mmf_refnet.compat.config_file_keys import UnknownConfigKeyError

    path = write_config(tmp_path, "names.yaml", {
        "includes": [project("hateful_memes", "refnet_ms.yaml")],
        "model_config": {"refnet_mss": {"fused_dim": 64}},
        "dataset_config": {"hatefull_memes": {"max_features": 10}},
    })
    with pytest.raises(UnknownConfigKeyError) as error:
        configuration(path)
    assert (f"{path}: dataset_config.hatefull_memes (no builder named 'hatefull_memes' is registered; "
            "did you mean: hateful_memes") in str(error.value)
    assert f"{path}: model_config.refnet_mss (no model named 'refnet_mss' is registered; did you mean: refnet_ms" \
        in str(error.value)


def test_open_sections_take_new_keys(tmp_path):
    path = write_config(tmp_path, "open.yaml", {
        "includes": [project("hateful_memes", "refnet_ms.yaml")],
        "env": {"my_cluster_key": "x"},
        "optimizer": {"params": {"amsgrad": True}},
        "scheduler": {"params": {"num_cycles": 0.5}},
        "evaluation": {"metrics": ["accuracy", {"type": "roc_auc", "params": {"my_param": 1}}]},
        "checkpoint": {"pretrained_state_mapping": {"model.classifier": "model.classifier"}},
        "model_config": {"visual_bert": {"anything": 1}, "refnet_ms": {"classifier": {"hidden_dim": 64}}},
        "dataset_config": {"mmimdb": {"anything": 1}, "hateful_memes": {
            "feature_key": "feature_path",
            "processors": {"bbox_processor": {"type": "bbox", "params": {"max_length": 50}}}}},
    })
    config = configuration(path)
    assert config.optimizer.params.amsgrad is True and config.env.my_cluster_key == "x"
    assert config.model_config.refnet_ms.classifier.hidden_dim == 64
    assert config.dataset_config.hateful_memes.processors.bbox_processor.params.max_length == 50


def test_a_word_where_a_number_belongs_names_key_value_and_source(tmp_path):
    from mmf_refnet.compat.config_file_keys import ConfigValueError

    path = write_config(tmp_path, "words.yaml", {
        "includes": [project("hateful_memes", "refnet_ms.yaml")],
        "dataset_config": {"hateful_memes": {"label_fraction": "half"}},
        "optimizer": {"params": {"lr": "fast"}},
    })
    with pytest.raises(ConfigValueError) as error:
        configuration(path, "training.max_updates=many")
    assert str(error.value).splitlines()[1:] == [
        "  training.max_updates is 'many' (set on the command line); expected a number like its default 22000",
        f"  dataset_config.hateful_memes.label_fraction is 'half' (set in {path}); expected a number like its "
        "default 1.0",
        f"  optimizer.params.lr is 'fast' (set in {path}); expected a number",
    ]


def test_numbers_nulls_and_interpolations_are_accepted(tmp_path):
    path = write_config(tmp_path, "numbers.yaml", {
        "includes": [project("hateful_memes", "refnet_ms.yaml")],
        "model_config": {"refnet_ms": {"ms_loss": {"miner_epsilon": None}, "fused_dim": 256}},
        "training": {"max_updates": 10, "checkpoint_interval": "${training.max_updates}"},
        "optimizer": {"params": {"lr": 1e-4, "betas": [0.9, 0.98]}},
    })
    config = configuration(path, "training.batch_size=4")
    assert config.training.checkpoint_interval == 10 and config.model_config.refnet_ms.ms_loss.miner_epsilon is None
