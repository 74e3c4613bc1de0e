"""Latent graph induction (paper §4: Theorem 4.1, Corollary 4.1), one module per job:

- ``synthetic``: the seeded synthetic setting (graph A, fusion weights W, features F);
- ``training``: training the linear fusion Ŵ and refiner Γ on it;
- ``recovery``: what the trained pair recovered (Γ W* = I, Γ⁻¹ = W A), sweeps;
- ``probes``: the same questions asked of a trained model's fused embeddings;
- ``plots`` and ``output``: heatmaps, tables, deterministic JSON;
- ``command``: ``refnet analyze graph``.

Everything returns numpy arrays or plain dicts (files optional); the names below are the API.
"""

from mmf_refnet.analysis.graph.command import build_parser, main_graph
from mmf_refnet.analysis.graph.output import format_table, save_synthetic, to_jsonable, write_json
from mmf_refnet.analysis.graph.plots import plot_modality_map, plot_synthetic, save_heatmaps
from mmf_refnet.analysis.graph.probes import (
    analyze_embeddings,
    decoder_jacobian,
    fit_modalities,
    format_map,
    linear_fit,
    modality_map,
)
from mmf_refnet.analysis.graph.recovery import METRIC_KEYS, probe_decoder, recovery_metrics, refiner_gain, run_synthetic, sweep
from mmf_refnet.analysis.graph.synthetic import SyntheticGraph, downstream_readout, make_setting
from mmf_refnet.analysis.graph.training import LOSSES, refiner_loss, train_linear_refnet

__all__ = [
    "LOSSES", "METRIC_KEYS", "SyntheticGraph", "analyze_embeddings", "build_parser", "decoder_jacobian",
    "downstream_readout", "fit_modalities", "format_map", "format_table", "linear_fit", "main_graph", "make_setting",
    "modality_map", "plot_modality_map", "plot_synthetic", "probe_decoder", "recovery_metrics", "refiner_gain",
    "refiner_loss", "run_synthetic", "save_heatmaps", "save_synthetic", "sweep", "to_jsonable", "train_linear_refnet",
    "write_json",
]
