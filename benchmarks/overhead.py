"""What ReFNet's head costs: step time and peak memory of a ReFNet model ÷ its baseline.

    python benchmarks/overhead.py                         # CPU: --size demo (the model CPU users train)
    python benchmarks/overhead.py --size small --profile  # + where refnet_ms's time goes
    python benchmarks/overhead.py --backbone visual_bert  # or mmbt
    python benchmarks/overhead.py --device cuda --size base --json overhead.json

``--backbone vilbert`` (default): ``refnet_ms`` ÷ MMF's stock ``vilbert``, whose head is
BertPredictionHeadTransform + Linear on the fused pooled outputs; refnet_ms's is concat →
Linear(2·bi → 512) → 2-layer MLP, the refiner's decoders (one batched MLP) with cosine losses
and the MS loss. ``--backbone visual_bert`` / ``mmbt``: ``<backbone>_refnet`` ÷ the same model
with its refiner and MS terms switched off (γ = ζ = 0: the decoders do not run), i.e. what
the refiner and the MS loss add to a concat-fusion head on that backbone (rc10's stock
VisualBERT and MMBT need a GPU or downloaded weights).

Same backbone, batch and recipe (default: refnet_trainer's, see _common.py). Memory: each
model alone (built, stepped, freed). Time: both models alive, stepped alternately (A, B, A,
B, …) so a shared machine's drift hits both alike; printed as the ratio of median step times
and of the fastest-decile step times (the steadier estimate when other processes compete for
the CPU; --threads 1 helps too). Also prints the FLOP ratio and the ratio of ATen ops
dispatched per step (forward, backward, optimizer): where the GPU waits for the host, time
follows ops, not FLOPs. Goal: ≤ 1.05 on CPU, ≤ 1.03 on GPU. Prints, never asserts.
"""

import argparse
import json
import statistics
import sys

import _common

OFF = {"refiner": {"weights": {"text": 0, "image": 0}}, "ms_loss": {"weight": 0}}  # γ = ζ = 0
# backbone: (baseline model, its overrides), (ReFNet model, its overrides)
PAIRS = {
    "vilbert": (("vilbert", None), ("refnet_ms", None)),
    "visual_bert": (("visual_bert_refnet", OFF), ("visual_bert_refnet", None)),
    "mmbt": (("mmbt_refnet", OFF), ("mmbt_refnet", None)),
}
ROLES = ("baseline", "refnet")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    _common.add_common_arguments(parser, cpu_size="demo")
    parser.add_argument("--backbone", default="vilbert", choices=tuple(PAIRS))
    parser.add_argument("--recipe", default="refnet", choices=("refnet", "rc10"))
    parser.add_argument("--profile", action="store_true", help="torch.profiler table of a few refnet_ms steps")
    return _common.resolve_arguments(parser.parse_args(argv))


def measure(args, workdir: str):
    """Both models under ``args.recipe``: memory at build/warm-up, then interleaved timing."""
    _common.prewarm(args, workdir)
    conditions = {role: _common.Condition(name, args.recipe, args, workdir, overrides=overrides)
                  for role, (name, overrides) in zip(ROLES, PAIRS[args.backbone])}
    flops = {role: condition.flops() for role, condition in conditions.items()}
    ops = {role: condition.dispatched_ops() for role, condition in conditions.items()}
    print("... timing", file=sys.stderr, flush=True)
    _common.time_interleaved(list(conditions.values()), args.steps)
    return conditions, flops, ops


def profile(args, workdir: str) -> None:
    """Top operators (self time) of the ReFNet model's step, to see what its head adds."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    name = PAIRS[args.backbone][1][0]
    config = _common.load_config(name, args.size, args.device, workdir)
    model = _common.build_model(config, name, args.device)
    step = _common.make_step(args.recipe, model, _common.make_optimizer(args.recipe, model, config, args.device),
                             args.device, args.amp)
    batch = _common.synthetic_batch(args.size, args.batch_size, args.device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
    with _common.recipe_settings(args.recipe, args.device):
        _common.timed(step, batch, args.device, args.warmup)
        with torch_profile(activities=activities, with_stack=False) as prof:
            _common.timed(step, batch, args.device, 5)
    sort = "self_cuda_time_total" if args.device == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=30))


def main(argv=None) -> None:
    args = parse_args(argv)
    env = _common.environment(args.device)
    with _common.workdir() as workdir:
        conditions, flops, ops = measure(args, workdir)
        if args.profile:
            profile(args, workdir)
    result = summarize(conditions, flops, ops)
    result.update({"environment": env, "arguments": vars(args)})
    print_result(result, args, env)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


def summarize(conditions: dict, flops: dict, ops: dict) -> dict:
    ms = {role: [1e3 * t for t in condition.times] for role, condition in conditions.items()}
    median = {role: statistics.median(values) for role, values in ms.items()}
    fast = {role: _common.quantile(values, 0.1) for role, values in ms.items()}
    mib = {role: condition.row["peak_memory_mib"] for role, condition in conditions.items()}
    return {
        "models": {role: condition.model_name for role, condition in conditions.items()},
        "ms_per_step_median": median, "ms_per_step_p10": fast, "ms_per_step_all": ms,
        "time_ratio_median": median["refnet"] / median["baseline"], "time_ratio_p10": fast["refnet"] / fast["baseline"],
        "flops_per_step": flops, "flop_ratio": flops["refnet"] / flops["baseline"],
        "ops_per_step": ops, "op_ratio": ops["refnet"] / ops["baseline"],
        "peak_memory_mib": mib, "memory_kind": conditions["baseline"].row["memory_kind"],
        "memory_ratio": mib["refnet"] / max(mib["baseline"], 1e-9),
    }


def print_result(result: dict, args, env: dict) -> None:
    goal = 1.03 if args.device == "cuda" else 1.05
    names = {role: name + (" (γ = ζ = 0)" if role == "baseline" and PAIRS[args.backbone][0][1] else "")
             for role, name in result["models"].items()}
    print(f"# {env}  size={args.size} batch={args.batch_size} recipe={args.recipe} amp={args.amp} steps={args.steps}")
    for role in ROLES:
        print(f"{names[role]:<32} median {result['ms_per_step_median'][role]:9.2f} ms/step"
              f"  p10 {result['ms_per_step_p10'][role]:9.2f}"
              f"  peak {result['peak_memory_mib'][role]:9.1f} MiB ({result['memory_kind']})"
              f"  {result['flops_per_step'][role] / 1e9:.3f} GFLOP/step  {result['ops_per_step'][role]} ops/step")
    print(f"{names['refnet']} / {names['baseline']}: time {result['time_ratio_median']:.3f} (median) "
          f"{result['time_ratio_p10']:.3f} (p10), memory {result['memory_ratio']:.3f}, FLOPs {result['flop_ratio']:.4f}, "
          f"dispatched ops {result['op_ratio']:.3f}; goal <= {goal}")


if __name__ == "__main__":
    main()
