"""Latent graph induction (paper §4: Theorem 4.1, Corollary 4.1).

Two parts, both returning numpy arrays / plain dicts, file outputs optional.

**1. The synthetic experiment** (``make_setting``, ``train_linear_refnet``,
``recovery_metrics``, ``run_synthetic``, ``sweep``, ``save_synthetic``).

Data model, read off the proof of Theorem 4.1. A sample is ``F`` (m × d): one
d-dim feature row per modality. An unknown symmetric 0/1 adjacency ``A`` (m × m,
with self-loops) links the modalities. The fusion module *sees* the features
after propagation over that graph, ``X = A F`` (it never sees ``A`` itself), and
applies its learnable linear weights ``Ŵ`` (k × m) across modalities:
``E = Ŵ X = Ŵ A F`` (k × d). Its effective weights are therefore
``W* = Ŵ A``, which is ``W A`` of Eq. 4 once ``Ŵ = W``. A linear refiner
``Γ`` (m × k) decodes ``F̃ = Γ E`` and is trained with the refiner loss
``Σ_i (1 − cos(F̃_i, F_i))`` (Eq. 3 with H_i = identity) or, optionally, MSE.

What pins ``Ŵ`` to the generator's ``W``: a downstream task whose target is
``P W A F`` (``P``: c × k readout). With ``c = k`` (default, "full"), the target
determines ``Ŵ = W`` — the theorem's premise that the fusion produces
``E = W A F``. With ``c < m`` (the paper's "downstream task of much lower
dimension") ``Ŵ`` is only determined on the c directions ``P`` reads; with
``c = 0`` there is no downstream task (refiner pre-training, Alg. 1).

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

Noise (``noise = σ``) is added to the fusion input, ``X = A F + σ ε`` (ε standard
normal, the features have unit variance, so σ is relative); targets stay clean.
Noise on ``F`` alone would be harmless: ``E = W A F`` holds for every ``F``.

Training: joint full-batch L-BFGS on downstream + refiner loss from ``Ŵ = 0``
(the refiner's gradient is what makes ``Ŵ`` full rank), then an exact polish:
for ``k ≥ m`` and full-rank ``Ŵ`` the objective splits into a least-squares
problem in ``Ŵ`` and a refiner problem in ``M = Γ Ŵ`` (see ``_polish``), which
L-BFGS in the badly conditioned (Ŵ, Γ) coordinates alone does not reach.

Control (``refiner=False``): the refiner loss is off, so ``Γ`` gets no gradient
and keeps its random initialisation, as a decoder head does in a network
trained without it, and recovery fails. ``probe_gw_err`` additionally asks
whether the fusion kept the graph at all: it is ``Γ_p W*`` for the best
least-squares decoder ``Γ_p`` of ``F`` from ``E`` fitted afterwards. With a
low-dim downstream task it fails too (``Ŵ`` starts at 0 and gradients stay in
the c directions ``P`` reads, so ``W*`` has rank c).

**2. Trained models** (``linear_fit``, ``fit_modalities``, ``decoder_jacobian``,
``modality_map``, ``analyze_embeddings``): generic over arrays and torch
callables, no MMF needed; ``analyze_embeddings`` is the hook for checkpoints.

**CLI**: ``main_graph(argv)`` implements ``refnet analyze graph``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

LOSSES = ("cosine", "mse")
_DTYPE = torch.float64  # the recovery targets are 1e-3; float64 keeps optimisation error far below that
_COS_EPS = 1e-12  # smooths |F̃_i| at 0 (Ŵ starts at 0); bias ~1e-12 / |F̃_i|^2 at the optimum
_PANEL_INCHES = (3.4, 3.0)
_DPI = 100


# --------------------------------------------------------------------------- synthetic setting


@dataclass(frozen=True, eq=False)
class SyntheticGraph:
    """One seeded synthetic setting. Arrays: ``A`` (m, m), ``W`` (k, m),
    ``F`` (n, m, d) features, ``eps`` (n, m, d) unit noise scaled by ``noise``."""

    A: np.ndarray
    W: np.ndarray
    F: np.ndarray
    eps: np.ndarray
    noise: float
    seed: int

    @property
    def m(self) -> int:
        return self.A.shape[0]

    @property
    def k(self) -> int:
        return self.W.shape[0]

    @property
    def n(self) -> int:
        return self.F.shape[0]

    @property
    def d(self) -> int:
        return self.F.shape[2]

    @property
    def WA(self) -> np.ndarray:
        """The weighted adjacency of Eq. 4 / Corollary 4.1."""
        return self.W @ self.A

    @property
    def fusion_input(self) -> np.ndarray:
        """What the fusion sees: features propagated over the graph, plus noise."""
        return np.einsum("ij,njd->nid", self.A, self.F) + self.noise * self.eps

    def with_noise(self, noise: float) -> SyntheticGraph:
        """Same graph, weights, features and noise direction; only σ changes, so
        a noise sweep compares like with like (common random numbers)."""
        return replace(self, noise=float(noise))


def random_adjacency(m: int, rng: np.random.Generator, edge_prob: float = 0.5, max_cond: float = 25.0) -> np.ndarray:
    """Symmetric 0/1 adjacency with self-loops (undirected modality graph).

    Self-loops keep each modality's own features in ``A F``; rejection sampling
    keeps ``A`` well conditioned (a binary matrix can be singular, e.g. the
    complete graph is all-ones) and with at least one edge. That needs m ≥ 3:
    the only 2-node graph with an edge is all-ones, hence singular.
    """
    if m < 3:
        raise ValueError(f"m must be >= 3 (with self-loops every 2-node graph with an edge is singular), got {m}")
    for _ in range(10_000):
        upper = np.triu(rng.random((m, m)) < edge_prob, 1)
        adjacency = (upper | upper.T | np.eye(m, dtype=bool)).astype(np.float64)
        if adjacency.sum() > m and np.linalg.cond(adjacency) <= max_cond:
            return adjacency
    raise RuntimeError(f"no well-conditioned adjacency found for m={m}")


def random_weights(k: int, adjacency: np.ndarray, rng: np.random.Generator, max_cond: float = 25.0) -> np.ndarray:
    """Gaussian fusion weights W (k × m); for k ≥ m resampled until ``W A`` has
    condition number ≤ max_cond, so Corollary 4.1's inverse is well posed."""
    m = adjacency.shape[0]
    for _ in range(10_000):
        weights = rng.standard_normal((k, m)) / math.sqrt(m)
        if k < m or np.linalg.cond(weights @ adjacency) <= max_cond:
            return weights
    raise RuntimeError(f"no well-conditioned W found for k={k}, m={m}")


