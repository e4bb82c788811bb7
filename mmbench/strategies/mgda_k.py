"""MGDA for k objectives — the multiple-gradient descent algorithm.

Ozan Sener, Vladlen Koltun, "Multi-Task Learning as Multi-Objective Optimization",
NeurIPS 2018 (MGDA: Jean-Antoine Désidéri, Comptes Rendus Mathématique, 2012).

    w = argmin_{w in Δ} ||Σ_i w_i g_i / s_i||²,

the min-norm point of the convex hull of the (normalised) gradients, solved exactly
(:func:`~mmbench.strategies.gram.min_norm_simplex`, an active-set NNLS solve, instead of
the authors' Frank–Wolfe iterations, which torchjd 0.18.0
``torchjd/aggregation/_mgda.py`` also runs: crosschecked in
tests/test_torchjd_crosscheck.py). Authors' code: isl-org/MultiObjectiveOptimization
``multi_task/min_norm_solvers.py`` and ``multi_task/train_multi_task.py`` (commit
bf5bbb30). Normalisers s_i as the authors' ``gradient_normalizers``: ``none`` (1),
``l2`` (||g_i||), ``loss`` (L_i), ``loss+`` (L_i ||g_i||); the loss ones need
``losses``. ``apply_to="raw"`` (the authors' training loop: their scales multiply the raw
losses) gives d = Σ w_i g_i; ``"normalized"`` gives
d = Σ w_i g_i / s_i, i.e. weights w_i / s_i. Two-objective closed form (``none``):
γ = clip(<g2 - g1, g2> / ||g1 - g2||², 0, 1) on row 0. The two-objective paper baseline
with the official 0.001/0.999 end points is :mod:`mmbench.strategies.mgda`.

Invariances: permutation equivariant; d(sG) = s · d(G) with unchanged weights for s > 0
(every normaliser); non-conflicting, <g_i, d> >= ||d||² >= 0, with ``none`` or with
``apply_to="normalized"`` (then <g_i / s_i, d> >= ||d||²); with ``l2`` and
``apply_to="normalized"`` the direction is invariant to per-objective scaling. Not
promised: non-conflict of a raw-applied normalised solution (w was optimal for other
vectors).
"""

from __future__ import annotations

from typing import Literal

import torch

from mmbench.strategies.gram import (
    Aggregation,
    Normalizer,
    combine,
    gradient_normalizers,
    is_finite,
    min_norm_simplex,
    nonfinite_aggregation,
    solver_gram,
)


def aggregate(
    G: torch.Tensor,
    *,
    normalizer: Normalizer = "none",
    losses: torch.Tensor | None = None,
    apply_to: Literal["raw", "normalized"] = "raw",
    generator: torch.Generator | None = None,
) -> Aggregation:
    """MGDA: w = argmin_Δ ||Σ w_i g_i / s_i||², d = Σ w_i g_i (or Σ w_i g_i / s_i)."""
    if apply_to not in ("raw", "normalized"):
        raise ValueError(f"apply_to must be 'raw' or 'normalized', got {apply_to!r}")
    K = solver_gram(G)
    if not is_finite(K):
        return nonfinite_aggregation(G)
    scales = gradient_normalizers(K, normalizer, losses)
    weights = min_norm_simplex(K / torch.outer(scales, scales))
    return combine(G, weights if apply_to == "raw" else weights / scales)
