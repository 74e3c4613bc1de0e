"""Does each ReFNet backbone learn a label that only the interaction of text and image predicts?

    python benchmarks/interaction.py [--models refnet refnet_ms visual_bert_refnet mmbt_refnet] [--seeds 1]

The Hateful Memes replica of the tests with label = text bit XOR image bit (each modality alone is
at chance: 0.5), tiny backbones (tests/runner.py), 200 updates of unmodified ``mmf_run`` per model
and seed on the CPU; prints the best validation accuracy and AUROC. Prints, never asserts (the
test ``test_refnet_learns_a_label_only_the_interaction_predicts`` asserts ≥ 0.85 / 0.9).
"""

import argparse
import os
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from mmf_refnet.train_log import last_metrics  # noqa: E402
from tests import replicas, runner  # noqa: E402

SCHEDULE = {"training": {"max_updates": 200, "evaluation_interval": 100, "checkpoint_interval": 100,
                         "log_interval": 100, "batch_size": 32}, "optimizer": {"params": {"lr": 2.0e-3}}}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--models", nargs="+", default=list(runner.REFNET_MODELS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="refnet_interaction_") as work:
        data = os.path.join(work, "data")
        replicas.hateful_memes(data, sizes=(256, 64, 16), rule="xor")
        print("| model | seed | val accuracy | val AUROC |\n|---|---|---|---|")
        for model in args.models:
            for seed in args.seeds:
                run = os.path.join(work, f"{model}_{seed}")
                overrides = {**SCHEDULE, "training": {**SCHEDULE["training"], "seed": seed}}
                runner.run_cli("mmf_run", runner.tiny_config(run, "hateful_memes", model, overrides), data,
                               os.path.join(run, "save"))
                metrics = last_metrics(os.path.join(run, "save"), "val")
                print(f"| {model} | {seed} | {metrics['accuracy']:.3f} | {metrics['roc_auc']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
