"""Low-label study (paper Tables 3-4, Fig. 6) on the demo's tasks: vilbert, refnet and refnet_ms
at several label fractions, from scratch and from refiner pretraining (Alg. 1: backbone frozen),
with labeled-aware batches, plus ablation rows, several seeds; prints a table (mean ± std over the
seeds of the best validation checkpoint's val and test metrics) and saves a plot like Fig. 6.

    python benchmarks/low_label.py --task category --max-updates 400 --seeds 0 1 2 --jobs 2 \\
        env.data_dir=/work/data/demo training.evaluation_interval=50 training.checkpoint_interval=400

Rows (``--rows``; default: all but the labeled_per_batch sweep):

==================  ==========================================================================
vilbert             MMF's ViLBERT (product fusion), labeled_cross_entropy
refnet              concat fusion + refiner (γ = 0.1 per modality)
refnet_ms           refnet + Multi-Similarity loss (ζ of the demo config); ζ = 0 is refnet
refnet+pre          refnet fine-tuned from refiner pretraining (one pretraining per task and seed)
refnet_ms+pre       refnet_ms fine-tuned from the same pretraining
refnet-gamma0       refnet with γ = 0: the fusion and head change alone, no refiner
refnet-detach       refnet with refiner.detach_targets flipped from the study's setting
refnet_ms-natural   refnet_ms with labeled_per_batch=None (null: rows mixed at random, rc10's way)
refnet_ms-lpb<v>    refnet_ms with labeled_per_batch=<v> (``--lpb-sweep 0.125,0.5``; for the default, on val)
==================  ==========================================================================

Every run's labeled subset follows its seed (label_fraction_seed = training.seed). A run folder is
named after its settings, so rows that share settings share runs, and finished runs are reused
(``--report-only`` prints what exists). Extra MMF options go at the end (after ``--`` when the
option before them takes several values, e.g. ``--seeds 0 1 -- env.data_dir=...``).
"""

import argparse
import json
import os
import statistics
import sys
from typing import Dict, List, NamedTuple, Optional

from _runs import CONFIGS, REPO, Run, final_metrics, finished, run_all
from omegaconf import OmegaConf

DATASET_KEY = "emoji_memes"
TASK_DATA = {  # what selects each task's data (pretraining reads the same training rows, without labels)
    "fit": [],
    "category": ["dataset_config.emoji_memes.variant=category",
                 "dataset_config.emoji_memes.annotation_dir=emoji_memes/defaults/annotations/category"],
}
TASK_METRICS = {"fit": ["roc_auc", "accuracy"], "category": ["accuracy"]}
MAIN_ROWS = ["vilbert", "refnet", "refnet_ms", "refnet+pre", "refnet_ms+pre"]
ABLATION_ROWS = ["refnet-gamma0", "refnet-detach", "refnet_ms-natural"]


class Condition(NamedTuple):
    model: str
    start: str                  # scratch | pretrained
    labeled_per_batch: str      # dataset_config.<d>.labeled_per_batch (fractions < 1 only)
    detach: Optional[bool]      # refiner.detach_targets (refnet models)
    gamma: Optional[float]      # refiner.weights.{text,image} (refnet models)

    def folder(self, fraction: float, seed: int) -> str:
        name = f"{self.model}_{self.start}"
        if fraction < 1:
            name += f"_lpb{self.labeled_per_batch}"
        if self.detach is not None:
            name += f"_detach{int(self.detach)}_g{self.gamma:g}"
        return f"{name}_f{fraction:g}_seed{seed}"


def dataset_defaults() -> Dict:
    path = os.path.join(REPO, "mmf_refnet", "configs", "datasets", f"{DATASET_KEY}.yaml")
    return OmegaConf.to_container(OmegaConf.load(path).dataset_config[DATASET_KEY])


def model_defaults() -> Dict:
    return OmegaConf.to_container(OmegaConf.load(os.path.join(REPO, "mmf_refnet", "configs", "models", "refnet_head.yaml"))
                                  .model_config.refnet)


def conditions(args) -> Dict[str, Condition]:
    """Every row's settings; the study's defaults are the YAML defaults unless given."""
    lpb, detach = str(args.labeled_per_batch), args.detach_targets
    gamma = float(model_defaults()["refiner"]["weights"]["text"])

    def refnet(model="refnet", start="scratch", **changes):
        return Condition(model, start, lpb, detach, gamma)._replace(**changes)

    rows = {
        "vilbert": Condition("vilbert", "scratch", lpb, None, None),
        "refnet": refnet(),
        "refnet_ms": refnet("refnet_ms"),
        "refnet+pre": refnet(start="pretrained"),
        "refnet_ms+pre": refnet("refnet_ms", "pretrained"),
        "refnet-gamma0": refnet(gamma=0.0),
        "refnet-detach": refnet(detach=not detach),
        "refnet_ms-natural": refnet("refnet_ms", labeled_per_batch="None"),  # rc10's command line: None is null
    }
    for value in args.lpb_sweep:
        rows[f"refnet_ms-lpb{value}"] = refnet("refnet_ms", labeled_per_batch=str(value))
    return rows


