"""Aligned-MTL — aligning the principal components of the gradient matrix.

Dmitry Senushkin, Nikolay Patakin, Arseny Kuznetsov, Anton Konushin, "Independent Component
Alignment for Multi-Task Learning", CVPR 2023.

With K = G Gᵀ = V Λ Vᵀ (torch.linalg.eigh), the aligned gradient matrix B G has all its
singular values equal to σ = sqrt(λ_min) (condition number 1):

    B = sqrt(λ_min) V Λ^{-1/2} Vᵀ,   α = B 1,   d = Σ α_i g_i.

Follows the authors' code, SamsungLabs/MTL ``code/optim/aligned/solver.py``
(``ProcrustesSolver``, commit 3f577f13) and ``balancer.py`` (the step sums the aligned
gradients: α = B 1). torchjd 0.18.0 ``torchjd/aggregation/_aligned_mtl.py`` applies B to the
mean weights 1/k, i.e. returns 1/k times this (crosschecked in
tests/test_torchjd_crosscheck.py).

Rank deficiency (zero, duplicate, (anti-)parallel rows): as in the authors' code only the
eigenpairs with λ > rtol · λ_max are kept (default rtol = k · eps of K's precision, where
the authors use ``torch.finfo()``, the default dtype's eps, whatever K's dtype) and
λ_min is the smallest kept one, so B = sqrt(λ_r) V_r Λ_r^{-1/2} V_rᵀ and B K B = λ_r P_r
(P_r the projector on the kept eigenspace). ``scale_mode`` picks σ² among the kept
eigenvalues as the authors' code: ``min`` (the paper), ``median`` (lower median) or
``rmse`` (mean). All-zero gradients give α = 0.

Invariances: permutation equivariant (B is a matrix function of K);
direction(sG) = s · direction(G) with unchanged weights for s > 0. Not invariant to
per-objective scaling (the spectrum changes) and not promised to be non-conflicting.
"""

from __future__ import annotations

from typing import Literal

import torch

from mmbench.strategies.gram import (
    SOLVER_DTYPE,
    Aggregation,
    as_solver_matrix,
    combine,
    default_rank_rtol,
    is_finite,
    nonfinite_aggregation,
    solver_gram,
)

ScaleMode = Literal["min", "median", "rmse"]


def alignment_matrix(
    K: torch.Tensor, rtol: float | None = None, scale_mode: ScaleMode = "min"
) -> torch.Tensor:
    """B = σ V_r Λ_r^{-1/2} V_rᵀ over the eigenpairs with λ > rtol · λ_max (float64 CPU)."""
    K64 = as_solver_matrix(K)
    k = K64.shape[0]
    tolerance = default_rank_rtol(K.dtype, k) if rtol is None else rtol
    eigenvalues, eigenvectors = torch.linalg.eigh(K64)
    largest = float(eigenvalues[-1])
    kept = eigenvalues > tolerance * largest
    if not (largest > 0 and bool(kept.any())):
        return torch.zeros(k, k, dtype=SOLVER_DTYPE)
    spectrum, basis = eigenvalues[kept], eigenvectors[:, kept]
    if scale_mode == "min":
        sigma_sq = spectrum.min()
    elif scale_mode == "median":
        sigma_sq = spectrum.median()
    elif scale_mode == "rmse":
        sigma_sq = spectrum.mean()
    else:
        raise ValueError(f"scale_mode must be min, median or rmse, got {scale_mode!r}")
    return sigma_sq.sqrt() * (basis / spectrum.sqrt()) @ basis.T


def aggregate(
    G: torch.Tensor,
    *,
    rtol: float | None = None,
    scale_mode: ScaleMode = "min",
    generator: torch.Generator | None = None,
) -> Aggregation:
    """Aligned-MTL: α = B 1 with B = sqrt(λ_min) V Λ^{-1/2} Vᵀ from K = V Λ Vᵀ; d = αᵀG.

    ``rtol`` defaults to k · eps of G's precision (float32 at least).
    """
    K = solver_gram(G)
    if not is_finite(K):
        return nonfinite_aggregation(G)
    tolerance = default_rank_rtol(G.dtype, K.shape[0]) if rtol is None else rtol
    B = alignment_matrix(K, tolerance, scale_mode)
    return combine(G, B.sum(1))
