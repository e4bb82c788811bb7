"""Nash-MTL — multi-task learning as a bargaining game.

Aviv Navon, Aviv Shamsian, Idan Achituve, Haggai Maron, Kenji Kawaguchi, Gal Chechik,
Ethan Fetaya, "Multi-Task Learning as a Bargaining Game", ICML 2022. Follows the authors'
code, AvivNavon/nash-mtl ``methods/weight_methods.py`` (class ``NashMTL``, checked at
commit cce18403), and torchjd 0.18.0's port ``torchjd/aggregation/_nash_mtl.py``.

The Nash bargaining solution d = Σ α_i g_i has α > 0 solving

    (K α)_i = 1 / α_i   for all i,   K = G Gᵀ,

i.e. <g_i, d> = 1 / α_i: every objective gets a share inversely proportional to its weight.
Then ||d||² = Σ_i α_i <g_i, d> = k (over the non-zero rows), whatever the gradients' scale.

The authors' code divides K by ||K||_F but puts the same factor back in its constraint
(log(α_i ||K||_F) + log((K / ||K||_F) α)_i >= 0), so it solves these equations for the
unnormalised K: the division only conditions the solver. Here too the equations are solved
for K itself, so the direction is invariant to every per-objective scaling g_i -> s_i g_i
(α_i -> α_i / s_i), in particular to a common one.

Solver: these are the stationarity conditions of the strictly convex
f(α) = ½ αᵀKα - Σ_i log α_i, minimised (on the cosine matrix, α_i = β_i / ||g_i||) by
Newton's method with the Newton decrement as stopping rule and a backtracking (Armijo) line
search that keeps α > 0, started from the best multiple of 1 (converged to round-off in a
few iterations, in place of the authors' sequence of at most ``optim_niter`` = 20
convex-concave (CCCP) cvxpy/ECOS steps, warm-started from the previous step's α and
stopped when α moves by < 1e-6 (their other test, ||K̃α - 1/α|| < 1e-3 on K̃ = K / ||K||_F,
is not zero at the solution unless ||K||_F = 1): the same unique solution, to their
tolerance; tests/test_torchjd_crosscheck.py finds torchjd's port within 1e-6 relative).
A solution exists only when no non-negative combination of the rows vanishes; for singular K
(anti-parallel rows, ...) the eigenvalues of the cosine matrix D^{-1} K D^{-1} (D = diag
||g_i||) are floored at μ = ``ridge`` (a no-op when they are all >= μ), which keeps f
bounded below, so α stays finite (large, ~ 1/sqrt(μ), on the degenerate directions, whose
rows cancel in d). Rows with g_i = 0 take no part in the bargain: α_i = 0.

Clipping: the authors' ``NashMTL.backward`` ends with
``clip_grad_norm_(shared_parameters, max_norm)``, default ``max_norm=1.0`` (their
experiments never change it). Here each encoder is the shared block of its own
[g_mm; g_u] problem, so ``max_norm`` > 0 rescales that encoder's direction (and weights) by
min(1, max_norm / (||d|| + 1e-6)), torch's ``clip_grad_norm_`` factor; ``max_norm=0``
turns it off (torchjd's convention). With k >= 2 non-zero rows ||d|| = sqrt(k) > 1, so the
default always clips. Left out: the authors' ``update_weights_every`` (reuse α for several
steps; their default and every experiment use 1, i.e. solve every step, which is what this
does).

Invariances: permutation equivariant; the direction (clipped or not) is invariant to
per-objective positive scaling, with α_i -> α_i / s_i.
"""

from __future__ import annotations

import math

import torch

from mmbench.strategies.gram import (
    SOLVER_DTYPE,
    Aggregation,
    combine,
    is_finite,
    nonfinite_aggregation,
    solver_gram,
)


def bargaining_objective(K: torch.Tensor, alpha: torch.Tensor) -> float:
    """f(α) = ½ αᵀKα - Σ log α_i (+inf outside α > 0)."""
    if not bool((alpha > 0).all()):
        return math.inf
    return float(0.5 * alpha @ K @ alpha - alpha.log().sum())


