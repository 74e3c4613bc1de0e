"""What the Multi-Similarity loss costs at a large (global) batch, e.g. 480 = 15 GPUs × 32.

    python benchmarks/ms_loss.py                                   # CPU; step time from --step-ms
    python benchmarks/ms_loss.py --device cuda --step-json overhead.json

Times forward + backward of ``MultiSimilarity`` (pair masks, hard-pair mining,
pml's loss; float32 as in training) on random (N, 512) embeddings for each N in
--batch-sizes, single-label (2 classes) and multilabel (23 classes, MM-IMDB-like),
and prints each as a share of the training step: ``--step-ms`` or the
ReFNet model's median of an ``overhead.py --json`` file. Goal: ≤ 2 % at N = 480.
Also counts the ATen ops it dispatches (launch cost where the GPU waits for
the host; the count does not grow with N). Prints, never asserts.
"""

import argparse
import json
import statistics
import sys

import _common
import torch

from mmf_refnet.losses import MultiSimilarity


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cuda", "cpu"))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 480])
    parser.add_argument("--dim", type=int, default=512, help="fused embedding size (refnet: fused_dim 512)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--step-ms", type=float, default=None, help="training-step time to compare with")
    parser.add_argument("--step-json", default=None, help="overhead.py --json output: its ReFNet model's median is the step")
    parser.add_argument("--json", default=None, metavar="OUT")
    return parser.parse_args(argv)


def batch(size: int, dim: int, multilabel: bool, device: str, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(size, dim, generator=generator).to(device).requires_grad_()
    if multilabel:
        targets = (torch.rand(size, 23, generator=generator) < 0.1).float().to(device)
    else:
        targets = torch.randint(0, 2, (size,), generator=generator).to(device)
    return embeddings, targets


def measure(loss, embeddings, targets, device: str, steps: int) -> dict:
    def step(_):
        loss(embeddings, targets).backward()
        embeddings.grad = None

    _common.timed(step, None, device, 5)
    times = _common.timed(step, None, device, steps)
    return {"ms": 1e3 * statistics.median(times), "ops": _common.count_dispatched_ops(step, None)}


def step_ms(args):
    if args.step_json:
        try:
            with open(args.step_json) as handle:
                return json.load(handle)["ms_per_step_median"]["refnet"]
        except (OSError, KeyError, ValueError) as error:
            print(f"no step time from {args.step_json} ({error}); shares not computed", file=sys.stderr)
            return None
    return args.step_ms


def main(argv=None) -> None:
    args = parse_args(argv)
    loss = MultiSimilarity(global_batch=False)
    reference = step_ms(args)
    rows = []
    for multilabel in (False, True):
        for size in args.batch_sizes:
            embeddings, targets = batch(size, args.dim, multilabel, args.device)
            row = {"batch": size, "multilabel": multilabel, **measure(loss, embeddings, targets, args.device, args.steps)}
            row["share_of_step"] = row["ms"] / reference if reference else None
            rows.append(row)
    print(f"# {_common.environment(args.device)}  dim={args.dim} steps={args.steps} step_ms={reference}")
    for row in rows:
        share = "n/a" if row["share_of_step"] is None else f"{row['share_of_step']:.2%}"
        kind = "multilabel (23)" if row["multilabel"] else "single-label (2)"
        print(f"N={row['batch']:<5} {kind:<17} {row['ms']:8.3f} ms fwd+bwd  {row['ops']:4d} ops  share of step {share}"
              f"{'  (goal <= 2 %)' if row['batch'] == 480 else ''}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"environment": _common.environment(args.device), "arguments": vars(args), "results": rows},
                      handle, indent=2)


if __name__ == "__main__":
    sys.exit(main())
