"""Low-label study (paper Tables 3-4, Fig. 6): vilbert, refnet and refnet_ms at several label
fractions, with and without refiner pretraining, several seeds; prints a table (mean ± std of
test AUROC and accuracy) and saves a plot like Fig. 6.

    python benchmarks/low_label.py [--dataset demo] [--fractions 0.05 0.1 0.2 1.0] [--seeds 0 1 2] [--jobs 2]

``--dataset`` is a folder of projects/refnet/configs (demo, hateful_memes, mmimdb, visual_entailment);
extra MMF options (e.g. env.data_dir=...) go after ``--``.
"""

import argparse
import json
import os

from _runs import CONFIGS, Run, final_metrics, finished, mean_std, run_all

DATASET_KEYS = {"demo": "emoji_memes"}


def pretrain_run(args, seed: int) -> Run:
    """Refiner pretraining (Alg. 1) on the training set without labels, one per seed."""
    save = os.path.join(args.out, f"pretrain_seed{seed}")
    opts = [f"training.seed={seed}", f"training.max_updates={args.max_updates}", *args.opts]
    return Run(os.path.join(CONFIGS, args.dataset, "pretrain.yaml"), save, opts, keep=("refnet_final.pth",))


def finetune_run(args, key: str, model: str, start: str, fraction: float, seed: int) -> Run:
    save = os.path.join(args.out, f"{model}_{start}_f{fraction}_seed{seed}")
    opts = [f"training.seed={seed}", f"training.max_updates={args.max_updates}",
            f"dataset_config.{key}.label_fraction={fraction}", f"dataset_config.{key}.label_fraction_seed={seed}",
            *args.opts]
    if start == "pretrained":
        weights = os.path.join(pretrain_run(args, seed).save_dir, "refnet_final.pth")
        opts += ["checkpoint.resume_pretrained=True", f"checkpoint.resume_file={weights}"]
    return Run(os.path.join(CONFIGS, args.dataset, f"{model}.yaml"), save, opts)


def conditions(args):
    """(model, start) pairs: every model from scratch; refnet models also from pretraining."""
    for model in args.models:
        yield model, "scratch"
        if not args.no_pretraining and model != "vilbert":
            yield model, "pretrained"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="demo")
    parser.add_argument("--models", nargs="+", default=["vilbert", "refnet", "refnet_ms"])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.1, 0.2, 1.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-updates", type=int, default=300)
    parser.add_argument("--no-pretraining", action="store_true")
    parser.add_argument("--jobs", type=int, default=1, help="mmf_run processes at once (CPU cores split between them)")
    parser.add_argument("--keep-checkpoints", action="store_true", help="keep every run's checkpoints (~1-2 GB a run)")
    parser.add_argument("--out", default=os.path.join("save", "bench", "low_label"))
    parser.add_argument("--report-only", action="store_true", help="no training: table and plot of the finished runs")
    parser.add_argument("opts", nargs="*", help="extra MMF options")
    args = parser.parse_args()
    args.out = os.path.abspath(args.out)
    key = DATASET_KEYS.get(args.dataset, args.dataset)
    # fraction-major order, so an interrupted study has whole rows (--report-only prints them)
    grid = {(model, start, fraction, seed): finetune_run(args, key, model, start, fraction, seed)
            for fraction in args.fractions for model, start in conditions(args) for seed in args.seeds}
    pretraining = [] if args.no_pretraining else [pretrain_run(args, seed) for seed in args.seeds]
    needs = {run.save_dir: [pretrain_run(args, seed).save_dir]
             for (_, start, _, seed), run in grid.items() if start == "pretrained"}
    if not args.report_only:
        run_all(pretraining + list(grid.values()), args.out, args.jobs, args.keep_checkpoints, needs)
    report(args, grid)


def report(args, grid) -> None:
    """Table (mean ± std over the seeds that finished), results.json and the plot."""
    os.makedirs(args.out, exist_ok=True)
    results = []
    for model, start in conditions(args):
        for fraction in sorted(args.fractions):
            scores, seeds = {}, []
            for seed in args.seeds:
                run = grid[model, start, fraction, seed]
                if not finished(run):
                    continue
                seeds.append(seed)
                for name, value in final_metrics(run.save_dir, "test").items():
                    scores.setdefault(name, []).append(value)
            if seeds:
                results.append({"model": model, "start": start, "fraction": fraction, "seeds": seeds,
                                "max_updates": args.max_updates, "scores": scores})
    with open(os.path.join(args.out, "results.json"), "w") as handle:
        json.dump(results, handle, indent=1)
    print("\n| model | start | labels | test AUROC | test accuracy | seeds |\n|---|---|---|---|---|---|")
    for r in results:
        s = r["scores"]
        print(f"| {r['model']} | {r['start']} | {r['fraction']:.0%} | {mean_std(s.get('roc_auc', [0]))} | "
              f"{mean_std(s.get('accuracy', [0]))} | {len(r['seeds'])} |")
    plot(results, os.path.join(args.out, "low_label.png"))


def plot(results, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axis = plt.subplots(figsize=(6, 4))
    for name in sorted({(r["model"], r["start"]) for r in results}):
        rows = sorted((r for r in results if (r["model"], r["start"]) == name), key=lambda r: r["fraction"])
        xs = [r["fraction"] * 100 for r in rows]
        values = [r["scores"].get("roc_auc") or r["scores"].get("accuracy") for r in rows]
        axis.errorbar(xs, [np.mean(v) for v in values], yerr=[np.std(v) for v in values], marker="o",
                      capsize=3, label=f"{name[0]} ({name[1]})")
    axis.set_xscale("log")
    axis.set_xlabel("labeled training data (%)")
    axis.set_ylabel("test AUROC (accuracy if no AUROC)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120, metadata={"Software": None})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
