"""CAGrad — conflict-averse gradient descent.

Bo Liu, Xingchao Liu, Xiaojie Jin, Peter Stone, Qiang Liu, "Conflict-Averse Gradient Descent
for Multi-task Learning", NeurIPS 2021.

With g0 = (1/k) Σ g_i and g_w = Σ w_i g_i, the dual of max_d min_i <g_i, d> s.t.
||d - g0|| <= c ||g0|| is

    w* = argmin_{w in Δ} F(w),   F(w) = g_wᵀ g0 + c ||g0|| ||g_w||,
    d = (g0 + (c ||g0|| / ||g_w*||) g_w*) / r,

with r = 1 (``rescale=0``), 1 + c² (``rescale=1``) or 1 + c (``rescale=2``), as in the
authors' code, Cranial-XIX/CAGrad ``nyuv2/utils.py`` function ``cagrad`` (commit dc3d4815;
their training loop calls it with ``rescale=1``); c = 0.4 is the value of their
``nyuv2/run.sh`` and ``cityscapes/run.sh`` (``--alpha 0.4``).
Weights: w_i = (1/k + λ w*_i) / r with λ = c ||g0|| / ||g_w*||. ``reduction="sum"``
multiplies d by k, as their ``overwrite_grad`` does ("newgrad * 3 # to match the sum
loss"; ``conf/strategy/cagrad.yaml`` uses it); the function's default ``"mean"`` (d built on
the mean g0) is torchjd's scale (torchjd 0.18.0
``torchjd/aggregation/_cagrad.py``, which has no rescaling: our ``rescale=0``,
crosschecked in tests/test_torchjd_crosscheck.py). The authors' 1e-8 guards (in ||g0||, c
and λ) are left out.

Solver (exact up to a 1-D tolerance, in place of the authors' SLSQP): with ρ = c ||g0||,
||x|| = min_{t > 0} (||x||² / (2t) + t/2), so min F = min_t h(t) with

    h(t) = min_{w in Δ} (ρ / 2t) ||Σ w_i (g_i + (t/ρ) g0)||² + t (ρ² - ||g0||²) / (2ρ),

a convex function of the scalar t in (0, max_i ||g_i||] whose inner problem is a min-norm
point of a translated hull (exact, :func:`min_norm_simplex`). t is found by bounded Brent
search; w* is the inner minimiser at the best t.

Invariances: permutation equivariant (weights permute, direction unchanged);
direction(sG) = s · direction(G) with unchanged weights for s > 0. Not invariant to
per-objective scaling (g0 and the ball depend on the raw magnitudes).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from scipy.optimize import minimize_scalar

from mmbench.strategies.gram import (
    SOLVER_DTYPE,
    Aggregation,
    combine,
    is_finite,
    largest_diagonal,
    min_norm_simplex,
    nonfinite_aggregation,
    solver_gram,
)

RESCALE_DIVISORS = {0: lambda c: 1.0, 1: lambda c: 1.0 + c**2, 2: lambda c: 1.0 + c}


def conflict_averse_weights(K: torch.Tensor, radius: float, xatol: float = 1e-12) -> torch.Tensor:
    """w* = argmin_{w in Δ} wᵀK1/k + radius · sqrt(wᵀKw) (K float64 CPU, radius = c ||g0||)."""
    k = K.shape[0]
    top = largest_diagonal(K)
    if not (top > 0 and radius > 0):
        return torch.full((k,), 1.0 / k, dtype=SOLVER_DTYPE)
    scaled = K / top
    rho = radius / math.sqrt(top)
    row_means = scaled.mean(1)
    mean_sq_norm = float(scaled.mean())
    ones = torch.ones(k, dtype=SOLVER_DTYPE)

    def translated_gram(t: float) -> torch.Tensor:
        """Gram matrix of the rows g_i + τ g0 with τ = t / ρ."""
        tau = t / rho
        shift = torch.outer(row_means, ones)
        return scaled + tau * (shift + shift.T) + tau**2 * mean_sq_norm

    def envelope(t: float) -> float:
        gram = translated_gram(t)
        w = min_norm_simplex(gram)
        return rho / (2 * t) * float(w @ gram @ w) + t * (rho**2 - mean_sq_norm) / (2 * rho)

    best = minimize_scalar(envelope, bounds=(0.0, 1.0), method="bounded", options={"xatol": xatol})
    return min_norm_simplex(translated_gram(float(best.x)))


def aggregate(
    G: torch.Tensor,
    *,
    c: float = 0.4,
    rescale: int = 1,
    reduction: Literal["mean", "sum"] = "mean",
    eps: float = 1e-8,
    generator: torch.Generator | None = None,
) -> Aggregation:
    """CAGrad: d = (g0 + c ||g0|| g_w / ||g_w||) / r, w = argmin_Δ g_wᵀg0 + c ||g0|| ||g_w||.

    When ||g_w*|| <= eps · max_i ||g_i|| (0 is in the hull and optimal, e.g. a zero row,
    so g_w / ||g_w|| is undefined) d = g0 / r: the limit of the authors'
    c ||g0|| g_w / (||g_w|| + eps), without their unbounded coefficient.
    """
    if rescale not in RESCALE_DIVISORS:
        raise ValueError(f"rescale must be 0, 1 or 2, got {rescale!r}")
    if c < 0:
        raise ValueError(f"c must be non-negative, got {c}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"strategy.reduction must be 'mean' or 'sum', got {reduction!r}")
    K = solver_gram(G)
    if not is_finite(K):
        return nonfinite_aggregation(G)
    k = K.shape[0]
    weights = torch.full((k,), 1.0 / k, dtype=SOLVER_DTYPE)
    radius = c * math.sqrt(max(float(K.mean()), 0.0))
    if radius > 0:
        w = conflict_averse_weights(K, radius)
        norm_w = math.sqrt(max(float(w @ K @ w), 0.0))
        if norm_w > eps * math.sqrt(largest_diagonal(K)):
            weights = weights + radius / norm_w * w
    total = k if reduction == "sum" else 1
    return combine(G, weights * total / RESCALE_DIVISORS[rescale](c))
