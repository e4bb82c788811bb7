"""PCGrad — projecting conflicting gradients.

Tianhe Yu, Saurabh Kumar, Abhishek Gupta, Sergey Levine, Karol Hausman, Chelsea Finn,
"Gradient Surgery for Multi-Task Learning", NeurIPS 2020.

For each i: g_i' = g_i; for each j != i in random order, if <g_i', g_j> < 0 then
g_i' <- g_i' - <g_i', g_j> / ||g_j||² g_j. The update is g = Σ_i g_i' (``reduction="sum"``,
as the paper and the authors' code) or its mean. Checked against the authors' code,
tianheyu927/PCGrad ``PCGrad_tf.py`` (commit c5fbd7c8: projects every g_i on every
conflicting g_j, sums the results), LibMTL ``LibMTL/weighting/PCGrad.py`` (a fresh random
order per i, sum) and torchjd 0.18.0 ``torchjd/aggregation/_pcgrad.py`` (same, crosschecked
in tests/test_torchjd_crosscheck.py). Order: per-i random order as the paper's Algorithm 1,
LibMTL and torchjd; the TF code calls ``tf.random.shuffle`` without using its result, so it
visits j in the fixed order 0..k-1 (``generator=None`` here). Irrelevant for k = 2.

Every g_i' stays a combination of the rows, g_i' = Σ_l C_il g_l, and all the inner products
are read from K: <g_i', g_j> = (C K)_ij. So the surgery runs on the k×k coefficients C and
the weights are w = 1ᵀC (then d = wᵀG). A zero g_j is never projected on.

Invariances: direction(sG) = s · direction(G), weights unchanged, for s > 0. Not
permutation invariant for k >= 3 (the projection order matters, which is why it is random);
for k = 2 it is permutation equivariant.
"""

from __future__ import annotations

from typing import Literal

import torch

from mmbench.strategies.gram import (
    SOLVER_DTYPE,
    Aggregation,
    combine,
    is_finite,
    nonfinite_aggregation,
    random_order,
    solver_gram,
)


def projection_coefficients(K: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """C (k, k) with g_i' = Σ_l C_il g_l after PCGrad's surgery (K float64 on the CPU).

    The order over j != i is drawn from ``generator`` separately for every i (paper's
    Algorithm 1); with no generator the order is j = 0, 1, ... (deterministic).
    """
    k = K.shape[0]
    coefficients = torch.eye(k, dtype=SOLVER_DTYPE)
    for i in range(k):
        for j in random_order([j for j in range(k) if j != i], generator):
            inner = float(coefficients[i] @ K[:, j])
            if inner < 0 and K[j, j] > 0:
                coefficients[i, j] -= inner / float(K[j, j])
    return coefficients


def aggregate(
    G: torch.Tensor,
    *,
    reduction: Literal["sum", "mean"] = "sum",
    generator: torch.Generator | None = None,
) -> Aggregation:
    """PCGrad: d = Σ_i g_i' (or the mean), g_i' = g_i with conflicting components removed."""
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    K = solver_gram(G)
    if not is_finite(K):
        return nonfinite_aggregation(G)
    weights = projection_coefficients(K, generator).sum(0)
    if reduction == "mean":
        weights = weights / K.shape[0]
    return combine(G, weights)
