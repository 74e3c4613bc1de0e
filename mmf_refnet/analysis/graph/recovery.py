"""What a trained linear ReFNet recovered (Theorem 4.1, Corollary 4.1), and sweeps over settings.

Identifiability and the normalisation (gauge) used:

* The cosine loss is invariant to a positive scale per modality row, so its
  minimisers are exactly ``Γ W* = D`` with ``D`` positive diagonal (when the
  features span R^m), not ``I``. The proof's step "F̃ = F" can only mean
  ``F̃_i ∝ F_i`` under Eq. 3, so the theorem holds modulo this ``D`` and nothing
  else. We remove it with ``Γ̃ = diag(s)^{-1} Γ`` where ``s_i`` is the refiner's
  measured gain on modality i, ``s_i = Σ <F̃_i, F_i> / Σ |F_i|^2`` over the data
  — a quantity of the model's outputs and targets only, not of the unknown
  ``W, A``. Both the raw error (``gw_err_raw``) and the gauge-fixed one
  (``gw_err``) are reported; with MSE ``s = 1`` at the optimum and they agree.
* ``Ŵ`` is not identified by the refiner loss (any invertible ``Ŵ`` with
  ``Γ = (Ŵ A)^{-1}`` is optimal). So Corollary 4.1 is checked against the
  fusion's learned effective weights (``adj_err``: ``Γ̃^{-1}`` vs ``Ŵ A``) and
  against the generator's ``W A`` (``adj_err_true``); the latter needs the
  full downstream task. The graph itself is identified either way:
  ``Â = Ŵ^{-1} Γ̃^{-1}`` uses model weights (and the data gain) only and is
  compared with ``A`` (``graph_err``).
* For ``k ≠ m`` only ``Γ W* = I`` is checked (``Γ`` is then a left inverse and
  has no inverse); adjacency metrics are NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mmf_refnet.analysis.graph.synthetic import SyntheticGraph, make_setting
from mmf_refnet.analysis.graph.training import train_linear_refnet

METRIC_KEYS = ("gw_err_raw", "gw_err", "adj_err", "adj_err_true", "graph_err", "wstar_err", "probe_gw_err")


def _rel(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Relative Frobenius error ‖estimate − reference‖ / ‖reference‖."""
    return float(np.linalg.norm(estimate - reference) / np.linalg.norm(reference))


