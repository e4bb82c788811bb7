"""GradVac — gradient vaccine.

Zirui Wang, Yulia Tsvetkov, Orhan Firat, Yuan Cao, "Gradient Vaccine: Investigating and
Improving Multi-task Optimization in Massively Multilingual Models", ICLR 2021.

State: EMA targets φ̂_ij of the cosine between the (adjusted) g_i and g_j, initially 0.
For each i: g_i' = g_i; for each j != i in random order, with φ = cos(g_i', g_j):
if φ < φ̂_ij,

    g_i' <- g_i' + ||g_i'|| (φ̂_ij sqrt(1 - φ²) - φ sqrt(1 - φ̂_ij²)) / (||g_j|| sqrt(1 - φ̂_ij²)) g_j,

which sets cos(g_i', g_j) to exactly φ̂_ij; then φ̂_ij <- (1 - β) φ̂_ij + β φ for every
pair, adjusted or not, with φ measured before the adjustment: the paper's Algorithm 1, as
in LibMTL ``LibMTL/weighting/GradVac.py`` since its commit d2d84fa ("fix a bug in
GradVac", 2024; checked at 43368048; before it LibMTL updated only the adjusted pairs) and
torchjd 0.18.0 ``torchjd/aggregation/_gradvac.py`` (crosschecked, with the state, in
tests/test_torchjd_crosscheck.py). d = Σ_i g_i'. β = 0.01 here (conf); LibMTL's
``--GradVac_beta`` and torchjd default to 0.5. Both add 1e-8 to the denominators where
this floors sqrt(1 - φ̂²) at ``eps``; LibMTL's per-layer groups (``GradVac_group_type``)
are not offered (the whole encoder is one group, their default 0). With zero targets and
k = 2 this is PCGrad.

As in PCGrad, g_i' = Σ_l C_il g_l and every norm and cosine is read from K, so the
surgery runs on the k×k coefficients and w = 1ᵀC. A pair with a zero gradient has no
cosine: it is skipped (no adjustment, target unchanged). sqrt(1 - φ̂²) is kept >= eps.

Invariances: direction(sG) = s · direction(G), weights and new state unchanged, for
s > 0. Not permutation invariant for k >= 3 (random order), and the state is indexed by
objective, so permuting rows requires permuting the state too.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from mmbench.strategies.gram import (
    SOLVER_DTYPE,
    Aggregation,
    check_gradient_matrix,
    combine,
    is_finite,
    nonfinite_aggregation,
    random_order,
    solver_gram,
)


class GradVacState(NamedTuple):
    """EMA cosine targets φ̂ (k, k), float64 on the CPU; row i = objective being adjusted."""

    target: torch.Tensor

    @classmethod
    def initial(cls, k: int) -> GradVacState:
        """Zero targets (the paper's initialisation)."""
        return cls(torch.zeros(k, k, dtype=SOLVER_DTYPE))


def vaccinate(
    K: torch.Tensor,
    target: torch.Tensor,
    beta: float,
    eps: float,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coefficients C (g_i' = Σ_l C_il g_l) and the updated targets (K float64 CPU)."""
    k = K.shape[0]
    coefficients = torch.eye(k, dtype=SOLVER_DTYPE)
    new_target = target.clone()
    norms = K.diagonal().clamp_min(0).sqrt()
    for i in range(k):
        for j in random_order([j for j in range(k) if j != i], generator):
            norm_i = math.sqrt(max(float(coefficients[i] @ K @ coefficients[i]), 0.0))
            norm_j = float(norms[j])
            if norm_i <= 0 or norm_j <= 0:
                continue
            cosine = min(max(float(coefficients[i] @ K[:, j]) / (norm_i * norm_j), -1.0), 1.0)
            goal = float(new_target[i, j])
            if cosine < goal:
                goal_sine = max(math.sqrt(max(1.0 - goal**2, 0.0)), eps)
                sine = math.sqrt(max(1.0 - cosine**2, 0.0))
                coefficients[i, j] += (
                    norm_i * (goal * sine - cosine * goal_sine) / (norm_j * goal_sine)
                )
            new_target[i, j] = (1 - beta) * goal + beta * cosine
    return coefficients, new_target


def aggregate(
    G: torch.Tensor,
    state: GradVacState | None = None,
    *,
    beta: float = 0.01,
    eps: float = 1e-8,
    generator: torch.Generator | None = None,
) -> tuple[Aggregation, GradVacState]:
    """GradVac: d = Σ_i g_i' towards the EMA cosine targets; returns the updated state.

    ``state=None`` starts from zero targets. The given state is not modified.
    """
    if not 0 <= beta <= 1:
        raise ValueError(f"beta must lie in [0, 1], got {beta}")
    check_gradient_matrix(G)
    k = G.shape[0]
    state = GradVacState.initial(k) if state is None else state
    target = state.target.detach().to(device="cpu", dtype=SOLVER_DTYPE)
    if target.shape != (k, k):
        raise ValueError(f"state for {tuple(target.shape)} targets, gradients have k = {k}")
    K = solver_gram(G)
    if not is_finite(K):
        return nonfinite_aggregation(G), GradVacState(target.clone())
    coefficients, new_target = vaccinate(K, target, beta, eps, generator)
    return combine(G, coefficients.sum(0)), GradVacState(new_target)