def nash_bargaining_weights(
    K: torch.Tensor, ridge: float = 1e-8, max_iter: int = 100, tol: float = 1e-24
) -> torch.Tensor:
    """α > 0 with (K α)_i = 1 / α_i over the non-zero rows (K float64 CPU); 0 for zero rows.

    With D = diag(||g_i||) and the cosine matrix C = D^{-1} K D^{-1} = V Λ Vᵀ, α = D^{-1} β
    where β minimises f(β) = ½ βᵀC_μβ - Σ log β_i, C_μ = V max(Λ, μ) Vᵀ, μ = ``ridge``:
    the eigenvalue floor changes nothing when λ_min(C) >= μ and otherwise (singular K, or
    round-off negatives) keeps f bounded below; it is continuous in K and, acting on C,
    keeps the per-objective scale invariance exactly. Newton steps: backtracking (Armijo,
    inside β > 0) while the decrement λ = sqrt(∇fᵀ H^{-1} ∇f) >= 1/4, full steps in the
    quadratic region below; stop when λ² <= tol or λ stops decreasing there (round-off
    floor).
    """
    k = K.shape[0]
    active = (K.diagonal() > 0).nonzero().flatten()
    weights = torch.zeros(k, dtype=SOLVER_DTYPE)
    if active.numel() == 0:
        return weights
    sub = K[active][:, active]
    norms = sub.diagonal().sqrt()
    m = active.numel()
    eigenvalues, eigenvectors = torch.linalg.eigh(sub / torch.outer(norms, norms))
    cosines = (eigenvectors * eigenvalues.clamp_min(ridge)) @ eigenvectors.T
    cosines = (cosines + cosines.T) / 2
    ones = torch.ones(m, dtype=SOLVER_DTYPE)
    total = float(ones @ cosines @ ones)
    beta = ones * (math.sqrt(m / total) if total > 0 else 1.0)
    value = bargaining_objective(cosines, beta)
    previous_decrement_sq = math.inf
    for _ in range(max_iter):
        gradient = cosines @ beta - 1 / beta
        step = torch.linalg.solve(cosines + torch.diag(beta**-2), gradient)
        decrement_sq = float(gradient @ step)
        if not decrement_sq > tol:
            break
        if decrement_sq < 1 / 16:
            if decrement_sq >= previous_decrement_sq:
                break
            beta, previous_decrement_sq = beta - step, decrement_sq
            value = bargaining_objective(cosines, beta)
            continue
        size = 1.0
        candidate = beta - step
        candidate_value = bargaining_objective(cosines, candidate)
        while candidate_value > value - 0.25 * size * decrement_sq and size > 1e-3:
            size *= 0.5
            candidate = beta - size * step
            candidate_value = bargaining_objective(cosines, candidate)
        if candidate_value > value - 0.25 * size * decrement_sq:
            candidate = beta - step / (1 + math.sqrt(decrement_sq))
            candidate_value = bargaining_objective(cosines, candidate)
        beta, value = candidate, candidate_value
    weights[active] = beta / norms
    return weights


def clip_coefficient(K: torch.Tensor, weights: torch.Tensor, max_norm: float) -> float:
    """min(1, max_norm / (||d|| + 1e-6)) with ||d||² = wᵀKw (torch's clip_grad_norm_); 1 if off."""
    if max_norm == 0:
        return 1.0
    norm = math.sqrt(max(float(weights @ K @ weights), 0.0))
    return min(1.0, max_norm / (norm + 1e-6))


def aggregate(
    G: torch.Tensor,
    *,
    max_norm: float = 1.0,
    ridge: float = 1e-8,
    max_iter: int = 100,
    generator: torch.Generator | None = None,
) -> Aggregation:
    """Nash-MTL: d = c Σ α_i g_i with (Kα)_i = 1/α_i, c = min(1, max_norm / (||Σ α_i g_i|| + 1e-6)).

    ``max_norm=0`` gives the unclipped solution (||d||² = number of non-zero rows).
    """
    if ridge < 0:
        raise ValueError(f"ridge must be non-negative, got {ridge}")
    if not max_norm >= 0:
        raise ValueError(f"max_norm must be non-negative (0 turns clipping off), got {max_norm}")
    K = solver_gram(G)
    if not is_finite(K):
        return nonfinite_aggregation(G)
    weights = nash_bargaining_weights(K, ridge, max_iter)
    return combine(G, weights * clip_coefficient(K, weights, max_norm))