def refiner_gain(gamma: np.ndarray, fused: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Per-modality least-squares gain s_i of the refiner output on its target,
    ``Σ <F̃_i, F_i> / Σ |F_i|^2`` — the scale the cosine loss leaves free.
    Non-positive gains (a refiner pointing the wrong way) are left at 1: the
    loss allows no sign flip, so those rows are not normalised."""
    decoded = np.einsum("mk,nkd->nmd", gamma, fused)
    gain = (decoded * features).sum((0, 2)) / (features * features).sum((0, 2))
    return np.where(gain > 1e-12, gain, 1.0)


def probe_decoder(fused: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Best linear decoder Γ_p (m × k) of F from E fitted after training
    (minimum-norm least squares), i.e. what any linear read-out could recover."""
    k, m = fused.shape[1], features.shape[1]
    e_cols = fused.transpose(1, 0, 2).reshape(k, -1)
    f_cols = features.transpose(1, 0, 2).reshape(m, -1)
    solution, *_ = np.linalg.lstsq(e_cols.T, f_cols.T, rcond=1e-10)
    return solution.T


def _safe_inverse(matrix: np.ndarray) -> np.ndarray:
    """Inverse, or pseudo-inverse when singular (only reached by failing controls)."""
    try:
        return np.linalg.inv(matrix)
    except np.linalg.LinAlgError:
        return np.linalg.pinv(matrix)


def recovery_metrics(setting: SyntheticGraph, fit: Mapping[str, Any]) -> dict[str, Any]:
    """Errors of Theorem 4.1 and Corollary 4.1 for a trained (Ŵ, Γ), all
    relative Frobenius (‖·−I‖ / √m for identities), W* = Ŵ A, Γ̃ = diag(s)⁻¹ Γ:

    ``gw_err_raw`` ‖Γ W* − I‖; ``gw_err`` ‖Γ̃ W* − I‖ (Theorem 4.1, cosine gauge
    removed); ``adj_err`` Γ̃⁻¹ vs W* and ``adj_err_true`` Γ̃⁻¹ vs W A (Corollary
    4.1, k = m only); ``graph_err`` Â vs A; ``wstar_err`` W* vs W A (did the
    fusion learn the generator's weights); ``probe_gw_err`` ‖Γ_p W* − I‖ for the
    post-hoc least-squares decoder Γ_p (did the fusion keep F at all).
    Returns these plus ``matrices`` (the arrays behind them, NaN where undefined).
    """
    m, k = setting.m, setting.k
    w_hat, gamma = fit["W_hat"], fit["Gamma"]
    w_star = w_hat @ setting.A
    fused = np.einsum("km,nmd->nkd", w_hat, setting.fusion_input)
    gain = refiner_gain(gamma, fused, setting.F)
    gamma_norm = gamma / gain[:, None]
    identity = np.eye(m)
    nan_matrix = np.full((m, m), np.nan)
    gamma_inv, graph = nan_matrix, nan_matrix
    adj_err = adj_err_true = graph_err = math.nan
    if k == m:
        gamma_inv = _safe_inverse(gamma_norm)
        adj_err, adj_err_true = _rel(gamma_inv, w_star), _rel(gamma_inv, setting.WA)
        if np.linalg.matrix_rank(w_hat) == m:
            graph = np.linalg.solve(w_hat, gamma_inv)
            graph_err = _rel(graph, setting.A)
    probe = probe_decoder(fused, setting.F)
    metrics = {
        "gw_err_raw": _rel(gamma @ w_star, identity),
        "gw_err": _rel(gamma_norm @ w_star, identity),
        "adj_err": adj_err,
        "adj_err_true": adj_err_true,
        "graph_err": graph_err,
        "wstar_err": _rel(w_star, setting.WA),
        "probe_gw_err": _rel(probe @ w_star, identity),
    }
    matrices = {"A": setting.A, "W": setting.W, "WA": setting.WA, "W_hat": w_hat, "W_star": w_star, "Gamma": gamma,
                "gain": gain, "Gamma_norm": gamma_norm, "GW": gamma_norm @ w_star, "Gamma_inv": gamma_inv,
                "A_rec": graph, "probe": probe}
    return {**metrics, "matrices": matrices}


def run_synthetic(setting: SyntheticGraph, *, loss: str = "cosine", refiner: bool = True,
                  downstream_dim: int | None = None, refiner_weight: float = 1.0, max_iter: int = 500) -> dict[str, Any]:
    """Train on one setting and evaluate: a flat dict of parameters and metrics
    plus ``matrices`` (numpy arrays) for plotting."""
    fit = train_linear_refnet(setting, loss=loss, refiner=refiner, downstream_dim=downstream_dim,
                              refiner_weight=refiner_weight, max_iter=max_iter)
    params = {"m": setting.m, "k": setting.k, "d": setting.d, "n": setting.n, "noise": setting.noise, "seed": setting.seed,
              "loss": loss, "refiner": bool(refiner), "downstream_dim": fit["downstream_dim"]}
    timing = {key: fit[key] for key in ("trained_loss", "final_loss", "polished", "iterations", "newton_iterations", "seconds")}
    return {**params, **recovery_metrics(setting, fit), **timing}


def sweep(ms: Sequence[int] = (4,), noises: Sequence[float] = (0.0,), *, k: int | None = None, d: int = 64,
          n: int = 128, seed: int = 0, loss: str = "cosine", refiner: bool = True, downstream_dim: int | None = None,
          max_iter: int = 500) -> list[dict[str, Any]]:
    """Results for every (m, noise); per m one setting, noise levels share its
    graph, weights, features and noise direction."""
    results = []
    for m in ms:
        base = make_setting(m=m, k=k, d=d, n=n, seed=seed)
        for noise in noises:
            results.append(run_synthetic(base.with_noise(noise), loss=loss, refiner=refiner,
                                         downstream_dim=downstream_dim, max_iter=max_iter))
    return results