def make_setting(m: int = 4, k: int | None = None, d: int = 64, n: int = 128, noise: float = 0.0, seed: int = 0,
                 edge_prob: float = 0.5, max_cond: float = 25.0) -> SyntheticGraph:
    """Seeded synthetic setting (k defaults to m). Independent random streams
    for graph, weights, features and noise, so changing n or d leaves A, W alone."""
    k = m if k is None else k
    graph_rng, weight_rng, feature_rng, noise_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
    adjacency = random_adjacency(m, graph_rng, edge_prob, max_cond)
    weights = random_weights(k, adjacency, weight_rng, max_cond)
    features = feature_rng.standard_normal((n, m, d))
    eps = noise_rng.standard_normal((n, m, d))
    return SyntheticGraph(A=adjacency, W=weights, F=features, eps=eps, noise=float(noise), seed=int(seed))


def downstream_readout(k: int, dim: int, seed: int) -> np.ndarray:
    """Readout P (dim × k) of the downstream task: I for dim = k, else ``dim``
    orthonormal random rows (no preferred embedding direction)."""
    if dim == k:
        return np.eye(k)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    q, _ = np.linalg.qr(rng.standard_normal((k, k)))
    return q[:dim].copy()


# --------------------------------------------------------------------------- training


def refiner_loss(decoded: torch.Tensor, features: torch.Tensor, loss: str = "cosine") -> torch.Tensor:
    """Refiner loss over (m, n, d) = (modality, sample, feature): Eq. 3 summed
    over modalities (γ_i = 1) and averaged over samples; ``mse`` sums squared
    errors over modalities and features, / d."""
    if loss == "cosine":
        dot = (decoded * features).sum(-1)
        norms = ((decoded * decoded).sum(-1) + _COS_EPS) * ((features * features).sum(-1) + _COS_EPS)
        return (1.0 - dot / norms.sqrt()).sum(0).mean()
    if loss == "mse":
        return ((decoded - features) ** 2).sum((0, 2)).mean() / features.shape[-1]
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


