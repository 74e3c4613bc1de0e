"""Probes of trained models' fused embeddings (the graph analysis of checkpoints): linear maps
from F_emb to each modality, decoder Jacobians, the modality-to-modality map. Generic over
arrays and torch callables (no MMF needed); ``analyze_embeddings`` is the hook for checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmf_refnet.analysis.graph.output import write_json
from mmf_refnet.analysis.graph.plots import plot_modality_map

_DTYPE = torch.float64  # decoders given as plain callables are evaluated in float64

def _split(n: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fit/eval row indices: all rows for both when holdout = 0, else a seeded
    random ``holdout`` fraction is evaluated on and the rest fitted on."""
    if not holdout:
        rows = np.arange(n)
        return rows, rows
    order = np.random.default_rng(seed).permutation(n)
    n_eval = max(1, int(round(holdout * n)))
    return np.sort(order[n_eval:]), np.sort(order[:n_eval])


def _r2(truth: np.ndarray, pred: np.ndarray) -> tuple[float, np.ndarray]:
    """Variance-weighted R² (1 − ΣSSE/ΣSST over all output dims: the fraction of
    total variance explained) and per-dim R² (constant dims: 1 if fit, else 0)."""
    sse = ((truth - pred) ** 2).sum(0)
    sst = ((truth - truth.mean(0)) ** 2).sum(0)
    per_dim = np.where(sst > 0, 1.0 - sse / np.where(sst > 0, sst, 1.0), np.where(sse <= 1e-12, 1.0, 0.0))
    total = 1.0 - sse.sum() / sst.sum() if sst.sum() > 0 else float(sse.sum() <= 1e-12)
    return float(total), per_dim


def linear_fit(embeddings: np.ndarray, target: np.ndarray, *, ridge: float = 0.0, holdout: float = 0.0,
               seed: int = 0) -> dict[str, Any]:
    """Least-squares affine fit ``target ≈ embeddings @ coef.T + intercept``.

    Returns ``coef`` (d_i × k, the linear map from fused embedding to modality),
    ``intercept``, ``r2`` (variance-weighted) and ``r2_per_dim``, evaluated on a
    held-out fraction when ``holdout`` > 0 (in-sample R² is inflated when n is
    not ≫ k); ``ridge`` > 0 adds an L2 penalty on ``coef``.
    """
    x, y = np.asarray(embeddings, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"need embeddings (n, k) and target (n, d) with the same n, got {x.shape} and {y.shape}")
    fit_rows, eval_rows = _split(x.shape[0], holdout, seed)
    x_mean, y_mean = x[fit_rows].mean(0), y[fit_rows].mean(0)
    xc, yc = x[fit_rows] - x_mean, y[fit_rows] - y_mean
    if ridge > 0:
        xc = np.vstack([xc, math.sqrt(ridge) * np.eye(x.shape[1])])
        yc = np.vstack([yc, np.zeros((x.shape[1], y.shape[1]))])
    solution, *_ = np.linalg.lstsq(xc, yc, rcond=None)
    coef = solution.T
    intercept = y_mean - coef @ x_mean
    r2, per_dim = _r2(y[eval_rows], x[eval_rows] @ coef.T + intercept)
    return {"coef": coef, "intercept": intercept, "r2": r2, "r2_per_dim": per_dim,
            "n_fit": int(len(fit_rows)), "n_eval": int(len(eval_rows))}


def fit_modalities(embeddings: np.ndarray, targets: Mapping[str, np.ndarray], **kwargs: Any) -> dict[str, dict[str, Any]]:
    """``linear_fit`` of every modality's target (or refiner output) R_i on F_emb."""
    return {name: linear_fit(embeddings, target, **kwargs) for name, target in targets.items()}


def _decoder_dtype(decoder: Any) -> tuple[torch.dtype, torch.device]:
    """Dtype/device of a module's parameters (float64/CPU for plain callables)."""
    if isinstance(decoder, torch.nn.Module):
        for tensor in [*decoder.parameters(), *decoder.buffers()]:
            if tensor.is_floating_point():
                return tensor.dtype, tensor.device
    return _DTYPE, torch.device("cpu")


