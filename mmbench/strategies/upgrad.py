"""UPGrad — unconflicting projection of gradients.

Pierre Quinton, Valérian Rey, "Jacobian Descent for Multi-Objective Optimization",
arXiv:2406.16232, 2024.

Project every g_i onto the dual cone C = {x : Gx >= 0} and average:
d = (1/k) Σ_i π_C(g_i). In weight form (by duality, as in the paper), π_C(g_i) = v_iᵀG with

    v_i = argmin_{v >= e_i} vᵀKv,   w = (1/k) Σ_i v_i,   d = wᵀG,

each solved exactly as a small non-negative least-squares problem
(:func:`~mmbench.strategies.gram.project_onto_dual_cone`). ``reg_eps`` > 0 reproduces
TorchJD's numerical regularisation (trace-normalised K + reg_eps · I; TorchJD's default is
1e-4); the default 0 is the exact method.

Invariances: permutation equivariant; non-conflicting (G d >= 0); equal to the mean
when no two rows conflict (K >= 0 entrywise); linear under scaling: for any positive
per-objective scales c, d(diag(c) G) = (1/k) Σ_i c_i π_C(g_i) is linear in c (in
particular d(sG) = s · d(G) with unchanged weights).
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


def regularized_gram(K: torch.Tensor, reg_eps: float) -> torch.Tensor:
    """TorchJD's K / tr(K) + reg_eps · I (K itself when reg_eps = 0 or K = 0)."""
    trace = float(K.trace())
    if reg_eps <= 0 or not trace > 0:
        return K
    return K / trace + reg_eps * torch.eye(K.shape[0], dtype=K.dtype)


def aggregate(
    G: torch.Tensor,
    *,
    reg_eps: float = 0.0,
    generator: torch.Generator | None = None,
) -> Aggregation:
    """UPGrad: w = mean_i argmin_{v >= e_i} vᵀKv, d = wᵀG."""
    if reg_eps < 0:
        raise ValueError(f"reg_eps must be non-negative, got {reg_eps}")
    K = solver_gram(G)
    if not is_finite(K):
        return nonfinite_aggregation(G)
    identity = torch.eye(K.shape[0], dtype=SOLVER_DTYPE)
    projections = project_onto_dual_cone(regularized_gram(K, reg_eps), identity)
    return combine(G, projections.mean(0))
