"""Wall time of the README's two first commands from a fresh clone: the tests (``bash scripts/test.sh``)
and the demo (``bash scripts/setup.sh && .venv/bin/refnet demo``), with their parts.

    python benchmarks/feedback_time.py [--skip-suite] [--skip-demo] [--keep] [--json out.json]

Each command runs in its own fresh ``git clone`` of this repository's HEAD (uncommitted changes are not
in it) under a temporary folder, so ``scripts/setup.sh`` builds the venv as on a new machine (with this
machine's pip cache). Prints each command's wall time against its goal (suite 8 min, demo 5 min, set-up
included) and their parts: set-up, pytest's own time and its slowest tests; the demo's data preparation
(feature extraction), training with evaluation, and predictions (from its log's timestamps). Asserts
nothing; run it on an otherwise idle machine.
"""

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOALS = {"suite": 8 * 60, "demo": 5 * 60}
STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d) \| INFO \| mmf\.train : (.*)$")


def fresh_clone(parent: str, name: str) -> str:
    target = os.path.join(parent, name)
    subprocess.run(["git", "clone", "-q", REPO, target], check=True)
    return target


def timed(command: str, cwd: str, env=None) -> tuple:
    start = time.monotonic()
    result = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - start
    if result.returncode != 0:
        sys.exit(f"`{command}` failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return seconds, result.stdout + result.stderr


def suite(parent: str) -> dict:
    clone = fresh_clone(parent, "suite")
    seconds, output = timed("bash scripts/test.sh -p no:cacheprovider", clone)
    pytest_seconds = float(re.findall(r" in ([0-9.]+)s", output)[-1])
    slowest = re.findall(r"^([0-9.]+)s (call|setup|teardown) +(.+)$", output, flags=re.M)[:10]
    summary = re.findall(r"^=* ?(\d+ passed.*?) in [0-9.]+s", output, flags=re.M)
    return {"wall_s": seconds, "pytest_s": pytest_seconds, "setup_and_collection_s": seconds - pytest_seconds,
            "result": summary[-1] if summary else "?",
            "slowest": [{"seconds": float(s), "phase": phase, "test": name} for s, phase, name in slowest]}


def _log_times(train_log: str) -> dict:
    """Seconds between the markers of the demo's mmf_run log (dataset build with feature extraction,
    training with its evaluations and checkpoints, the final evaluations)."""
    marks = {}
    with open(train_log) as handle:
        for line in handle:
            found = STAMP.match(line.rstrip("\n"))
            if not found:
                continue
            at = datetime.datetime.fromisoformat(found.group(1)).timestamp()
            message = found.group(2)
            marks.setdefault("start", at)
            if message.startswith("Starting training"):
                marks.setdefault("training", at)
            if message.startswith("Finished run"):
                marks["finished"] = at
    return {"datasets_and_features_s": marks["training"] - marks["start"],
            "training_and_evaluation_s": marks["finished"] - marks["training"]}


def demo(parent: str) -> dict:
    clone = fresh_clone(parent, "demo")
    setup_seconds, _ = timed("bash scripts/setup.sh", clone)
    demo_seconds, output = timed(".venv/bin/refnet demo", clone)
    parts = _log_times(os.path.join(clone, "save", "demo", "refnet_ms", "train.log"))
    test = re.search(r"test: +(.*)", output)
    return {"wall_s": setup_seconds + demo_seconds, "setup_s": setup_seconds, "refnet_demo_s": demo_seconds, **parts,
            "startup_and_predictions_s": demo_seconds - sum(parts.values()),
            "test_metrics": test.group(1).strip() if test else "?"}


def report(name: str, result: dict) -> None:
    goal = GOALS[name]
    print(f"\n{name}: {result['wall_s']:.0f} s wall ({result['wall_s'] / 60:.1f} min), goal {goal / 60:.0f} min: "
          f"{result['wall_s'] / goal:.2f} of it")
    for key, value in result.items():
        if key.endswith("_s") and key != "wall_s":
            print(f"  {key[:-2].replace('_', ' '):<28s} {value:7.1f} s")
        elif key in ("result", "test_metrics"):
            print(f"  {key.replace('_', ' '):<28s} {value}")
    for row in result.get("slowest", []):
        print(f"  {row['seconds']:7.1f} s {row['phase']:<8s} {row['test'][:110]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-suite", action="store_true")
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the clones (printed)")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f}, HEAD "
          f"{subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=REPO, capture_output=True, text=True).stdout.strip()}")
    parent = tempfile.mkdtemp(prefix="feedback-time-")
    results = {}
    try:
        if not args.skip_suite:
            results["suite"] = suite(parent)
            report("suite", results["suite"])
        if not args.skip_demo:
            results["demo"] = demo(parent)
            report("demo", results["demo"])
    finally:
        if args.keep:
            print(f"\nclones kept in {parent}")
        else:
            shutil.rmtree(parent, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
