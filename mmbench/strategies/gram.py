"""Shared pieces of the k-objective gradient aggregators.

Every aggregator takes the stacked gradients ``G`` (k, n) of one encoder block (row 0 = the
fused loss, rows 1.. = unimodal losses) and returns an :class:`Aggregation`: the direction
d (n,) and coefficients w (k,) with d = wᵀG. All of them only need the Gram matrix
K = G Gᵀ (k, k), so the decisions are taken on a small float64 copy of K on the CPU and the
only work on the big vectors is K itself and the final d = Σ_i w_i g_i. ``G`` may also be
:class:`BlockRows`, the rows kept as the encoder's per-tensor gradients: K comes from
per-tensor dot products and d is returned per tensor, so a model's gradients are never
concatenated into a matrix.

Helpers here: the Gram matrix, the exact min-norm point of the convex hull of the rows
(MGDA's sub-problem), the projection onto the dual cone {x : Gx >= 0} (UPGrad/DualProj's
sub-problem), the MGDA gradient normalisers and the random order used by PCGrad/GradVac.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
import torch
from scipy.optimize import nnls

from mmbench.strategies.base import tensor_dot

Normalizer = Literal["none", "l2", "loss", "loss+"]

SOLVER_DTYPE = torch.float64


class Aggregation(NamedTuple):
    """The aggregated gradient and the coefficients that produced it: direction = weightsᵀG.

    ``direction`` is a (n,) vector for a matrix G, and a list of tensors for BlockRows.
    """

    direction: torch.Tensor | list[torch.Tensor]
    weights: torch.Tensor


class BlockRows:
    """k gradient rows, each a list of tensors (the same shapes in every row), as a G.

    Stands in for the (k, n) matrix of the concatenated rows wherever an aggregator uses
    G: ``shape``, ``dtype``, :func:`gram_matrix` (per-tensor dot products, tensor by
    tensor so each block is read once on CPU; cached) and :func:`combine` (d per tensor).
    ``inplace=True`` lets :func:`combine` write d into the first row's tensors (the caller
    must own them); otherwise the rows are only read.
    """

    ndim = 2

    def __init__(self, rows: Sequence[Sequence[torch.Tensor]], inplace: bool = False) -> None:
        self.rows = [list(row) for row in rows]
        if not self.rows or not self.rows[0]:
            raise ValueError("BlockRows needs at least one row of at least one tensor")
        shapes = [[t.shape for t in row] for row in self.rows]
        if any(s != shapes[0] for s in shapes):
            raise ValueError("every row must hold tensors of the same shapes")
        first = self.rows[0][0]
        self.shape = (len(self.rows), sum(t.numel() for t in self.rows[0]))
        self.dtype, self.device, self.inplace = first.dtype, first.device, inplace
        self._gram: torch.Tensor | None = None

    def is_floating_point(self) -> bool:
        return self.rows[0][0].is_floating_point()

    def gram(self) -> torch.Tensor:
        """K (k, k) in weights_dtype, from per-tensor dot products (computed once)."""
        if self._gram is None:
            k, dtype = len(self.rows), weights_dtype(self)
            pairs = [(i, j) for i in range(k) for j in range(i, k)]
            parts: dict[tuple[int, int], list[torch.Tensor]] = {pair: [] for pair in pairs}
            for blocks in zip(*self.rows, strict=True):  # all products of a block while cached
                blocks = [b.detach().to(dtype) for b in blocks]
                for i, j in pairs:
                    parts[i, j].append(tensor_dot(blocks[i], blocks[j]))
            sums = {pair: torch.stack(values).sum() for pair, values in parts.items()}
            self._gram = torch.stack(
                [torch.stack([sums[min(i, j), max(i, j)] for j in range(k)]) for i in range(k)]
            )
        return self._gram

    def weighted_sum(self, coefficients: list[float]) -> list[torch.Tensor]:
        """Σ_i c_i row_i, tensor by tensor (into the first row's tensors when inplace)."""
        out = []
        for blocks in zip(*self.rows, strict=True):
            first = blocks[0].detach()
            total = first.mul_(coefficients[0]) if self.inplace else first * coefficients[0]
            for coefficient, block in zip(coefficients[1:], blocks[1:], strict=True):
                total.add_(block.detach(), alpha=coefficient)
            out.append(total)
        return out


GradientRows = torch.Tensor | BlockRows


def check_gradient_matrix(G: GradientRows) -> None:
    """Raise ValueError unless G is a floating-point (k, n) matrix with k >= 1."""
    if G.ndim != 2 or G.shape[0] < 1:
        raise ValueError(
            f"expected a (k, n) gradient matrix with k >= 1, got shape {tuple(G.shape)}"
        )
    if not G.is_floating_point():
        raise ValueError(f"expected a floating-point gradient matrix, got {G.dtype}")


def weights_dtype(G: GradientRows) -> torch.dtype:
    """float32 for half/bfloat16 gradients (coefficients need more digits), else G's dtype."""
    return torch.promote_types(G.dtype, torch.float32)


def gram_matrix(G: GradientRows) -> torch.Tensor:
    """K = G Gᵀ (k, k) in G's precision (float32 at least), on G's device, exactly symmetric.

    Built from pairwise dot products rather than a matmul so that reduced-precision matmul
    settings (TF32) never enter the conflict tests; k(k+1)/2 passes over G, no copy of G
    for float32/float64.
    """
    check_gradient_matrix(G)
    if isinstance(G, BlockRows):
        return G.gram()
    rows = G.detach().to(weights_dtype(G))
    k = rows.shape[0]
    entries = {(i, j): torch.dot(rows[i], rows[j]) for i in range(k) for j in range(i, k)}
    return torch.stack(
        [torch.stack([entries[min(i, j), max(i, j)] for j in range(k)]) for i in range(k)]
    )


def as_solver_matrix(K: torch.Tensor) -> torch.Tensor:
    """A detached float64 CPU copy of K, symmetrised: where the k×k problems are solved."""
    K64 = K.detach().to(device="cpu", dtype=SOLVER_DTYPE)
    return (K64 + K64.T) / 2


def solver_gram(G: GradientRows) -> torch.Tensor:
    """The Gram matrix of G as a float64 CPU (k, k) tensor (one device sync)."""
    return as_solver_matrix(gram_matrix(G))


def combine(G: GradientRows, weights: torch.Tensor) -> Aggregation:
    """direction = Σ_i w_i g_i (as k scaled additions, no matmul) and w on G's device."""
    coefficients = weights.detach().to(device="cpu", dtype=SOLVER_DTYPE).tolist()
    weights_out = torch.tensor(coefficients, dtype=weights_dtype(G), device=G.device)
    if isinstance(G, BlockRows):
        return Aggregation(G.weighted_sum(coefficients), weights_out)
    direction = G[0] * coefficients[0]
    for coefficient, row in zip(coefficients[1:], G[1:], strict=True):
        direction = direction.add(row, alpha=coefficient)
    return Aggregation(direction, weights_out)


def is_finite(K: torch.Tensor) -> bool:
    """True when every entry of the (small) matrix K is finite."""
    return bool(torch.isfinite(K).all())


def nonfinite_aggregation(G: GradientRows) -> Aggregation:
    """For non-finite gradients: the plain sum (weights 1), non-finite on purpose.

    The inf/NaN then reaches the optimiser unchanged, where AMP's GradScaler detects it and
    skips the step, instead of a solver raising on it.
    """
    return combine(G, torch.ones(G.shape[0], dtype=SOLVER_DTYPE))


def largest_diagonal(K: torch.Tensor) -> float:
    """max_i K_ii = the largest squared row norm (0 for an all-zero G)."""
    return float(K.diagonal().max())


def default_rank_rtol(dtype: torch.dtype, k: int) -> float:
    """Relative threshold k · eps (Aligned-MTL's authors' choice), eps of K's precision.

    K is computed in float32 at least (see :func:`weights_dtype`), so eps is float32's for
    half/bfloat16 gradients. Eigenvalues λ of a Gram matrix with λ <= rtol · λ_max (or
    singular values likewise) are treated as zero.
    """
    return k * torch.finfo(torch.promote_types(dtype, torch.float32)).eps


def gram_factor(K: torch.Tensor) -> torch.Tensor:
    """A (k, k) with AᵀA = K: A = Λ₊^{1/2} Vᵀ from K = V Λ Vᵀ (round-off negatives -> 0).

    ||A w||² = wᵀKw, so problems over combinations of the rows of G become problems over
    combinations of the columns of A (an isometric k-dimensional copy of the rows).
    """
    eigenvalues, eigenvectors = torch.linalg.eigh(as_solver_matrix(K))
    return eigenvalues.clamp_min(0).sqrt().unsqueeze(1) * eigenvectors.T


def _nnls(A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """argmin_{x >= 0} ||A x - b||² by Lawson–Hanson's active-set method (exact, finite)."""
    solution, _ = nnls(
        np.ascontiguousarray(A.numpy()), np.ascontiguousarray(b.numpy()), maxiter=100 * A.shape[1]
    )
    return torch.from_numpy(solution)


def min_norm_simplex(K: torch.Tensor) -> torch.Tensor:
    """w = argmin_{w in Δ} wᵀKw: the coefficients of the min-norm point of conv{g_i}.

    Exact active-set solve: with AᵀA = K and δ = min_Δ wᵀKw, the NNLS problem
    min_{u >= 0} ||A u||² + (1ᵀu - 1)² is solved by u = w* / (1 + δ) (write u = t w, w in Δ,
    and minimise over t), so w* = u / 1ᵀu. K is scaled by max_i K_ii first (the minimiser
    does not change). For two rows this is γ = clip(<g2 - g1, g2> / ||g1 - g2||², 0, 1) on
    row 0. An all-zero K gives the uniform weights. Returned in K's dtype and device.
    """
    K64 = as_solver_matrix(K)
    k = K64.shape[0]
    top = largest_diagonal(K64)
    if not top > 0:
        return torch.full((k,), 1.0 / k, dtype=K.dtype, device=K.device)
    A = gram_factor(K64 / top)
    system = torch.cat([A, torch.ones(1, k, dtype=SOLVER_DTYPE)])
    target = torch.zeros(k + 1, dtype=SOLVER_DTYPE)
    target[-1] = 1.0
    u = _nnls(system, target)
    return (u / u.sum()).to(dtype=K.dtype, device=K.device)


def project_onto_dual_cone(K: torch.Tensor, lower: int | torch.Tensor) -> torch.Tensor:
    """v = argmin_{v >= u} vᵀKv: the coefficients of the projection of uᵀG onto {x : Gx >= 0}.

    By duality, proj(uᵀG) = vᵀG with this v (Quinton & Rey 2024), and Kv >= 0 at the
    optimum, i.e. the projection conflicts with no row. ``lower`` is u: an index i
    (u = e_i), a (k,) vector or an (m, k) batch of vectors (one projection per row). Solved
    exactly as the NNLS problem min_{λ >= 0} ||A λ + A u||² with AᵀA = K, v = u + λ. An
    all-zero K gives v = u. Returned in K's dtype and device, shaped like u.
    """
    K64 = as_solver_matrix(K)
    k = K64.shape[0]
    if isinstance(lower, int):
        bounds = torch.zeros(k, dtype=SOLVER_DTYPE)
        bounds[lower] = 1.0
    else:
        bounds = lower.detach().to(device="cpu", dtype=SOLVER_DTYPE)
    batch = bounds.reshape(-1, k)
    top = largest_diagonal(K64)
    if top > 0:
        A = gram_factor(K64 / top)
        batch = torch.stack([u + _nnls(A, -(A @ u)) for u in batch])
    return batch.reshape(bounds.shape).to(dtype=K.dtype, device=K.device)


def gradient_normalizers(
    K: torch.Tensor, kind: Normalizer = "none", losses: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-objective scales s_i of MGDA's normalised gradients g_i / s_i (Sener & Koltun 2018).

    ``none``: 1; ``l2``: ||g_i||; ``loss``: L_i; ``loss+``: L_i ||g_i||, as in the authors'
    ``gradient_normalizers``; the loss ones need ``losses`` (k non-negative values). A zero
    scale (zero gradient or zero loss) is replaced by 1 so that nothing is divided by zero
    (a zero row stays zero). Returned as float64 on the CPU.
    """
    K64 = as_solver_matrix(K)
    k = K64.shape[0]
    norms = K64.diagonal().clamp_min(0).sqrt()
    if kind == "none":
        scales = torch.ones(k, dtype=SOLVER_DTYPE)
    elif kind == "l2":
        scales = norms
    elif kind in ("loss", "loss+"):
        loss_values = _loss_values(losses, k, kind)
        scales = loss_values if kind == "loss" else loss_values * norms
    else:
        raise ValueError(f"unknown normalizer {kind!r}; expected none, l2, loss or loss+")
    return torch.where(scales > 0, scales, torch.ones_like(scales))


def _loss_values(losses: torch.Tensor | None, k: int, kind: str) -> torch.Tensor:
    """The k loss values as float64 on the CPU; ValueError if missing, misshaped or negative."""
    if losses is None:
        raise ValueError(f"normalizer {kind!r} needs the loss values")
    values = losses.detach().to(device="cpu", dtype=SOLVER_DTYPE).reshape(-1)
    if values.shape != (k,):
        raise ValueError(f"expected {k} loss values, got {tuple(values.shape)}")
    if bool((values < 0).any()):
        raise ValueError("loss normalisers need non-negative losses")
    return values


def random_order(items: list[int], generator: torch.Generator | None) -> list[int]:
    """``items`` in a random order drawn from ``generator`` (in the given order if None).

    No generator means no randomness at all: the global RNG is never consumed, so a
    strategy cannot perturb the training's random stream (dropout, augmentation).
    """
    if generator is None or len(items) < 2:
        return list(items)
    permutation = torch.randperm(len(items), generator=generator, device=generator.device)
    return [items[p] for p in permutation.tolist()]
