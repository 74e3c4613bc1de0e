"""Training the linear ReFNet of the synthetic setting (``synthetic.py``): fusion Ŵ and refiner Γ.

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
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from mmf_refnet.analysis.graph.synthetic import SyntheticGraph, downstream_readout

LOSSES = ("cosine", "mse")

_DTYPE = torch.float64  # the recovery targets are 1e-3; float64 keeps optimisation error far below that

_COS_EPS = 1e-12  # smooths |F̃_i| at 0 (Ŵ starts at 0); bias ~1e-12 / |F̃_i|^2 at the optimum


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
    spinning on a busy machine cost far more than they saved; one thread
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
