"""``mmf_run`` shows training on the console (compat/console_log) and train.log keeps what it had."""

import os
import re

import pytest

from tests import replicas, runner

TIMING = re.compile(r"(time|time_since_start|eta|val_time|ups): [^,]+|Finished run in .*")


def _log_lines(save_dir: str) -> list:
    """train.log without its timestamps and timings (everything else must match exactly)."""
    with open(os.path.join(save_dir, "train.log")) as handle:
        return [TIMING.sub(r"\1: <t>", line.split(" | ", 1)[-1]) for line in handle.read().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console")
    data_dir = str(tmp / "data")
    replicas.hateful_memes(data_dir, sizes=(32, 16, 16))
    config = runner.tiny_config(str(tmp), "hateful_memes", "refnet_ms")
    results = {}
    for name, skip in (("shim", ""), ("rc10", "console_log")):
        save_dir = str(tmp / name)
        result = runner.run_cli("mmf_run", config, data_dir, save_dir, env={"MMF_REFNET_SKIP_SHIMS": skip})
        results[name] = {"stdout": result.stdout, "console": result.stdout + result.stderr, "log": _log_lines(save_dir)}
    return results


def test_console_shows_progress_and_evaluation(runs):
    console = runs["shim"]["console"]
    for update in (2, 4, 6):  # training.log_interval 2 of max_updates 6
        line = next((ln for ln in console.splitlines() if f"progress: {update}/6, train/total_loss: " in ln), None)
        assert line is not None, f"no progress line for update {update}/6 on the console"
        assert re.search(r"time: \S+", line) and re.search(r"time_since_start: \S+", line) and "eta: " in line
    evaluations = [ln for ln in console.splitlines() if re.search(r"progress: \d/6, val/total_loss: ", ln)]
    assert len(evaluations) >= 2  # updates 3 and 6 (evaluation_interval 3)
    assert all(re.search(r"val/hateful_memes/roc_auc: [0-9.]+", ln) for ln in evaluations)
    assert "Starting training..." in console and "Finished run in" in console


def test_console_lines_are_the_log_files_and_rc10_showed_none(runs):
    assert not any("progress: " in ln for ln in runs["rc10"]["console"].splitlines())  # rc10: a silent console
    stdout = [ln for ln in runs["shim"]["stdout"].splitlines() if re.match(r"\d{4}-\d\d-\d\dT", ln)]
    log = set(runs["shim"]["log"])
    assert stdout and all(TIMING.sub(r"\1: <t>", ln.split(" | ", 1)[-1]) in log for ln in stdout)


def test_log_file_is_unchanged(runs):
    assert runs["shim"]["log"] == runs["rc10"]["log"]
    assert any("progress: 6/6, val/total_loss" in ln for ln in runs["shim"]["log"])
