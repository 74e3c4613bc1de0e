"""One rank of a distributed test run: ``python tests/distributed_harness.py PLAN.json`` on every
rank (torchrun, or forked ranks with torchrun's environment: RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT).

PLAN is a list of runs, each ``{"script": "mmf_run" | "mmf_predict", "opts": [...]}``: every
rank runs them in order, in this process (the console scripts' function, ``mmf_cli.run.run``;
tests/inprocess_run.py), so that a dozen distributed runs cost one process start per rank. The
process group made by the first run serves the others. Per run, each rank writes
``<env.save_dir>/rank<r>.json``: the ids of the training rows of every batch it trained on, in
order, and the run's exit status and output.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests import inprocess_run  # noqa: E402  (imports mmf_refnet: the shims, as the autoload hook would)


def _record_training_ids(sink: list) -> None:
    from mmf.trainers.base_trainer import BaseTrainer

    if getattr(BaseTrainer._forward_pass, "_records", None) is not None:
        BaseTrainer._forward_pass._records[:] = [sink]
        return
    original = BaseTrainer._forward_pass
    records = [sink]

    def _forward_pass(self, batch):
        if self.model.training and "id" in batch:
            records[0].append([int(value) for value in batch["id"].view(-1).tolist()])
        return original(self, batch)

    _forward_pass._records = records
    BaseTrainer._forward_pass = _forward_pass


def main(plan_path: str) -> None:
    with open(plan_path) as handle:
        plan = json.load(handle)
    rank = int(os.environ["RANK"])
    for run in plan:
        batches = []
        _record_training_ids(batches)
        result = inprocess_run.run(run["script"], run["opts"], dict(os.environ))
        save_dir = next(opt.split("=", 1)[1] for opt in run["opts"] if opt.startswith("env.save_dir="))
        os.makedirs(save_dir, exist_ok=True)
        with open(os.path.join(save_dir, f"rank{rank}.json"), "w") as handle:
            json.dump({"returncode": result.returncode, "batches": batches,
                       "output": (result.stdout + result.stderr)[-8000:]}, handle)


if __name__ == "__main__":
    main(sys.argv[1])
