"""The synthetic setting of latent graph induction (paper §4, Theorem 4.1).

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

Noise (``noise = σ``) is added to the fusion input, ``X = A F + σ ε`` (ε standard
normal, the features have unit variance, so σ is relative); targets stay clean.
Noise on ``F`` alone would be harmless: ``E = W A F`` holds for every ``F``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np


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

    m = property(lambda self: self.A.shape[0], doc="number of modalities")
    k = property(lambda self: self.W.shape[0], doc="fused dimension")
    n = property(lambda self: self.F.shape[0], doc="number of samples")
    d = property(lambda self: self.F.shape[2], doc="feature dimension")

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
