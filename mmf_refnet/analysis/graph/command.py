"""``refnet analyze graph``: the synthetic experiment or a checkpoint's analysis, from the command line.

One parser holds every option (``--help`` lists them all; no abbreviations).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mmf_refnet.analysis.graph.output import format_table, save_synthetic
from mmf_refnet.analysis.graph.probes import analyze_embeddings, format_map
from mmf_refnet.analysis.graph.recovery import sweep
from mmf_refnet.analysis.graph.training import LOSSES

# A checkpoint loader maps the parsed arguments (--checkpoint, --split, --max-samples, --device, --opt) to
# {"embeddings": (n, k) array, "targets": {modality: (n, d_i) array}, optionally "decoders": {modality: callable}};
# the MMF-aware one is passed in by mmf_refnet.cli.
CheckpointLoader = Callable[[argparse.Namespace], Mapping[str, Any]]


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``refnet analyze graph``."""
    from mmf_refnet.analysis.collect import add_checkpoint_options

    parser = argparse.ArgumentParser(prog="refnet analyze graph", allow_abbrev=False,
                                     description="Latent graph induction (ReFNet paper §4, Theorem 4.1 / Corollary 4.1).")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--synthetic", action="store_true", help="run the synthetic linear experiment")
    source.add_argument("--checkpoint", metavar="PATH", help="analyse a trained ReFNet model's checkpoint")
    parser.add_argument("--m", type=int, nargs="+", default=[4], help="numbers of modalities (sweep)")
    parser.add_argument("--k", type=int, default=None, help="fused dimension (default: m)")
    parser.add_argument("--d", type=int, default=64, help="feature dimension")
    parser.add_argument("--n", type=int, default=128, help="number of samples")
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0], help="noise levels on the fusion input (sweep)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loss", choices=LOSSES, default="cosine", help="refiner loss (paper: cosine)")
    parser.add_argument("--no-refiner", action="store_true", help="control: refiner loss off")
    parser.add_argument("--downstream-dim", type=int, default=None,
                        help="rows of the downstream task (default k = full; <m: low-dim as in the paper's argument; 0: none)")
    parser.add_argument("--energy", type=float, default=0.9, help="checkpoint mode: variance share kept per modality part")
    parser.add_argument("--holdout", type=float, default=0.2, help="checkpoint mode: held-out fraction for R²")
    parser.add_argument("--out", metavar="DIR", default=None, help="write PNG heatmaps and JSON here")
    add_checkpoint_options(parser)
    return parser


def main_graph(argv: Sequence[str] | None = None, *, load_checkpoint: CheckpointLoader | None = None) -> int:
    """``refnet analyze graph``: prints a table, writes PNG + JSON with --out."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.checkpoint:
        if load_checkpoint is None:
            parser.error("--checkpoint needs a checkpoint loader (mmf_refnet.cli passes one); "
                         "from Python call mmf_refnet.analysis.graph.analyze_embeddings(embeddings, targets, ...)")
        loaded = load_checkpoint(args)
        result = analyze_embeddings(loaded["embeddings"], loaded["targets"], decoders=loaded.get("decoders"),
                                    out_dir=args.out, energy=args.energy, holdout=args.holdout, seed=args.seed)
        print("linear R² per modality: " + ", ".join(f"{name}={fit['r2']:.3f}" for name, fit in result["fits"].items()))
        if result["jacobian_vs_linear"]:
            print("Jacobian vs linear map (cosine): "
                  + ", ".join(f"{name}={value:.3f}" for name, value in result["jacobian_vs_linear"].items()))
        print(format_map(result["map"]))
        _print_files(result.get("files", {}))
        return 0
    results = sweep(args.m, args.noise, k=args.k, d=args.d, n=args.n, seed=args.seed, loss=args.loss,
                    refiner=not args.no_refiner, downstream_dim=args.downstream_dim)
    print(format_table(results))
    if args.out:
        down = "k" if args.downstream_dim is None else args.downstream_dim
        name = f"graph_synthetic_{args.loss}_down{down}{'_norefiner' if args.no_refiner else ''}"
        _print_files(save_synthetic(results, args.out, name=name))
    return 0


def _print_files(files: Mapping[str, Any]) -> None:
    """List written files, one per line."""
    for value in files.values():
        for path in value if isinstance(value, list) else [value]:
            print(f"wrote {path}")