def decoder_jacobian(decoder: Callable[[torch.Tensor], Any] | Mapping[str, Callable], embeddings: np.ndarray, *,
                     at: np.ndarray | None = None) -> np.ndarray | dict[str, np.ndarray]:
    """Jacobian (d_out × k) of a batch-first decoder ``(b, k) → (b, d_out)`` at
    the data mean (or ``at``): its local linear map from fused embedding to
    modality, comparable with ``linear_fit``'s ``coef``. A Mapping of decoders
    (e.g. ``{m: refiner.decoders.decoder(m)}``) gives a dict. Modules are evaluated in eval mode
    (dropout off) and restored; tries ``torch.func.jacrev``, falls back to
    ``torch.autograd.functional.jacobian`` for modules it cannot trace.
    """
    if isinstance(decoder, Mapping):
        return {name: decoder_jacobian(item, embeddings, at=at) for name, item in decoder.items()}
    point = np.asarray(embeddings, dtype=np.float64).mean(0) if at is None else np.asarray(at, dtype=np.float64)
    dtype, device = _decoder_dtype(decoder)
    x = torch.as_tensor(point, dtype=dtype, device=device)

    def flat(vector: torch.Tensor) -> torch.Tensor:
        return decoder(vector.unsqueeze(0)).reshape(-1)

    was_training = isinstance(decoder, torch.nn.Module) and decoder.training
    if was_training:
        decoder.eval()
    try:
        try:
            jac = torch.func.jacrev(flat)(x)
        except Exception:  # noqa: BLE001 - e.g. in-place ops or hooks jacrev cannot trace
            jac = torch.autograd.functional.jacobian(flat, x)
    finally:
        if was_training:
            decoder.train()
    return jac.detach().to("cpu", torch.float64).numpy()


def _principal_scores(prediction: np.ndarray, fit_rows: np.ndarray, energy: float, rank: int | None) -> np.ndarray:
    """Scores of the leading principal components of a modality's decoded part
    (rank given, or the fewest components holding ``energy`` of its variance)."""
    centred = prediction - prediction[fit_rows].mean(0)
    _, singular, vt = np.linalg.svd(centred[fit_rows], full_matrices=False)
    variance = singular**2
    if rank is None:
        if variance.sum() <= 0:
            return np.zeros((prediction.shape[0], 0))
        rank = int(np.searchsorted(np.cumsum(variance) / variance.sum(), energy - 1e-12) + 1)
    rank = min(rank, int((singular > singular[0] * 1e-10).sum()) if len(singular) and singular[0] > 0 else 0)
    return centred @ vt[:rank].T


def modality_map(embeddings: np.ndarray, targets: Mapping[str, np.ndarray], *, energy: float = 0.9,
                 rank: int | Mapping[str, int] | None = None, ridge: float = 0.0, holdout: float = 0.0,
                 seed: int = 0) -> dict[str, Any]:
    """Modality-to-modality map M (m × m) read off the fused embedding.

    The part of F_emb that decodes modality i is ``z_i``: the leading principal
    components of its linear reconstruction ``R̂_i`` (``linear_fit`` of R_i on
    F_emb), i.e. the few directions of F_emb that modality i's read-out uses.
    ``M[i, j]`` = R² (variance-weighted) of the least-squares fit of modality
    j's target R_j on ``z_i``: how much of modality j is explained by what the
    embedding encodes for modality i. Coordinate-free (z_i is a function of F_emb
    and R_i only); the diagonal is i's own R² within its leading subspace.
    Off-diagonal ≈ 0 means disjoint codes, large means shared (cross-modal)
    directions. Truncation matters: with all components (``energy=1``) and
    ``d_i ≥ k``, z_i spans all of F_emb and every row equals the full R².
    ``rank`` fixes the number of components (int, or per modality).
    """
    names = list(targets)
    x = np.asarray(embeddings, dtype=np.float64)
    fit_rows, _ = _split(x.shape[0], holdout, seed)
    fits = fit_modalities(x, targets, ridge=ridge, holdout=holdout, seed=seed)
    matrix = np.zeros((len(names), len(names)))
    ranks = {}
    for row, source in enumerate(names):
        own_rank = rank.get(source) if isinstance(rank, Mapping) else rank
        prediction = x @ fits[source]["coef"].T + fits[source]["intercept"]
        scores = _principal_scores(prediction, fit_rows, energy, own_rank)
        ranks[source] = int(scores.shape[1])
        for col, target_name in enumerate(names):
            if scores.shape[1]:
                matrix[row, col] = linear_fit(scores, targets[target_name], ridge=ridge, holdout=holdout, seed=seed)["r2"]
    return {"modalities": names, "matrix": matrix, "rank": ranks, "r2_full": {name: fits[name]["r2"] for name in names},
            "energy": energy, "holdout": holdout}