def task_options(task: str, model: str) -> List[str]:
    opts = list(TASK_DATA[task])
    if task == "category":
        opts += ["training.early_stop.criteria=emoji_memes/accuracy", f"model_config.{model}.num_labels=9",
                 "evaluation.metrics=['accuracy']"]
    return opts


def pretrain_run(args, seed: int) -> Run:
    """Refiner pretraining (Alg. 1: backbone frozen) on the task's training rows without labels."""
    save = os.path.join(args.out, f"pretrain_seed{seed}")
    opts = [f"training.seed={seed}", f"training.max_updates={args.pretrain_updates}", *TASK_DATA[args.task],
            *args.opts]
    return Run(os.path.join(CONFIGS, "demo", "pretrain.yaml"), save, opts, keep=("refnet_final.pth",))


def finetune_run(args, condition: Condition, fraction: float, seed: int) -> Run:
    model = condition.model
    opts = [f"training.seed={seed}", f"training.max_updates={args.max_updates}", *task_options(args.task, model),
            f"dataset_config.{DATASET_KEY}.label_fraction={fraction}",
            f"dataset_config.{DATASET_KEY}.label_fraction_seed={seed}"]
    if fraction < 1:
        opts.append(f"dataset_config.{DATASET_KEY}.labeled_per_batch={condition.labeled_per_batch}")
    if condition.detach is not None:
        opts += [f"model_config.{model}.refiner.detach_targets={condition.detach}",
                 f"model_config.{model}.refiner.weights.text={condition.gamma:g}",
                 f"model_config.{model}.refiner.weights.image={condition.gamma:g}"]
    if condition.start == "pretrained":
        weights = os.path.join(pretrain_run(args, seed).save_dir, "refnet_final.pth")
        opts += ["checkpoint.resume_pretrained=True", f"checkpoint.resume_file={weights}"]
    save = os.path.join(args.out, condition.folder(fraction, seed))
    return Run(os.path.join(CONFIGS, "demo", f"{model}.yaml"), save, opts + list(args.opts))


def plan(args):
    """{(row, fraction, seed): Run}, seed-major (an interrupted study has every cell at fewer seeds)
    and the pretraining runs each seed's pretrained rows wait for."""
    rows = conditions(args)
    grid = {}
    for seed in args.seeds:
        for fraction in args.fractions:
            for row in args.rows:
                if row.endswith("-natural") or "-lpb" in row:
                    if fraction == 1:
                        continue  # every row is labeled: no batch composition to change
                grid[row, fraction, seed] = finetune_run(args, rows[row], fraction, seed)
    pretrained = {seed for (row, _, seed) in grid if rows[row].start == "pretrained"}
    pretraining = [pretrain_run(args, seed) for seed in args.seeds if seed in pretrained]
    needs = {run.save_dir: [pretrain_run(args, seed).save_dir]
             for (row, _, seed), run in grid.items() if rows[row].start == "pretrained"}
    return grid, pretraining, needs


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="category", choices=list(TASK_DATA))
    parser.add_argument("--rows", nargs="+", default=MAIN_ROWS + ABLATION_ROWS)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.1, 0.2, 1.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-updates", type=int, default=400)
    parser.add_argument("--pretrain-updates", type=int, help="refiner pretraining updates (default: --max-updates)")
    defaults = dataset_defaults()
    parser.add_argument("--labeled-per-batch", default=defaults["labeled_per_batch"],
                        help="the study's setting (default: the dataset default)")
    parser.add_argument("--lpb-sweep", type=lambda text: [v for v in text.split(",") if v], default=[],
                        help="comma-separated labeled_per_batch values: a refnet_ms row for each")
    parser.add_argument("--detach-targets", type=lambda v: v.lower() in ("1", "true"),
                        default=model_defaults()["refiner"]["detach_targets"])
    parser.add_argument("--jobs", type=int, default=1, help="mmf_run processes at once (CPU cores split between them)")
    parser.add_argument("--keep-checkpoints", action="store_true", help="keep every run's checkpoints (~1-2 GB a run)")
    parser.add_argument("--out", help="default: save/bench/low_label/<task>")
    parser.add_argument("--report-only", action="store_true", help="no training: table and plot of the finished runs")
    parser.add_argument("--previous", help="results JSON of an earlier study of the same task and budget: its cells "
                        "fill the table and plot where this study has no finished run")
    parser.add_argument("opts", nargs="*", help="extra MMF options")
    args = parser.parse_args(argv)
    args.pretrain_updates = args.pretrain_updates or args.max_updates
    args.out = os.path.abspath(args.out or os.path.join("save", "bench", "low_label", args.task))
    args.rows += [f"refnet_ms-lpb{value}" for value in args.lpb_sweep if f"refnet_ms-lpb{value}" not in args.rows]
    unknown = sorted(set(args.rows) - set(conditions(args)))
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {sorted(conditions(args))}")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    grid, pretraining, needs = plan(args)
    if not args.report_only:
        run_all(pretraining + list(grid.values()), args.out, args.jobs, args.keep_checkpoints, needs)
    report(args, grid)


