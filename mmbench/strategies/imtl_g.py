"""IMTL-G — impartial multi-task learning, gradient balance.

Liyang Liu, Yi Li, Zhanghui Kuang, Jing-Hao Xue, Yimin Chen, Wenming Yang, Qingmin Liao,
Wayne Zhang, "Towards Impartial Multi-task Learning", ICLR 2021.

Find α with Σ α_i = 1 such that d = Σ α_i g_i has the same projection on every unit
vector u_i = g_i / ||g_i||:  <d, u_i> = <d, u_j> for all i, j. With M_ij = <u_i, g_j> =
K_ij / ||g_i||, this is the linear system

    [ M   -1 ] [α]   [0]
    [ 1ᵀ   0 ] [c] = [1],

equivalent to the paper's closed form α_{2:k} = g_1 U (Dᵀ U)^{-1} (D = [g_1 - g_i]_i,
U = [u_1 - u_i]_i), but symmetric in the objectives. No code by the authors is public; the
closed form is the one of LibMTL ``LibMTL/weighting/IMTL.py`` (which also applies IMTL-L,
learnable loss scales e^s L - s, left out here: this is IMTL-G only), and the weights equal
torchjd 0.18.0's ``torchjd/aggregation/_imtl_g.py`` (α ∝ K⁺ (||g_i||)_i, crosschecked in
tests/test_torchjd_crosscheck.py). Solved on K / max_i K_ii by
minimum-norm least squares (SVD, relative cut-off ``rtol``), which also covers the
singular cases (identical or parallel rows: the weight is shared equally). Rows with
||g_i|| = 0 have no unit vector: they get α_i = 0 and the others are balanced.

Invariances: permutation equivariant; direction(sG) = s · direction(G) with unchanged
weights for s > 0; under per-objective scaling g_i -> s_i g_i the direction keeps its line
(it is set by the unit vectors only; its length and even sign may change since α may have
negative entries). The direction is not promised to be non-conflicting.
"""

from __future__ import annotations

import torch

from mmbench.strategies.gram import (
    SOLVER_DTYPE,
    Aggregation,
    combine,
    default_rank_rtol,
    is_finite,
    largest_diagonal,
    nonfinite_aggregation,
    solver_gram,
)


def impartial_weights(K: torch.Tensor, rtol: float) -> torch.Tensor:
    """α (Σα = 1) equalising <Σ α_j g_j, u_i> over the non-zero rows (K float64 CPU)."""
    k = K.shape[0]
    active = (K.diagonal() > 0).nonzero().flatten()
    if active.numel() == 0:
        return torch.full((k,), 1.0 / k, dtype=SOLVER_DTYPE)
    scaled = K[active][:, active] / largest_diagonal(K)
    m = active.numel()
    projections = scaled / scaled.diagonal().sqrt().unsqueeze(1)
    system = torch.zeros(m + 1, m + 1, dtype=SOLVER_DTYPE)
    system[:m, :m] = projections
    system[:m, m] = -1.0
    system[m, :m] = 1.0
    rhs = torch.zeros(m + 1, 1, dtype=SOLVER_DTYPE)
    rhs[m] = 1.0
    solution = torch.linalg.lstsq(system, rhs, rcond=rtol, driver="gelsd").solution
    weights = torch.zeros(k, dtype=SOLVER_DTYPE)
    weights[active] = solution[:m, 0]
    return weights


def aggregate(
    G: torch.Tensor,
    *,
    rtol: float | None = None,
    generator: torch.Generator | None = None,
) -> Aggregation:
    """IMTL-G: d = Σ α_i g_i, Σα = 1, with equal projections <d, u_i> on all unit vectors.

    ``rtol``: relative singular-value cut-off of the least-squares solve
    (default (k + 1) · eps of K's precision, float32 at least).
    """
    K = solver_gram(G)
    if not is_finite(K):
        return nonfinite_aggregation(G)
    tolerance = default_rank_rtol(G.dtype, K.shape[0] + 1) if rtol is None else rtol
    return combine(G, impartial_weights(K, tolerance))
