"""Training-step time of ``vilbert`` and ``refnet_ms``: rc10's stock step vs refnet_trainer's.

    python benchmarks/train_step.py                      # CPU: --size tiny
    python benchmarks/train_step.py --size demo --amp auto   # CPU: the demo's model and setting
    python benchmarks/train_step.py --device cuda --size base --compile reduce-overhead --json step.json

For each model and recipe (see benchmarks/_common.py: ``rc10`` = fp32 + anomaly
detection + numpy input prep + default AdamW; ``refnet`` = the trainer's
defaults: fp32 with TF32 (``--amp`` to change), fused AdamW, anomaly off, device-side
prep; ``refnet+compile`` with --compile) a model is built and warmed up (peak
memory rise measured then; the first step's time is shown, which for compile
is the compile time), then all conditions are timed one step each in turn
(CUDA synchronised): median ms per step (forward + backward + optimizer),
speed-up over rc10, refnet_ms/vilbert ratio, peak memory, and model FLOP
utilisation = FLOPs of one forward+backward (FlopCounterMode) / step time /
--peak-tflops. Prints numbers, asserts nothing.
"""

import argparse
import json
import sys

import _common


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    _common.add_common_arguments(parser)
    parser.add_argument("--models", default=",".join(_common.MODELS), help="comma-separated (vilbert,refnet_ms)")
    parser.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE",
                        help="also time the refnet recipe with torch.compile (optional mode, e.g. reduce-overhead "
                             "= CUDA graphs, which the host-bound GPU step may need)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="for MFU; default: bf16 dense peak by GPU name (989 = H100 SXM), none on CPU")
    return _common.resolve_arguments(parser.parse_args(argv))


def run(args) -> list:
    """Build and warm up every condition (memory, first step), then time them interleaved."""
    recipes = [("rc10", False), ("refnet", False)] + ([("refnet", args.compile)] if args.compile else [])
    conditions, flops = [], {}
    with _common.workdir() as workdir:
        _common.prewarm(args, workdir)
        for model in args.models.split(","):
            for recipe, compile_model in recipes:
                print(f"... building {model} / {recipe}{'+compile' if compile_model else ''}", file=sys.stderr, flush=True)
                condition = _common.Condition(model, recipe, args, workdir, compile_model)
                if model not in flops:
                    flops[model] = condition.flops()
                conditions.append(condition)
        print(f"... timing {len(conditions)} conditions x {args.steps} steps, interleaved", file=sys.stderr, flush=True)
        _common.time_interleaved(conditions, args.steps)
    rows = [dict(condition.result(), flops_per_step=flops[condition.model_name]) for condition in conditions]
    add_ratios(rows, args.peak_tflops)
    return rows


def add_ratios(rows: list, peak_tflops) -> None:
    by_key = {(row["model"], row["recipe"]): row for row in rows}
    for row in rows:
        stock = by_key.get((row["model"], "rc10"))
        row["speedup_vs_rc10"] = stock["ms_per_step"] / row["ms_per_step"] if stock else None
        baseline = by_key.get(("vilbert", row["recipe"]))
        if baseline and row["model"] != "vilbert":
            row["time_vs_vilbert"] = row["ms_per_step"] / baseline["ms_per_step"]
            row["memory_vs_vilbert"] = row["peak_memory_mib"] / max(baseline["peak_memory_mib"], 1e-9)
        achieved = row["flops_per_step"] / (row["ms_per_step"] / 1e3) / 1e12
        row["achieved_tflops"] = achieved
        row["mfu"] = achieved / peak_tflops if peak_tflops else None


def _fmt(value, pattern):
    return "n/a" if value is None else pattern.format(value)


def report(rows: list, args, env: dict) -> None:
    print(f"# {env}  size={args.size} batch={args.batch_size} steps={args.steps} warmup={args.warmup} "
          f"amp={args.amp} peak_tflops={args.peak_tflops}")
    print(f"# memory: {rows[0]['memory_kind']}")
    header = (f"{'model':<10} {'recipe':<15} {'ms/step':>9} {'p10-p90':>15} {'speedup':>8} {'vs vilbert':>10} "
              f"{'peak MiB':>9} {'mem vs vil':>10} {'GFLOP/step':>10} {'TFLOP/s':>8} {'MFU':>7} {'1st step s':>10}")
    print(header)
    for row in rows:
        print(f"{row['model']:<10} {row['recipe']:<15} {row['ms_per_step']:>9.2f} "
              f"{row['ms_p10']:>7.1f}-{row['ms_p90']:<7.1f} {_fmt(row['speedup_vs_rc10'], '{:.2f}x'):>8} "
              f"{_fmt(row.get('time_vs_vilbert'), '{:.3f}'):>10} {row['peak_memory_mib']:>9.1f} "
              f"{_fmt(row.get('memory_vs_vilbert'), '{:.3f}'):>10} {row['flops_per_step'] / 1e9:>10.3f} "
              f"{row['achieved_tflops']:>8.3f} {_fmt(row['mfu'], '{:.1%}'):>7} {_fmt(row['first_step_s'], '{:.1f}'):>10}")


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.peak_tflops is None:
        args.peak_tflops = _common.default_peak_tflops(args.device)
    env = _common.environment(args.device)
    rows = run(args)
    report(rows, args, env)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"environment": env, "arguments": vars(args), "results": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
