"""UPGrad — unconflicting projection of gradients.

Pierre Quinton, Valérian Rey, "Jacobian Descent for Multi-Objective Optimization",
arXiv:2406.16232, 2024.

Project every g_i onto the dual cone C = {x : Gx >= 0} and average:
d = (1/k) Σ_i π_C(g_i). In weight form (by duality, as in the paper), π_C(g_i) = v_iᵀG with

    v_i = argmin_{v >= e_i} vᵀKv,   w = (1/k) Σ_i v_i,   d = wᵀG,

each solved exactly as a small non-negative least-squares problem
(:func:`~mmbench.strategies.gram.project_onto_dual_cone`). The weight form is the one of
the authors' library, torchjd (TorchJD/torchjd ``torchjd/aggregation/_upgrad.py``,
``UPGradWeighting``, and ``torchjd/_linalg/_dual_cone.py``, ``QuadprogProjector``, checked
in torchjd 0.18.0), which solves the same quadratic programs with quadprog after
regularising K. ``reg_eps`` > 0 reproduces that regularisation exactly: K / tr K +
reg_eps · I, and reg_eps · I alone when tr K < ``norm_eps`` (torchjd's ``normalize``, which
sets K / tr K to 0 there, so the weights become the mean). torchjd's defaults are
reg_eps = norm_eps = 1e-4; the default reg_eps = 0 here is the exact method (norm_eps then
unused).

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


def regularized_gram(K: torch.Tensor, reg_eps: float, norm_eps: float = 1e-4) -> torch.Tensor:
    """torchjd's regularisation N(K) + reg_eps · I, N(K) = K / tr K, or 0 if tr K < norm_eps.

    K itself when reg_eps = 0 (the exact method).
    """
    if reg_eps <= 0:
        return K
    trace = float(K.trace())
    normalized = K / trace if trace >= norm_eps and trace > 0 else torch.zeros_like(K)
    return normalized + reg_eps * torch.eye(K.shape[0], dtype=K.dtype)


def check_regularization(reg_eps: float, norm_eps: float) -> None:
    """ValueError unless both regularisation constants are non-negative."""
    if not reg_eps >= 0:
        raise ValueError(f"strategy.reg_eps must be non-negative (0 = exact), got {reg_eps}")
    if not norm_eps >= 0:
        raise ValueError(f"strategy.norm_eps must be non-negative (torchjd: 1e-4), got {norm_eps}")


def aggregate(
    G: torch.Tensor,
    *,
    reg_eps: float = 0.0,
    norm_eps: float = 1e-4,
    generator: torch.Generator | None = None,
) -> Aggregation:
    """UPGrad: w = mean_i argmin_{v >= e_i} vᵀKv, d = wᵀG."""
    check_regularization(reg_eps, norm_eps)
    K = solver_gram(G)
    if not is_finite(K):
        return nonfinite_aggregation(G)
    identity = torch.eye(K.shape[0], dtype=SOLVER_DTYPE)
    projections = project_onto_dual_cone(regularized_gram(K, reg_eps, norm_eps), identity)
    return combine(G, projections.mean(0))
