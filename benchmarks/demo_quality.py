"""Demo quality: text-only, image-only, vilbert, refnet and refnet_ms on the emoji memes
tasks (a) fit (binary; AUROC/accuracy) and (b) category (9 classes; accuracy), several seeds.

    python benchmarks/demo_quality.py --seeds 0 1 2 [--max-updates 300] [--jobs 2] [--data-dir save/demo/data]

Prints a markdown table of mean ± std over seeds (test split, best validation checkpoint).
Unimodal baselines are refnet with one modality blanked (dataset_config.emoji_memes.ablate).
"""

import argparse
import os
from typing import Dict, List, Tuple

from _runs import CONFIGS, Run, final_metrics, mean_std, run_all

RUNS = {  # name: (model config, extra options)
    "text-only": ("refnet", ["dataset_config.emoji_memes.ablate=image"]),
    "image-only": ("refnet", ["dataset_config.emoji_memes.ablate=text"]),
    "vilbert": ("vilbert", []),
    "refnet": ("refnet", []),
    "refnet_ms": ("refnet_ms", []),
}
TASKS = {
    "fit": [],
    "category": ["dataset_config.emoji_memes.variant=category",
                 "dataset_config.emoji_memes.annotation_dir=emoji_memes/defaults/annotations/category",
                 "training.early_stop.criteria=emoji_memes/accuracy"],
}


def plan(args) -> List[Tuple[str, str, Run]]:
    """(task, run name, Run) for every task x run x seed."""
    runs = []
    for task in args.tasks:
        for name in args.runs:
            model, extra = RUNS[name]
            for seed in args.seeds:
                opts = [f"env.data_dir={os.path.abspath(args.data_dir)}", f"training.seed={seed}",
                        f"training.max_updates={args.max_updates}", *TASKS[task], *extra]
                if task == "category":
                    opts += [f"model_config.{model}.num_labels=9", "evaluation.metrics=['accuracy']"]
                save = os.path.join(os.path.abspath(args.out), f"{task}_{name}_seed{seed}")
                runs.append((task, name, Run(os.path.join(CONFIGS, "demo", f"{model}.yaml"), save, opts)))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-updates", type=int, default=300)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--jobs", type=int, default=1, help="mmf_run processes at once (CPU cores split between them)")
    parser.add_argument("--keep-checkpoints", action="store_true", help="keep every run's checkpoints (~1-2 GB a run)")
    parser.add_argument("--data-dir", default=os.path.join("save", "demo", "data"))
    parser.add_argument("--out", default=os.path.join("save", "bench", "demo_quality"))
    args = parser.parse_args()
    planned = plan(args)
    run_all([run for _, _, run in planned], args.out, args.jobs, args.keep_checkpoints)
    print("\n| task | model | test accuracy | test AUROC |\n|---|---|---|---|")
    for task in args.tasks:
        for name in args.runs:
            scores: Dict[str, List[float]] = {}
            for _, _, run in (p for p in planned if p[:2] == (task, name)):
                for key, value in final_metrics(run.save_dir, "test").items():
                    scores.setdefault(key, []).append(value)
            summary = {k: mean_std(v) for k, v in scores.items()}
            print(f"| {task} | {name} | {summary.get('accuracy', '–')} | {summary.get('roc_auc', '–')} |")


if __name__ == "__main__":
    main()
