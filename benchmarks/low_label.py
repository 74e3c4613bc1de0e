"""Low-label study (paper Tables 3-4, Fig. 6): vilbert, refnet and refnet_ms at several label
fractions, with and without refiner pretraining, several seeds; prints a table (mean ± std of
test AUROC and accuracy) and saves a plot like Fig. 6.

    python benchmarks/low_label.py [--dataset demo] [--fractions 0.05 0.1 0.2 1.0] [--seeds 0 1 2]

``--dataset`` is a folder of projects/refnet/configs (demo, hateful_memes, mmimdb, visual_entailment);
extra MMF options (e.g. env.data_dir=...) go after ``--``.
"""

import argparse
import json
import os

from _runs import CONFIGS, final_metrics, mean_std, mmf_run

DATASET_KEYS = {"demo": "emoji_memes"}


def pretrain(args, extra) -> str:
    save = os.path.join(args.out, "pretrain")
    if not os.path.exists(os.path.join(save, "refnet_final.pth")):
        mmf_run(os.path.join(CONFIGS, args.dataset, "pretrain.yaml"), save,
                [f"training.max_updates={args.max_updates}", *extra], args.out)
    return os.path.join(save, "refnet_final.pth")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="demo")
    parser.add_argument("--models", nargs="+", default=["vilbert", "refnet", "refnet_ms"])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.1, 0.2, 1.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-updates", type=int, default=300)
    parser.add_argument("--no-pretraining", action="store_true")
    parser.add_argument("--out", default=os.path.join("save", "bench", "low_label"))
    parser.add_argument("opts", nargs="*", help="extra MMF options")
    args = parser.parse_args()
    key = DATASET_KEYS.get(args.dataset, args.dataset)
    pretrained = None if args.no_pretraining else pretrain(args, args.opts)
    results = []
    for model in args.models:
        for start in ["scratch"] + ([] if pretrained is None or model == "vilbert" else ["pretrained"]):
            for fraction in args.fractions:
                scores = {}
                for seed in args.seeds:
                    save = os.path.join(args.out, f"{model}_{start}_f{fraction}_seed{seed}")
                    opts = [f"training.seed={seed}", f"training.max_updates={args.max_updates}",
                            f"dataset_config.{key}.label_fraction={fraction}",
                            f"dataset_config.{key}.label_fraction_seed={seed}", *args.opts]
                    if start == "pretrained":
                        opts += ["checkpoint.resume_pretrained=True", f"checkpoint.resume_file={pretrained}"]
                    mmf_run(os.path.join(CONFIGS, args.dataset, f"{model}.yaml"), save, opts, args.out)
                    for name, value in final_metrics(save, "test").items():
                        scores.setdefault(name, []).append(value)
                results.append({"model": model, "start": start, "fraction": fraction, "scores": scores})
                print(model, start, fraction, {k: mean_std(v) for k, v in scores.items()}, flush=True)
    with open(os.path.join(args.out, "results.json"), "w") as handle:
        json.dump(results, handle, indent=1)
    print("\n| model | start | labels | test AUROC | test accuracy |\n|---|---|---|---|---|")
    for r in results:
        s = r["scores"]
        print(f"| {r['model']} | {r['start']} | {r['fraction']:.0%} | {mean_std(s.get('roc_auc', [0]))} | "
              f"{mean_std(s.get('accuracy', [0]))} |")
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
