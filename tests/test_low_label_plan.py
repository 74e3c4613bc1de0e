"""benchmarks/low_label.py: every planned run's options compose with MMF's configuration (rc10
rejects unknown keys), and each row differs from its reference in its own setting only."""

import argparse
import os
import sys

import pytest

from tests import runner

sys.path.insert(0, os.path.join(runner.REPO, "benchmarks"))
import low_label  # noqa: E402


def _config(run, tmp_path):
    from mmf.utils.configuration import Configuration

    opts = [f"config={run.config}", f"env.save_dir={tmp_path}/save", *run.opts]
    return Configuration(argparse.Namespace(opts=opts, config_override=None)).get_config()


@pytest.mark.parametrize("task", ["category", "fit"])
def test_every_row_composes_and_sets_what_it_names(task, tmp_path):
    args = low_label.parse_args(["--task", task, "--fractions", "0.05", "1.0", "--seeds", "3", "--lpb-sweep", "4",
                                 "--out", str(tmp_path), "env.data_dir=/nowhere"])
    grid, pretraining, needs = low_label.plan(args)
    assert [run.save_dir for run in pretraining] == [str(tmp_path / "pretrain_seed3")]
    pretrain = _config(pretraining[0], tmp_path)
    assert pretrain.model_config.refnet.freeze_base and pretrain.model_config.refnet.pretrain_refiner
    assert pretrain.dataset_config.emoji_memes.variant == task
    seen = {}
    for (row, fraction, _), run in grid.items():
        config = _config(run, tmp_path)
        data, model = config.dataset_config.emoji_memes, config.model_config[config.model]
        assert (data.variant, data.label_fraction, data.label_fraction_seed, config.training.seed) == \
            (task, fraction, 3, 3)
        assert model.num_labels == (9 if task == "category" else 2)
        lpb = str(data.labeled_per_batch)
        settings = {"model": config.model, "lpb": lpb if fraction < 1 else None,
                    "pretrained": bool(config.checkpoint.resume_pretrained)}
        if config.model != "vilbert":
            settings.update(detach=model.refiner.detach_targets, gamma=(model.refiner.weights.text,
                                                                        model.refiner.weights.image))
        seen[row, fraction] = settings
        assert (run.save_dir in needs) == settings["pretrained"]
    assert ("refnet_ms-natural", 1.0) not in seen and ("refnet_ms-lpb4", 1.0) not in seen
    reference = seen["refnet", 0.05]
    assert reference == {"model": "refnet", "lpb": "0.5", "pretrained": False, "detach": True, "gamma": (0.1, 0.1)}
    assert seen["refnet-gamma0", 0.05] == {**reference, "gamma": (0, 0)}
    assert seen["refnet-detach", 0.05] == {**reference, "detach": False}
    assert seen["refnet+pre", 0.05] == {**reference, "pretrained": True}
    assert seen["refnet_ms-natural", 0.05] == {**seen["refnet_ms", 0.05], "lpb": "None"}
    assert seen["refnet_ms-lpb4", 0.05] == {**seen["refnet_ms", 0.05], "lpb": "4"}
    assert seen["vilbert", 1.0] == {"model": "vilbert", "lpb": None, "pretrained": False}
