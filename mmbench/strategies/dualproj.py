"""DualProj — projection of the mean gradient onto the dual cone.

Pierre Quinton, Valérian Rey, "Jacobian Descent for Multi-Objective Optimization",
arXiv:2406.16232, 2024 (the DualProj aggregator).

d = π_C(ḡ) with ḡ = (1/k) Σ g_i and C = {x : Gx >= 0}. In weight form

    w = argmin_{v >= 1/k} vᵀKv,   d = wᵀG,

solved exactly as a small non-negative least-squares problem
(:func:`~mmbench.strategies.gram.project_onto_dual_cone`). Same weights as the authors'
library, torchjd 0.18.0 ``torchjd/aggregation/_dualproj.py`` (``DualProjWeighting``: the
mean weights projected by ``QuadprogProjector``); ``reg_eps`` and ``norm_eps`` reproduce its
regularisation exactly as in :mod:`mmbench.strategies.upgrad` (reg_eps = 0: the exact
method).

Invariances: permutation equivariant; non-conflicting (G d >= 0); equal to the mean when
the mean already conflicts with no row (K1 >= 0); d(sG) = s · d(G) with unchanged weights
for s > 0. Not linear under per-objective scaling (unlike UPGrad, the projection is applied
after the rows are mixed).
"""

from __future__ import annotations

import torch

from mmbench.strategies.gram import (
    SOLVER_DTYPE,
    Aggregation,
    combine,
    is_finite,
    nonfinite_aggregation,
    project_onto_dual_cone,
    solver_gram,
)
from mmbench.strategies.upgrad import check_regularization, regularized_gram


def aggregate(
    G: torch.Tensor,
    *,
    reg_eps: float = 0.0,
    norm_eps: float = 1e-4,
    generator: torch.Generator | None = None,
) -> Aggregation:
    """DualProj: w = argmin_{v >= 1/k} vᵀKv, d = wᵀG."""
    check_regularization(reg_eps, norm_eps)
    K = solver_gram(G)
    if not is_finite(K):
        return nonfinite_aggregation(G)
    k = K.shape[0]
    mean = torch.full((k,), 1.0 / k, dtype=SOLVER_DTYPE)
    return combine(G, project_onto_dual_cone(regularized_gram(K, reg_eps, norm_eps), mean))