@contextmanager
def _single_thread() -> Iterator[None]:
    """Run torch on one thread: these tensors are tiny, and OpenMP threads
    spinning on a busy 2-core machine made each step ~100× slower; one thread
    also makes the floating-point reduction order, hence results, fixed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _moments(setting: SyntheticGraph) -> dict[str, torch.Tensor]:
    """Per-sample second moments; both losses are exact functions of them.

    Every map acts across modalities, so with ``X_n`` (m × d) the fusion input
    and ``F_n`` the features of sample n, all losses need only ``X_n X_nᵀ``,
    ``X_n F_nᵀ`` (m × m each) and the row norms ``|F_{n,i}|^2``: the objective
    costs O(n m^3) instead of O(n m d k), which makes a Newton polish cheap.
    """
    x, f = setting.fusion_input, setting.F
    sxx, sxf = np.einsum("nid,njd->nij", x, x), np.einsum("nid,njd->nij", x, f)
    stats = {"sxx": sxx, "sxf": sxf, "ff": (f * f).sum(-1), "cxx": sxx.sum(0), "cxf": sxf.sum(0),
             "cff": np.einsum("nid,njd->ij", f, f)}
    return {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in stats.items()}


def _moment_refiner_loss(mix: torch.Tensor, stats: Mapping[str, torch.Tensor], loss: str, d: int,
                         eps: float = _COS_EPS) -> torch.Tensor:
    """``refiner_loss`` of ``F̃_n = M X_n`` (M = Γ Ŵ, m × m) from the moments.
    ``eps = 0`` gives the exactly scale-invariant cosine (needs F̃ ≠ 0)."""
    n = stats["sxx"].shape[0]
    if loss == "cosine":
        dot = torch.einsum("ij,nji->ni", mix, stats["sxf"])
        sq = torch.einsum("ij,njl,il->ni", mix, stats["sxx"], mix)
        return (1.0 - dot / ((sq + eps) * (stats["ff"] + eps)).sqrt()).sum(1).mean()
    if loss == "mse":
        value = (mix @ stats["cxx"] * mix).sum() - 2.0 * torch.trace(mix @ stats["cxf"]) + torch.trace(stats["cff"])
        return value / (n * d)
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def _downstream_loss(w_hat: torch.Tensor, readout: torch.Tensor, target_map: torch.Tensor,
                     stats: Mapping[str, torch.Tensor], d: int) -> torch.Tensor:
    """``Σ_n |P Ŵ X_n − P W A F_n|^2 / (n d)`` from the moments (target_map = P W A)."""
    n = stats["sxx"].shape[0]
    v = readout @ w_hat
    value = ((v @ stats["cxx"]) * v).sum() - 2.0 * ((v @ stats["cxf"]) * target_map).sum()
    return (value + ((target_map @ stats["cff"]) * target_map).sum()) / (n * d)


def _lbfgs(objective: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor, max_iter: int) -> tuple[torch.Tensor, int]:
    """Full-batch L-BFGS with strong-Wolfe line search: gets into the basin."""
    theta = theta.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([theta], lr=1.0, max_iter=max_iter, max_eval=2 * max_iter, tolerance_grad=1e-12,
                                  tolerance_change=1e-16, history_size=50, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        value = objective(theta)
        value.backward()
        return value

    optimizer.step(closure)
    return theta.detach(), int(optimizer.state[theta].get("n_iter", 0))


def _newton(objective: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor, max_iter: int = 100,
            tol: float = 1e-13) -> tuple[torch.Tensor, int]:
    """Levenberg-damped Newton with the exact Hessian (for the m × m refiner
    map: ≤ 64 parameters for m ≤ 8). Converges quadratically; the damping
    copes with the flat directions of the cosine loss (row scales)."""
    grad_fn, hess_fn = torch.func.grad(objective), torch.func.hessian(objective)
    value, damping, eye = objective(theta), 1e-10, torch.eye(theta.numel(), dtype=theta.dtype)
    for iteration in range(max_iter):
        gradient = grad_fn(theta)
        if gradient.abs().max() <= tol:
            return theta, iteration
        hessian = hess_fn(theta)
        scale = hessian.diagonal().abs().max().clamp_min(1e-30)
        while damping < 1e12:
            # torch.linalg.solve, not lstsq: lstsq (MKL gelsy) is not bitwise repeatable on identical inputs
            step, info = torch.linalg.solve_ex(hessian + damping * scale * eye, -gradient)
            candidate = theta + step
            candidate_value = objective(candidate) if int(info) == 0 else value + 1.0
            if candidate_value <= value:
                break
            damping *= 10.0
        else:
            return theta, iteration
        converged = step.abs().max() <= 1e-15 * (1.0 + theta.abs().max()) or value - candidate_value <= 1e-13 * value.abs()
        theta, value, damping = candidate, candidate_value, max(damping / 10.0, 1e-12)
        if converged:
            return theta, iteration + 1
    return theta, max_iter


def _polish(w_hat: torch.Tensor, gamma: torch.Tensor, readout: torch.Tensor, target_map: torch.Tensor,
            stats: Mapping[str, torch.Tensor], loss: str, d: int) -> tuple[torch.Tensor, torch.Tensor, int] | None:
    """Move a trained (Ŵ, Γ) to the exact joint minimiser next to it.

    Why this is exact: the refiner loss depends on (Ŵ, Γ) only through
    ``M = Γ Ŵ`` (m × m) and the downstream loss only on Ŵ. When Ŵ has full
    column rank (k ≥ m; the refiner's gradient is what keeps it so), every M
    is reachable by ``Γ = M Ŵ⁺``, so the objective splits into two independent
    problems: a least-squares one in Ŵ (solved in closed form, moving Ŵ only
    along the rows P reads, i.e. the minimum-norm correction) and the refiner
    problem in M (damped Newton from ``Γ Ŵ`` or from the least-squares decoder
    ``F Xᵀ (X Xᵀ)⁻¹`` with the rows of ``Γ Ŵ``'s norms, whichever has the lower
    loss; the minimiser is unique up to the cosine's row scales, and those stay
    the ones training produced). In the (Ŵ, Γ) coordinates the
    same problem has Hessian condition ~1e7 for m = 8, where L-BFGS alone stalls
    at errors ~1e-2. Returns None when Ŵ is rank deficient (k < m, or no refiner).
    """
    m = w_hat.shape[1]
    if w_hat.shape[0] < m or torch.linalg.matrix_rank(w_hat) < m:
        return None
    if readout.shape[0]:
        best = target_map @ stats["cxf"].T @ torch.linalg.inv(stats["cxx"])  # least-squares P Ŵ
        w_hat = w_hat - readout.T @ (readout @ w_hat - best)  # P has orthonormal rows: P⁺ = Pᵀ

    def refiner_objective(flat: torch.Tensor) -> torch.Tensor:
        # eps = 0: with the smoothing, larger rows score marginally better and Newton creeps along the scale
        return _moment_refiner_loss(flat.reshape(m, m), stats, loss, d, eps=0.0)

    trained = gamma @ w_hat
    least_squares = stats["cxf"].T @ torch.linalg.inv(stats["cxx"])  # MSE minimiser; a near-optimal start for cosine
    # with the trained rows' norms, so the cosine's free row scales stay those training produced
    rescaled = least_squares * (trained.norm(dim=1) / least_squares.norm(dim=1).clamp_min(1e-300))[:, None]
    starts = [trained.reshape(-1), rescaled.reshape(-1)]
    mix, iterations = _newton(refiner_objective, min(starts, key=lambda start: float(refiner_objective(start))))
    pinv = torch.linalg.pinv(w_hat)
    gamma = mix.reshape(m, m) @ pinv + gamma @ (torch.eye(w_hat.shape[0], dtype=w_hat.dtype) - w_hat @ pinv)
    return w_hat, gamma, iterations


def train_linear_refnet(setting: SyntheticGraph, *, loss: str = "cosine", refiner: bool = True,
                        downstream_dim: int | None = None, refiner_weight: float = 1.0, max_iter: int = 500,
                        polish: bool = True, seed: int | None = None) -> dict[str, Any]:
    """Jointly train linear fusion ``Ŵ`` and refiner ``Γ`` (Alg. 1, linear case).

    Objective: downstream MSE ``|P Ŵ X − P W A F|^2 / d`` (c = ``downstream_dim``
    rows, default k; 0 = none) + ``refiner_weight`` · refiner loss on ``Γ Ŵ X``
    vs ``F``, averaged over samples. ``Ŵ`` starts at 0 so that directions no
    loss constrains stay at 0 (the minimum-norm fusion); ``Γ`` starts random
    (seeded) to break the bilinear saddle at 0. ``refiner=False`` is the
    control: ``Γ`` is not trained at all. Optimiser: joint full-batch L-BFGS
    (``max_iter``; this is where the refiner's gradient shapes Ŵ), then, with
    the refiner on, ``_polish`` to the exact minimiser next to the result.
    At that minimiser ``refiner_weight`` is immaterial (the problem splits); it
    only steers the path, i.e. which Ŵ is reached where the downstream task
    leaves Ŵ free. float64 on one thread: deterministic for a seed.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    m, k, d = setting.m, setting.k, setting.d
    dim = k if downstream_dim is None else int(downstream_dim)
    if not 0 <= dim <= k:
        raise ValueError(f"downstream_dim must be in [0, k={k}], got {dim}")
    if dim == 0 and not refiner:
        raise ValueError("nothing to train: no downstream task and no refiner loss")
    seed = setting.seed if seed is None else int(seed)
    readout = torch.from_numpy(downstream_readout(k, dim, seed)).reshape(dim, k)
    target_map = readout @ torch.from_numpy(setting.WA)
    stats = _moments(setting)
    gamma_init = np.random.default_rng(np.random.SeedSequence([seed, 2])).standard_normal((m, k)) / math.sqrt(k)
    gamma_fixed = torch.from_numpy(gamma_init)

    def unpack(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w_hat = theta[: k * m].reshape(k, m)
        return w_hat, theta[k * m:].reshape(m, k) if refiner else gamma_fixed

    def objective(theta: torch.Tensor) -> torch.Tensor:
        w_hat, gamma = unpack(theta)
        value = _downstream_loss(w_hat, readout, target_map, stats, d) if dim else theta.new_zeros(())
        if refiner:
            value = value + refiner_weight * _moment_refiner_loss(gamma @ w_hat, stats, loss, d)
        return value

    theta = torch.zeros(k * m, dtype=_DTYPE)
    if refiner:
        theta = torch.cat([theta, gamma_fixed.reshape(-1)])
    start = time.perf_counter()
    with _single_thread():
        theta, iterations = _lbfgs(objective, theta, max_iter)
        trained_loss = float(objective(theta))
        w_hat, gamma = unpack(theta)
        polished = _polish(w_hat, gamma, readout, target_map, stats, loss, d) if refiner and polish else None
        newton_iterations = 0
        if polished is not None:
            w_hat, gamma, newton_iterations = polished
            theta = torch.cat([w_hat.reshape(-1), gamma.reshape(-1)])
        final = float(objective(theta))
    return {"W_hat": w_hat.numpy().copy(), "Gamma": gamma.numpy().copy(), "readout": readout.numpy(),
            "downstream_dim": dim, "trained_loss": trained_loss, "final_loss": final, "iterations": iterations,
            "polished": polished is not None, "newton_iterations": newton_iterations,
            "seconds": time.perf_counter() - start}


# --------------------------------------------------------------------------- recovery metrics


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


# --------------------------------------------------------------------------- output: JSON, table, heatmaps

METRIC_KEYS = ("gw_err_raw", "gw_err", "adj_err", "adj_err_true", "graph_err", "wstar_err", "probe_gw_err")
_VOLATILE_KEYS = ("seconds",)  # left out of JSON so that files are reproducible byte for byte


def to_jsonable(value: Any) -> Any:
    """numpy → lists/Python scalars, NaN/inf → None (valid JSON)."""
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    return value


def write_json(obj: Any, path: str | Path) -> Path:
    """Deterministic JSON (sorted keys, volatile keys dropped)."""
    def strip(item: Any) -> Any:
        if isinstance(item, Mapping):
            return {key: strip(value) for key, value in item.items() if key not in _VOLATILE_KEYS}
        if isinstance(item, list):
            return [strip(value) for value in item]
        return item

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(strip(to_jsonable(obj)), indent=2, sort_keys=True) + "\n")
    return path


def format_table(results: Sequence[Mapping[str, Any]]) -> str:
    """Plain-text table of the synthetic results (one row per run)."""
    head = ["m", "k", "noise", "loss", "refiner", "down", *METRIC_KEYS, "iters", "sec"]
    rows = [head]
    for r in results:
        rows.append([str(r["m"]), str(r["k"]), f"{r['noise']:g}", r["loss"], "on" if r["refiner"] else "off",
                     str(r["downstream_dim"]), *(f"{r[key]:.2e}" if math.isfinite(r[key]) else "n/a" for key in METRIC_KEYS),
                     f"{r['iterations']}+{r.get('newton_iterations', 0)}", f"{r['seconds']:.2f}"])
    widths = [max(len(row[col]) for row in rows) for col in range(len(head))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in rows)


def save_heatmaps(panels: Sequence[tuple], path: str | Path, title: str = "", ncols: int = 3,
                  cmap: str = "RdBu_r") -> Path:
    """Grid of annotated heatmaps as a reproducible PNG.

    ``panels``: ``(title, matrix)`` or ``(title, matrix, (vmin, vmax))``; the
    default colour range is symmetric around 0; all-NaN panels show "n/a".
    Uses matplotlib's object API with the Agg canvas (no pyplot, no global
    backend switch), a fixed size (no tight bbox) and no Software/date metadata,
    so equal inputs give byte-identical files.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    nrows = -(-len(panels) // ncols)
    fig = Figure(figsize=(_PANEL_INCHES[0] * ncols, _PANEL_INCHES[1] * nrows + (0.4 if title else 0.0)), dpi=_DPI)
    FigureCanvasAgg(fig)
    for index, (name, matrix, *vrange) in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, index + 1)
        _draw_panel(fig, ax, name, np.asarray(matrix, dtype=np.float64), vrange[0] if vrange else None, cmap)
    for index in range(len(panels), nrows * ncols):
        fig.add_subplot(nrows, ncols, index + 1).set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


def _draw_panel(fig: Any, ax: Any, name: str, matrix: np.ndarray, vrange: tuple[float, float] | None, cmap: str) -> None:
    """One heatmap with per-cell values (for matrices up to 10 × 10)."""
    ax.set_title(name, fontsize=9)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if not np.isfinite(matrix).any():
        ax.text(0.5, 0.5, "n/a", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    if vrange is None:
        bound = float(np.nanmax(np.abs(matrix))) or 1.0
        vrange = (-bound, bound)
    image = ax.imshow(matrix, cmap=cmap, vmin=vrange[0], vmax=vrange[1], interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(matrix.shape[1]))
    ax.set_yticks(range(matrix.shape[0]))
    ax.tick_params(labelsize=7)
    if max(matrix.shape) <= 10:
        dark = 0.6 * max(abs(vrange[0]), abs(vrange[1]))
        spec = ".0e" if np.nanmax(np.abs(matrix)) < 5e-3 else ".2f"  # tiny differences: show their size
        for (row, col), value in np.ndenumerate(matrix):
            colour = "white" if abs(value) > dark else "black"
            ax.text(col, row, format(value, spec), ha="center", va="center", fontsize=6, color=colour)


def plot_synthetic(result: Mapping[str, Any], path: str | Path) -> Path:
    """Heatmaps for one synthetic run: recovered Γ̃^{-1} next to W A and their
    difference; Γ̃ W* (≈ I); recovered graph Â next to A."""
    mats = result["matrices"]
    unit = (-1.0, 1.0)
    panels = [("recovered Γ̃⁻¹ (Γ̃: gain-normalised Γ)", mats["Gamma_inv"]), ("true W A", mats["WA"]),
              ("Γ̃⁻¹ − W A", mats["Gamma_inv"] - mats["WA"]), ("Γ̃ W*  (should be I)", mats["GW"], unit),
              ("recovered graph Â = Ŵ⁻¹ Γ̃⁻¹", mats["A_rec"], unit), ("true graph A", mats["A"], unit)]
    title = (f"m={result['m']} k={result['k']} noise={result['noise']:g} loss={result['loss']} "
             f"refiner={'on' if result['refiner'] else 'off'} downstream={result['downstream_dim']}  "
             f"|Γ̃W*−I|={result['gw_err']:.1e}  |Γ̃⁻¹−WA|={result['adj_err_true']:.1e}")
    return save_heatmaps(panels, path, title=title)


def synthetic_name(result: Mapping[str, Any]) -> str:
    """File stem encoding the run's parameters."""
    tag = "" if result["refiner"] else "_norefiner"
    return (f"graph_m{result['m']}_k{result['k']}_noise{result['noise']:g}_{result['loss']}"
            f"_down{result['downstream_dim']}{tag}")


def save_synthetic(results: Sequence[Mapping[str, Any]], out_dir: str | Path, name: str = "graph_synthetic") -> dict[str, Any]:
    """One heatmap PNG per run plus ``{name}.json`` (metrics and matrices of
    every run, no timings: reproducible); returns the written paths."""
    out_dir = Path(out_dir)
    pngs = [plot_synthetic(result, out_dir / f"{synthetic_name(result)}.png") for result in results]
    json_path = write_json({"results": list(results)}, out_dir / f"{name}.json")
    return {"png": pngs, "json": json_path}


# --------------------------------------------------------------------------- trained models


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


def plot_modality_map(result: Mapping[str, Any], path: str | Path) -> Path:
    """Annotated heatmap of ``modality_map``'s M (rows: decoded-from modality i,
    columns: explained modality j), R² range [0, 1]; reproducible PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names, matrix = result["modalities"], np.asarray(result["matrix"])
    size = max(3.2, 0.9 * len(names) + 2.2)
    fig = Figure(figsize=(size + 0.8, size), dpi=_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="R²")
    ax.set_xticks(range(len(names)), labels=names)
    ax.set_yticks(range(len(names)), labels=[f"{name} (r={result['rank'][name]})" for name in names])
    ax.set_xlabel("explained modality j")
    ax.set_ylabel("F_emb part decoding modality i")
    for (row, col), value in np.ndenumerate(matrix):
        ax.text(col, row, f"{value:.2f}", ha="center", va="center", color="white" if value < 0.5 else "black")
    ax.set_title("modality map M[i, j]", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


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


# --------------------------------------------------------------------------- CLI

# A checkpoint loader maps a path to {"embeddings": (n, k) array, "targets": {modality: (n, d_i) array},
# optionally "decoders": {modality: callable}}; the MMF-aware one is passed in by mmf_refnet.cli.
CheckpointLoader = Callable[[str], Mapping[str, Any]]


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``refnet analyze graph``."""
    parser = argparse.ArgumentParser(prog="refnet analyze graph",
                                     description="Latent graph induction (ReFNet paper §4, Theorem 4.1 / Corollary 4.1).")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--synthetic", action="store_true", help="run the synthetic linear experiment")
    source.add_argument("--checkpoint", metavar="PATH", help="analyse a trained refnet checkpoint")
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
    return parser


def main_graph(argv: Sequence[str] | None = None, *, load_checkpoint: CheckpointLoader | None = None) -> int:
    """``refnet analyze graph``: prints a table, writes PNG + JSON with --out."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.checkpoint:
        if load_checkpoint is None:
            parser.error("--checkpoint needs a checkpoint loader (mmf_refnet.cli passes one); "
                         "from Python call mmf_refnet.analysis.graph.analyze_embeddings(embeddings, targets, ...)")
        loaded = load_checkpoint(args.checkpoint)
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
