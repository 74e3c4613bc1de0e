"""Training throughput of 1 and N processes at the demo's size: samples per second and their ratio.

    python benchmarks/scaling.py [--processes 2] [--updates 120] [--data-dir save/demo/data] [--device cpu]

Runs the demo config (refnet_ms; its model, batch 32 as the global batch, bf16 where the CPU has it)
with ``mmf_run`` in one process and under ``torchrun --nproc_per_node=N`` (gloo on the CPU, nccl on
GPUs), no evaluation, and times the updates after the first ``log_interval`` from ``train.log`` (start-up,
data loading and the first steps excluded). Prints samples/s of each and N-process ÷ 1-process. On a
2-core CPU one process uses both cores and N processes share them: the ratio measures the overhead
of the distributed step (gradient all-reduce, the loss weights' all-reduce, the Multi-Similarity loss's
all-gather), not a speed-up. Prepares the demo data first if it is missing (``refnet prepare-demo``).
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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "projects", "refnet", "configs", "demo", "refnet_ms.yaml")
PROGRESS = re.compile(r"^(\S+) \| INFO \| mmf\.train : progress: (\d+)/\d+, train")


def script(name: str) -> str:
    return shutil.which(name, path=os.path.dirname(sys.executable)) or name


def samples_per_second(train_log: str, batch_size: int) -> float:
    """Global samples per second between the first and the last progress line of the training."""
    marks = []
    with open(train_log) as handle:
        for line in handle:
            found = PROGRESS.match(line)
            if found:
                marks.append((datetime.datetime.fromisoformat(found.group(1)).timestamp(), int(found.group(2))))
    (start, first), (end, last) = marks[0], marks[-1]
    return (last - first) * batch_size / max(end - start, 1e-9)


def run(processes: int, args, save: str) -> float:
    opts = [f"config={CONFIG}", f"env.data_dir={os.path.abspath(args.data_dir)}", f"env.save_dir={save}",
            "run_type=train", f"training.max_updates={args.updates}", f"training.log_interval={args.log_interval}",
            f"training.checkpoint_interval={args.updates * 10}", f"training.evaluation_interval={args.updates * 10}",
            f"training.device={args.device}", "training.early_stop.enabled=False"]
    command = [script("mmf_run"), *opts]
    if processes > 1:
        command = [script("torchrun"), f"--nproc_per_node={processes}", *command]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return samples_per_second(os.path.join(save, "train.log"), args.batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--updates", type=int, default=120)
    parser.add_argument("--log-interval", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32, help="the demo config's training.batch_size")
    parser.add_argument("--data-dir", default=os.path.join("save", "demo", "data"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if not os.path.isdir(os.path.join(args.data_dir, "datasets", "emoji_memes")):
        subprocess.run([script("refnet"), "prepare-demo", "--data-dir", args.data_dir], check=True)
    print(f"{os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f}, device {args.device}")
    work = tempfile.mkdtemp(prefix="scaling-")
    try:
        one = run(1, args, os.path.join(work, "one"))
        many = run(args.processes, args, os.path.join(work, "many"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"1 process: {one:.1f} samples/s; {args.processes} processes: {many:.1f} samples/s; "
          f"ratio {many / one:.2f} (global batch {args.batch_size}, {args.updates} updates)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"one": one, "many": many, "processes": args.processes, "ratio": many / one}, handle)


if __name__ == "__main__":
    main()