def report(args, grid) -> None:
    """Table (mean ± std over the seeds that finished), results.json and the plot."""
    os.makedirs(args.out, exist_ok=True)
    results = []
    for row in args.rows:
        for fraction in sorted(args.fractions):
            runs = [(seed, grid[row, fraction, seed]) for seed in args.seeds if (row, fraction, seed) in grid]
            done = [(seed, run) for seed, run in runs if finished(run)]
            if not done:
                continue
            scores = {}
            for _, run in done:
                for split in ("val", "test"):
                    for name, value in final_metrics(run.save_dir, split).items():
                        scores.setdefault(f"{split}/{name}", []).append(value)
            results.append({"task": args.task, "row": row, "fraction": fraction, "seeds": [seed for seed, _ in done],
                            "max_updates": args.max_updates, "scores": scores})
    if args.previous:
        results = merge_previous(results, read_previous(args.previous, args.task, args.max_updates), args.rows)
    with open(os.path.join(args.out, "results.json"), "w") as handle:
        json.dump(results, handle, indent=1)
    columns = [f"{split}/{name}" for name in TASK_METRICS[args.task] for split in ("val", "test")]
    print(f"\n{args.task}, {args.max_updates} updates\n")
    print("| row | labels | " + " | ".join(columns) + " | seeds |")
    print("|---|---|" + "---|" * len(columns) + "---|")
    for r in results:
        cells = [format_stats(stats(r, c)) for c in columns]
        print(f"| {r['row']} | {r['fraction']:.0%} | " + " | ".join(cells) + f" | {len(r['seeds'])} |")
    plot(args, results, os.path.join(args.out, f"low_label_{args.task}.png"))


def read_previous(path: str, task: str, max_updates: int) -> List[Dict]:
    """An earlier study's cells: entries as results.json writes them (per-seed ``scores``), or with a
    ``summary`` of [mean, std] per metric where only the summary was kept."""
    with open(path) as handle:
        entries = json.load(handle)
    for entry in entries:
        where = f"{path}: entry {entry.get('row')!r} at {entry.get('fraction')}"
        if entry.get("task") != task or entry.get("max_updates") != max_updates:
            raise SystemExit(f"{where} is task {entry.get('task')!r} with {entry.get('max_updates')} updates; "
                             f"this study is {task!r} with {max_updates}")
        if not ("scores" in entry or "summary" in entry) or not entry.get("seeds"):
            raise SystemExit(f"{where} has no 'seeds' or neither 'scores' nor 'summary'")
    return entries


def merge_previous(results: List[Dict], previous: List[Dict], rows: List[str]) -> List[Dict]:
    """This study's cells first; the earlier study's fill the cells this one has not run, in row order."""
    have = {(r["row"], r["fraction"]) for r in results}
    merged = results + [p for p in previous if (p["row"], p["fraction"]) not in have]
    order = {row: i for i, row in enumerate(rows)}
    return sorted(merged, key=lambda r: (order.get(r["row"], len(order)), r["fraction"]))


def stats(entry: Dict, column: str) -> Optional[tuple]:
    """(mean, std with ddof 1, number of seeds) of one cell's metric, or None where it was not measured."""
    if column in entry.get("scores", {}):
        values = entry["scores"][column]
        return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values)
    if column in entry.get("summary", {}):
        mean, std = entry["summary"][column]
        return mean, std, len(entry["seeds"])
    return None


def format_stats(cell: Optional[tuple]) -> str:
    if cell is None:
        return "–"
    mean, std, seeds = cell
    return f"{mean:.3f}" if seeds == 1 else f"{mean:.3f} ± {std:.3f}"


def plot(args, results, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = f"test/{TASK_METRICS[args.task][0]}"
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    for row in args.rows:
        points = sorted((r for r in results if r["row"] == row and stats(r, metric)), key=lambda r: r["fraction"])
        if not points:
            continue
        cells = [stats(r, metric) for r in points]
        axis.errorbar([r["fraction"] * 100 for r in points], [mean for mean, _, _ in cells],
                      yerr=[std for _, std, _ in cells],
                      marker="o", capsize=3, label=row, linestyle="-" if row in MAIN_ROWS else "--")
    axis.set_xscale("log")
    axis.set_xticks([5, 10, 20, 100], ["5", "10", "20", "100"])
    axis.set_xlabel("labeled training rows (%)")
    axis.set_ylabel(f"{metric} (mean ± std over seeds)")
    axis.set_title(f"demo {args.task}, {args.max_updates} updates")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120, metadata={"Software": None})
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