def analyze_embeddings(embeddings: np.ndarray, targets: Mapping[str, np.ndarray], *,
                       decoders: Mapping[str, Callable] | None = None, out_dir: str | Path | None = None,
                       prefix: str = "graph_checkpoint", energy: float = 0.9, rank: int | None = None,
                       ridge: float = 0.0, holdout: float = 0.0, seed: int = 0) -> dict[str, Any]:
    """Hook for ``refnet analyze graph --checkpoint``: all trained-model analyses
    from arrays (F_emb: n × k; targets: modality → n × d_i, the refiner outputs
    R_i or targets H_i(F_i)) and optional per-modality decoder callables.

    Returns ``fits`` (``linear_fit`` per modality), ``jacobians`` (decoder
    Jacobians at the mean) with ``jacobian_vs_linear`` (cosine between each
    Jacobian and the least-squares map: 1 = the decoder acts linearly on the
    data), and ``map`` (``modality_map``). With ``out_dir``, writes
    ``{prefix}_map.png``, ``{prefix}.json`` (scalars, ranks, map) and
    ``{prefix}.npz`` (coefficient and Jacobian matrices).
    """
    fits = fit_modalities(embeddings, targets, ridge=ridge, holdout=holdout, seed=seed)
    jacobians = decoder_jacobian(decoders, embeddings) if decoders else {}
    agreement = {}
    for name, jac in jacobians.items():
        coef = fits[name]["coef"] if name in fits else None
        if coef is not None and coef.shape == jac.shape:
            denom = np.linalg.norm(jac) * np.linalg.norm(coef)
            agreement[name] = float((jac * coef).sum() / denom) if denom > 0 else math.nan
    mapping = modality_map(embeddings, targets, energy=energy, rank=rank, ridge=ridge, holdout=holdout, seed=seed)
    result = {"fits": fits, "jacobians": jacobians, "jacobian_vs_linear": agreement, "map": mapping}
    if out_dir is not None:
        out_dir = Path(out_dir)
        summary = {"r2": {name: fit["r2"] for name, fit in fits.items()}, "jacobian_vs_linear": agreement,
                   "jacobian_norm": {name: float(np.linalg.norm(jac)) for name, jac in jacobians.items()},
                   "map": mapping, "n": int(np.asarray(embeddings).shape[0]), "k": int(np.asarray(embeddings).shape[1])}
        arrays = {f"coef_{name}": fit["coef"] for name, fit in fits.items()}
        arrays.update({f"jacobian_{name}": jac for name, jac in jacobians.items()})
        out_dir.mkdir(parents=True, exist_ok=True)
        np.savez(out_dir / f"{prefix}.npz", **arrays)
        result["files"] = {"png": plot_modality_map(mapping, out_dir / f"{prefix}_map.png"),
                           "json": write_json(summary, out_dir / f"{prefix}.json"), "npz": out_dir / f"{prefix}.npz"}
    return result


def format_map(mapping: Mapping[str, Any]) -> str:
    """Plain-text modality map with each modality's full linear R²."""
    names = mapping["modalities"]
    width = max(8, *(len(name) for name in names)) + 2
    lines = ["i \\ j".ljust(width) + "".join(name.rjust(width) for name in names) + "full R²".rjust(width) + "rank".rjust(6)]
    for row, name in enumerate(names):
        cells = "".join(f"{value:.3f}".rjust(width) for value in mapping["matrix"][row])
        full = f"{mapping['r2_full'][name]:.3f}".rjust(width)
        lines.append(name.ljust(width) + cells + full + str(mapping["rank"][name]).rjust(6))
    return "\n".join(lines)
