"""ConFIG — conflict-free inverse gradients.

Qiang Liu, Mengyu Chu, Nils Thuerey, "ConFIG: Towards Conflict-free Training of Physics
Informed Neural Networks", arXiv:2408.11104, 2024 (ICLR 2025).

With unit rows û_i = g_i / ||g_i|| stacked in U:

    v = U⁺ 1,   v̂ = v / ||v||,   d = (Σ_i g_iᵀ v̂) v̂,

so that <û_i, v> = 1 for every i (equal cosines) whenever the rows are linearly
independent. Follows the authors' code, tum-pbs/ConFIG ``conflictfree/grad_operator.py``
(``ConFIG_update`` with its defaults ``EqualWeight`` and ``ProjectionLength``, from
``conflictfree/length_model.py``; commit 94862437), as does torchjd 0.18.0
``torchjd/aggregation/_config.py`` (crosschecked in tests/test_torchjd_crosscheck.py).
U⁺1 = Uᵀ(UUᵀ)⁺1 (the minimum-norm least-squares solution, the official
code's ``lstsq``/``pinv``), so v = Σ_i (β_i / ||g_i||) g_i with β = C⁺1 and C = UUᵀ the
cosine matrix; C⁺ drops eigenvalues <= rtol · λ_max (default k · eps of K's precision).
Zero rows have no unit vector (the official code's nan_to_num makes them zero rows):
they get weight 0. Weights: with c_i = β_i / ||g_i||, w = (1ᵀKc / cᵀKc) c.
When v = 0 (e.g. two exactly anti-parallel rows) d = 0.

Invariances: permutation equivariant; d(sG) = s · d(G) with unchanged weights for s > 0;
under per-objective scaling the direction keeps its line (v̂ depends on the unit vectors
only). Non-conflicting (G d >= 0, with <û_i, d> equal for all i) when the rows are
linearly independent; not for dependent rows, where U v = 1 has no solution.
"""

from __future__ import annotations

import torch

from mmbench.strategies.gram import (
    SOLVER_DTYPE,
    Aggregation,
    combine,
    default_rank_rtol,
    is_finite,
    nonfinite_aggregation,
    solver_gram,
)


def symmetric_pinv(C: torch.Tensor, rtol: float) -> torch.Tensor:
    """Pseudo-inverse of a PSD matrix, eigenvalues <= rtol · λ_max treated as zero."""
    eigenvalues, eigenvectors = torch.linalg.eigh(C)
    largest = float(eigenvalues[-1])
    kept = eigenvalues > rtol * max(largest, 0.0)
    basis = eigenvectors[:, kept]
    return (basis / eigenvalues[kept]) @ basis.T


def conflict_free_weights(K: torch.Tensor, rtol: float) -> torch.Tensor:
    """w with wᵀG = (Σ g_iᵀ v̂) v̂, v = U⁺1 (K float64 CPU)."""
    k = K.shape[0]
    weights = torch.zeros(k, dtype=SOLVER_DTYPE)
    active = (K.diagonal() > 0).nonzero().flatten()
    if active.numel() == 0:
        return weights
    norms = K.diagonal()[active].sqrt()
    cosines = K[active][:, active] / torch.outer(norms, norms)
    beta = symmetric_pinv(cosines, rtol).sum(1)
    coefficients = torch.zeros(k, dtype=SOLVER_DTYPE)
    coefficients[active] = beta / norms
    length_sq = float(coefficients @ K @ coefficients)
    if not length_sq > 0:
        return weights
    return float(K.sum(0) @ coefficients) / length_sq * coefficients


def aggregate(
    G: torch.Tensor,
    *,
    rtol: float | None = None,
    generator: torch.Generator | None = None,
) -> Aggregation:
    """ConFIG: d = (Σ g_iᵀ v̂) v̂ with v = [û_1; ...; û_k]⁺ 1 and v̂ = v / ||v||."""
    K = solver_gram(G)
    if not is_finite(K):
        return nonfinite_aggregation(G)
    tolerance = default_rank_rtol(G.dtype, K.shape[0]) if rtol is None else rtol
    return combine(G, conflict_free_weights(K, tolerance))
