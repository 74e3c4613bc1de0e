"""Shared helpers of the quality benchmarks: run mmf_run, read its final metrics, summarise seeds."""

import os
import re
import shutil
import statistics
import subprocess
import sys
from typing import Dict, List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "projects", "refnet", "configs")


def mmf_run(config: str, save_dir: str, opts: List[str], log_dir: str) -> None:
    script = shutil.which("mmf_run", path=os.path.dirname(sys.executable)) or "mmf_run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    os.makedirs(log_dir, exist_ok=True)
    with open(os.path.join(log_dir, os.path.basename(save_dir) + ".out"), "w") as out:
        result = subprocess.run([script, f"config={config}", f"env.save_dir={save_dir}", *opts], stdout=out,
                                stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"mmf_run failed for {save_dir}; see {out.name}")


def final_metrics(save_dir: str, split: str) -> Dict[str, float]:
    """The last logged '<split>/...' metrics (for val: those of the best checkpoint, logged last)."""
    with open(os.path.join(save_dir, "train.log")) as handle:
        lines = [line for line in handle if "progress:" in line and f"{split}/" in line]
    if not lines:
        raise RuntimeError(f"no {split} metrics in {save_dir}/train.log")
    return {k: float(v) for k, v in re.findall(rf"{split}/\w+/(accuracy|roc_auc|binary_f1): ([0-9.]+)", lines[-1])}


def mean_std(values: List[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"
