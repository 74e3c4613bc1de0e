"""benchmarks/low_label.py: every planned run's options compose with MMF's configuration (rc10
rejects unknown keys), and each row differs from its reference in its own setting only."""

import argparse
import json
import os
import statistics
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


def _previous(tmp_path, **changes):
    entry = {"task": "fit", "row": "vilbert", "fraction": 1.0, "seeds": [0, 1, 2], "max_updates": 1000,
             "summary": {"test/roc_auc": [0.896, 0.011]}, **changes}
    path = tmp_path / "previous.json"
    path.write_text(json.dumps([entry]))
    return str(path)


def test_previous_study_fills_only_the_cells_not_run(tmp_path, capsys):
    out = tmp_path / "study"
    args = low_label.parse_args(["--task", "fit", "--max-updates", "1000", "--fractions", "1.0", "--seeds", "0", "1",
                                 "--rows", "vilbert", "refnet-gamma0", "--out", str(out),
                                 "--previous", _previous(tmp_path)])
    grid, _, _ = low_label.plan(args)
    low_label.report(args, grid)  # nothing of this study has run
    table = capsys.readouterr().out
    assert "| vilbert | 100% | – | 0.896 ± 0.011 | – | – | 3 |" in table and "refnet-gamma0" not in table
    assert (out / "low_label_fit.png").stat().st_size > 0
    run_cell = {"task": "fit", "row": "vilbert", "fraction": 1.0, "seeds": [0, 1], "max_updates": 1000,
                "scores": {"test/roc_auc": [0.5, 0.7]}}
    merged = low_label.merge_previous([run_cell], json.loads(open(args.previous).read()), args.rows)
    assert merged == [run_cell]  # a cell this study ran is never replaced by the earlier one
    assert low_label.format_stats(low_label.stats(run_cell, "test/roc_auc")) == f"0.600 ± {statistics.stdev([0.5, 0.7]):.3f}"


def test_previous_study_of_another_budget_is_refused(tmp_path):
    path = _previous(tmp_path, max_updates=300)
    with pytest.raises(SystemExit, match="previous.json: entry 'vilbert' at 1.0 is task 'fit' with 300 updates; "
                                         "this study is 'fit' with 1000"):
        low_label.read_previous(path, "fit", 1000)
