"""Shared helpers of the quality benchmarks: run mmf_run (several at once), read final metrics, summarise seeds."""

import json
import os
import shutil
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, NamedTuple, Optional, Tuple

from mmf_refnet.train_log import last_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "projects", "refnet", "configs")
OPTIONS_FILE = "bench_options.json"  # what a finished run was started with (reused only if equal)


class Run(NamedTuple):
    config: str
    save_dir: str
    opts: List[str]
    keep: Tuple[str, ...] = ()  # weight files a later run needs (e.g. a pretraining's refnet_final.pth)


def drop_weights(run: Run) -> None:
    """Delete a finished run's checkpoints (~0.4 GB each for the demo model), keeping ``run.keep``.

    Logs, config and metrics stay; dozens of benchmark runs would otherwise fill the disk.
    """
    shutil.rmtree(os.path.join(run.save_dir, "models"), ignore_errors=True)
    for name in os.listdir(run.save_dir):
        if name.endswith((".ckpt", ".pth")) and name not in run.keep:
            os.remove(os.path.join(run.save_dir, name))


def finished(run: Run) -> bool:
    """The run already completed with these exact options (the options file is written on success).

    Only the config *path* and options are compared, not the YAML's contents: after editing a
    config, delete the benchmark's --out folder (or the affected run folders).
    """
    try:
        with open(os.path.join(run.save_dir, OPTIONS_FILE)) as handle:
            return json.load(handle) == [run.config, *run.opts]
    except (OSError, ValueError):
        return False


def mmf_run(run: Run, log_dir: str, threads: int = 0, keep_checkpoints: bool = False) -> None:
    """One mmf_run subprocess (log in ``log_dir``); skipped when ``finished``.

    ``threads``: OMP threads (0: torch's default). Checkpoints are deleted afterwards unless kept.
    """
    if finished(run):
        print(f"reusing {run.save_dir}", flush=True)
        return
    script = shutil.which("mmf_run", path=os.path.dirname(sys.executable)) or "mmf_run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    os.makedirs(log_dir, exist_ok=True)
    with open(os.path.join(log_dir, os.path.basename(run.save_dir) + ".out"), "w") as out:
        result = subprocess.run([script, f"config={run.config}", f"env.save_dir={run.save_dir}", *run.opts],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"mmf_run failed for {run.save_dir}; see {out.name}")
    if not keep_checkpoints:
        drop_weights(run)
    with open(os.path.join(run.save_dir, OPTIONS_FILE), "w") as handle:
        json.dump([run.config, *run.opts], handle)


def run_all(runs: List[Run], log_dir: str, jobs: int = 1, keep_checkpoints: bool = False,
            needs: Optional[Dict[str, List[str]]] = None) -> None:
    """Run every ``Run`` in order, ``jobs`` at a time, the CPU cores split evenly between them.

    ``needs`` maps a run's save_dir to the save_dirs of earlier runs it must wait for.
    On a 2-core CPU two single-threaded runs finish ~1.2x sooner than two two-threaded
    runs one after the other (small matrices scale poorly over threads).
    """
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else 0
    futures = {}

    def start(run: Run) -> None:
        for earlier in (needs or {}).get(run.save_dir, []):
            futures[earlier].result()  # submitted before this run, so already running or done
        mmf_run(run, log_dir, threads, keep_checkpoints)

    failures = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for run in runs:
            futures[run.save_dir] = pool.submit(start, run)
        for future in list(futures.values()):
            try:
                future.result()
            except RuntimeError as error:  # the other runs go on; all failures are reported at the end
                print(error, flush=True)
                failures.append(str(error))
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(runs)} runs failed:\n" + "\n".join(failures))


def final_metrics(save_dir: str, split: str) -> Dict[str, float]:
    """The last logged '<split>/...' accuracy, AUROC and F1 (for val: those of the best checkpoint, logged last)."""
    metrics = last_metrics(save_dir, split)
    if not metrics:
        raise RuntimeError(f"no {split} metrics in {save_dir}/train.log")
    return {name: value for name, value in metrics.items() if name in ("accuracy", "roc_auc", "binary_f1")}


def mean_std(values: List[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"
