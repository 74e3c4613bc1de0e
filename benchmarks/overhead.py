"""What ReFNet's head costs: ``refnet_ms`` ÷ ``vilbert`` step time and peak memory.

    python benchmarks/overhead.py                         # CPU: --size demo (the model CPU users train)
    python benchmarks/overhead.py --size small --profile  # + where refnet_ms's time goes
    python benchmarks/overhead.py --device cuda --size base --json overhead.json

Same backbone, batch and recipe (default: refnet_trainer's, see _common.py).
vilbert's head is BertPredictionHeadTransform + Linear on the fused pooled
outputs; refnet_ms's is concat → Linear(2·bi → 512) → 2-layer MLP, the refiner's
decoders (one batched MLP) with cosine losses and the MS loss. Memory: each model alone (built,
stepped, freed). Time: both models alive, stepped alternately (A, B, A, B, …)
so a shared machine's drift hits both alike; printed as the ratio of median
step times and of the fastest-decile step times (the steadier estimate when
other processes compete for the CPU; --threads 1 helps too). Also prints the
FLOP ratio and the ratio of ATen ops dispatched per step (forward, backward,
optimizer): where the GPU waits for the host, time follows ops, not FLOPs.
Goal: ≤ 1.05 on CPU, ≤ 1.03 on GPU. Prints, never asserts.
"""

import argparse
import json
import statistics
import sys

import _common


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    _common.add_common_arguments(parser, cpu_size="demo")
    parser.add_argument("--recipe", default="refnet", choices=("refnet", "rc10"))
    parser.add_argument("--profile", action="store_true", help="torch.profiler table of a few refnet_ms steps")
    return _common.resolve_arguments(parser.parse_args(argv))


def measure(args, workdir: str):
    """Both models under ``args.recipe``: memory at build/warm-up, then interleaved timing."""
    _common.prewarm(args, workdir)
    conditions = [_common.Condition(name, args.recipe, args, workdir) for name in _common.MODELS]
    flops = {condition.model_name: condition.flops() for condition in conditions}
    ops = {condition.model_name: condition.dispatched_ops() for condition in conditions}
    print("... timing", file=sys.stderr, flush=True)
    _common.time_interleaved(conditions, args.steps)
    return {condition.model_name: condition for condition in conditions}, flops, ops


def profile(args, workdir: str) -> None:
    """Top operators (self time) of refnet_ms's step, to see what its head adds."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    config = _common.load_config("refnet_ms", args.size, args.device, workdir)
    model = _common.build_model(config, "refnet_ms", args.device)
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
    ms = {name: [1e3 * t for t in condition.times] for name, condition in conditions.items()}
    median = {name: statistics.median(values) for name, values in ms.items()}
    fast = {name: _common.quantile(values, 0.1) for name, values in ms.items()}
    mib = {name: condition.row["peak_memory_mib"] for name, condition in conditions.items()}
    return {
        "ms_per_step_median": median, "ms_per_step_p10": fast, "ms_per_step_all": ms,
        "time_ratio_median": median["refnet_ms"] / median["vilbert"], "time_ratio_p10": fast["refnet_ms"] / fast["vilbert"],
        "flops_per_step": flops, "flop_ratio": flops["refnet_ms"] / flops["vilbert"],
        "ops_per_step": ops, "op_ratio": ops["refnet_ms"] / ops["vilbert"],
        "peak_memory_mib": mib, "memory_kind": conditions["vilbert"].row["memory_kind"],
        "memory_ratio": mib["refnet_ms"] / max(mib["vilbert"], 1e-9),
    }


def print_result(result: dict, args, env: dict) -> None:
    goal = 1.03 if args.device == "cuda" else 1.05
    print(f"# {env}  size={args.size} batch={args.batch_size} recipe={args.recipe} amp={args.amp} steps={args.steps}")
    for name in _common.MODELS:
        print(f"{name:<10} median {result['ms_per_step_median'][name]:9.2f} ms/step  p10 {result['ms_per_step_p10'][name]:9.2f}"
              f"  peak {result['peak_memory_mib'][name]:9.1f} MiB ({result['memory_kind']})"
              f"  {result['flops_per_step'][name] / 1e9:.3f} GFLOP/step  {result['ops_per_step'][name]} ops/step")
    print(f"refnet_ms / vilbert: time {result['time_ratio_median']:.3f} (median) {result['time_ratio_p10']:.3f} (p10), "
          f"memory {result['memory_ratio']:.3f}, FLOPs {result['flop_ratio']:.4f}, dispatched ops {result['op_ratio']:.3f}; "
          f"goal <= {goal}")


if __name__ == "__main__":
    main()
