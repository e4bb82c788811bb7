"""Property tests shared by the k-objective gradient aggregators (``mmbench.strategies``).

Each aggregator maps stacked gradients G (k, n) to ``Aggregation(direction, weights)`` with
direction = weightsᵀG. The shared properties run over every method by parametrisation,
with hypothesis drawing generic gradient matrices (seeded rows, a shared component that
controls how often rows conflict, per-row magnitudes); closed forms, edge cases and
per-method promises follow.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from mmbench.strategies import (
    aligned_mtl,
    cagrad,
    config,
    dualproj,
    gradvac,
    imtl_g,
    mgda_k,
    nash_mtl,
    pcgrad,
    upgrad,
)
from mmbench.strategies.gram import (
    Aggregation,
    BlockRows,
    gram_matrix,
    min_norm_simplex,
    project_onto_dual_cone,
)

Aggregator = Callable[..., Aggregation]


def gradvac_fresh(G: torch.Tensor, **kwargs: object) -> Aggregation:
    """GradVac from zero targets (its state is tested separately)."""
    return gradvac.aggregate(G, None, **kwargs)[0]


METHODS: dict[str, Aggregator] = {
    "mgda": mgda_k.aggregate,
    "pcgrad": pcgrad.aggregate,
    "cagrad": cagrad.aggregate,
    "gradvac": gradvac_fresh,
    "imtl_g": imtl_g.aggregate,
    "aligned_mtl": aligned_mtl.aggregate,
    "nash_mtl": nash_mtl.aggregate,
    "nash_mtl_unclipped": partial(nash_mtl.aggregate, max_norm=0.0),
    "upgrad": upgrad.aggregate,
    "dualproj": dualproj.aggregate,
    "config": config.aggregate,
}
PERMUTATION_EQUIVARIANT = [
    "mgda",
    "upgrad",
    "dualproj",
    "imtl_g",
    "config",
    "nash_mtl",
    "nash_mtl_unclipped",
    "aligned_mtl",
    "cagrad",
]
NON_CONFLICTING = ["mgda", "upgrad", "dualproj", "config"]
# Under G -> sG (s > 0): "linear" = direction * s, weights unchanged;
# "invariant" = direction unchanged, weights / s.
COMMON_SCALING = {name: "linear" for name in METHODS} | {
    "nash_mtl": "invariant",
    "nash_mtl_unclipped": "invariant",
}
# Output on a single row g: direction = scale * g.
SINGLE_ROW_SCALE: dict[str, Callable[[torch.Tensor], float]] = {
    name: lambda g: 1.0 for name in METHODS
} | {
    "cagrad": lambda g: (1 + 0.4) / (1 + 0.4**2),
    "nash_mtl": lambda g: 1 / (float(g.norm()) * (1 + 1e-6)),
    "nash_mtl_unclipped": lambda g: 1 / float(g.norm()),
}

EXAMPLES = settings(max_examples=25, deadline=None, derandomize=True, database=None)
DTYPES = [torch.float32, torch.float64]
TOLERANCE = {torch.float32: 2e-4, torch.float64: 1e-7}


def random_rows(seed: int, k: int, n: int, shared: float = 0.0, spread: float = 0.0):
    """Gaussian rows plus ``shared`` times one common vector, magnitudes in e^[-spread, spread]."""
    generator = torch.Generator().manual_seed(seed)
    G = torch.randn(k, n, generator=generator, dtype=torch.float64)
    G = G + shared * torch.randn(1, n, generator=generator, dtype=torch.float64)
    log_scales = spread * (2 * torch.rand(k, 1, generator=generator, dtype=torch.float64) - 1)
    return G * log_scales.exp()


def cosine_condition(G: torch.Tensor) -> float:
    """Condition number of the cosine matrix of the rows of G."""
    units = G.double() / G.double().norm(dim=1, keepdim=True)
    return float(torch.linalg.cond(units @ units.T))


@st.composite
def gradient_matrices(draw: st.DrawFn, min_k: int = 2, max_k: int = 4) -> torch.Tensor:
    """Generic float64 G (k, n), k <= n <= 64, linearly independent rows."""
    k = draw(st.integers(min_k, max_k))
    n = draw(st.integers(max(k, 2), 64))
    seed = draw(st.integers(0, 2**31 - 1))
    shared = draw(st.floats(0.0, 2.0))
    spread = draw(st.floats(0.0, 2.0))
    G = random_rows(seed, k, n, shared, spread)
    assume(cosine_condition(G) < 1e4)
    return G


log_scales = st.floats(-3.0, 3.0).map(lambda exponent: 10.0**exponent)


def max_abs(x: torch.Tensor) -> float:
    return float(x.double().abs().max())


def assert_close(actual: torch.Tensor, expected: torch.Tensor, tol: float, scale: float) -> None:
    """max |actual - expected| <= tol * scale (scale: the magnitude the error is relative to)."""
    error = max_abs(actual.double() - expected.double())
    assert error <= tol * scale, f"error {error:.3e} > {tol:.1e} * {scale:.3e}"


def assert_consistent(G: torch.Tensor, result: Aggregation, tol: float) -> None:
    """Finite outputs of the right shapes/dtypes, and direction == weightsᵀG."""
    k, n = G.shape
    assert result.direction.shape == (n,)
    assert result.weights.shape == (k,)
    assert result.direction.dtype == G.dtype
    assert result.weights.dtype == G.dtype
    assert result.direction.device == G.device == result.weights.device
    assert bool(torch.isfinite(result.direction).all())
    assert bool(torch.isfinite(result.weights).all())
    combination = result.weights.double() @ G.double()
    scale = float((result.weights.double().abs() @ G.double().abs()).max()) + 1e-300
    assert_close(result.direction, combination, tol, scale)


def row_scale(G: torch.Tensor) -> float:
    return float(G.double().norm(dim=1).max())


# ---------------------------------------------------------------- shared properties


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("name", list(METHODS))
def test_shapes_dtypes_and_linear_combination(name: str, k: int, dtype: torch.dtype) -> None:
    G = random_rows(seed=k, k=k, n=32, shared=0.3, spread=1.0).to(dtype)
    before = G.clone()
    result = METHODS[name](G)
    assert_consistent(G, result, TOLERANCE[dtype])
    assert torch.equal(G, before), "G was modified in place"


def as_blocks(G: torch.Tensor) -> list[list[torch.Tensor]]:
    """The rows of G cut into an encoder's tensors: a 4-D channels_last one, a 1-D, a 2-D."""
    sizes, shapes = [24, 4, 4], [(2, 3, 2, 2), (4,), (2, 2)]
    rows = []
    for row in G:
        pieces = [p.reshape(shape) for p, shape in zip(row.split(sizes), shapes, strict=True)]
        pieces[0] = pieces[0].contiguous(memory_format=torch.channels_last)
        rows.append(pieces)
    return rows


def flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("name", list(METHODS))
def test_block_rows_aggregate_like_the_dense_matrix(name: str, k: int, inplace: bool) -> None:
    """What the per-encoder adaptor passes (per-tensor rows) gives the dense G's result."""
    G = random_rows(seed=7 + k, k=k, n=32, shared=0.2, spread=1.0)
    dense = METHODS[name](G)
    rows = as_blocks(G)
    kept = [[t.clone() for t in row] for row in rows]
    blocks = BlockRows(rows, inplace=inplace)
    assert blocks.shape == tuple(G.shape)
    torch.testing.assert_close(gram_matrix(blocks), gram_matrix(G))
    result = METHODS[name](blocks)
    torch.testing.assert_close(flat(result.direction), dense.direction)
    torch.testing.assert_close(result.weights, dense.weights)
    assert all(torch.equal(a, b) for a, b in zip(rows[1], kept[1], strict=True))
    written = [o.data_ptr() == t.data_ptr() for o, t in zip(result.direction, rows[0], strict=True)]
    assert all(written) if inplace else not any(written)
    assert result.direction[0].is_contiguous(memory_format=torch.channels_last)


def test_block_rows_refuse_ragged_rows() -> None:
    with pytest.raises(ValueError, match="same shapes"):
        BlockRows([[torch.zeros(3)], [torch.zeros(4)]])


@pytest.mark.parametrize("name", list(METHODS))
def test_single_row_returns_the_row_times_the_method_scale(name: str) -> None:
    g = random_rows(seed=5, k=1, n=16)
    result = METHODS[name](g)
    scale = SINGLE_ROW_SCALE[name](g)
    assert_close(result.direction, scale * g[0], 1e-9, row_scale(g))
    assert_close(result.weights, torch.tensor([scale], dtype=torch.float64), 1e-9, 1.0)


@pytest.mark.parametrize("name", list(METHODS))
@EXAMPLES
@given(G=gradient_matrices())
def test_direction_is_the_weighted_sum_of_rows(name: str, G: torch.Tensor) -> None:
    assert_consistent(G, METHODS[name](G), 1e-9)


@pytest.mark.parametrize("name", list(METHODS))
@EXAMPLES
@given(G=gradient_matrices(), scale=log_scales)
def test_common_positive_scaling(name: str, G: torch.Tensor, scale: float) -> None:
    base, scaled = METHODS[name](G), METHODS[name](scale * G)
    if COMMON_SCALING[name] == "linear":
        assert_close(
            scaled.direction, scale * base.direction, 1e-6, scale * max_abs(base.direction)
        )
        assert_close(scaled.weights, base.weights, 1e-6, max_abs(base.weights))
    else:
        assert_close(scaled.direction, base.direction, 1e-6, max_abs(base.direction))
        assert_close(scaled.weights, base.weights / scale, 1e-6, max_abs(base.weights) / scale)


@pytest.mark.parametrize("name", PERMUTATION_EQUIVARIANT)
@EXAMPLES
@given(G=gradient_matrices(), seed=st.integers(0, 1000))
def test_permutation_equivariance(name: str, G: torch.Tensor, seed: int) -> None:
    permutation = torch.randperm(G.shape[0], generator=torch.Generator().manual_seed(seed))
    base, permuted = METHODS[name](G), METHODS[name](G[permutation])
    assert_close(permuted.direction, base.direction, 1e-6, max_abs(base.direction) + row_scale(G))
    assert_close(permuted.weights, base.weights[permutation], 1e-6, max_abs(base.weights))


@pytest.mark.parametrize("name", NON_CONFLICTING)
@EXAMPLES
@given(G=gradient_matrices())
def test_non_conflicting_direction(name: str, G: torch.Tensor) -> None:
    direction = METHODS[name](G).direction
    inner = G @ direction
    assert float(inner.min()) >= -1e-9 * row_scale(G) * float(direction.norm())


@pytest.mark.parametrize("name", list(METHODS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "case",
    ["zero_row", "all_zero", "identical", "anti_parallel", "parallel", "rank_deficient", "tiny"],
)
def test_numerically_safe_on_degenerate_rows(name: str, dtype: torch.dtype, case: str) -> None:
    g, h = random_rows(seed=11, k=2, n=24)
    G = {
        "zero_row": torch.stack([g, torch.zeros_like(g), h]),
        "all_zero": torch.zeros(3, 24, dtype=torch.float64),
        "identical": torch.stack([g, g, h]),
        "anti_parallel": torch.stack([g, -g]),
        "parallel": torch.stack([g, -3 * g, 0.5 * g, h]),
        "rank_deficient": random_rows(seed=12, k=4, n=2),
        "tiny": 1e-18 * torch.stack([g, -g, h]),
    }[case].to(dtype)
    assert_consistent(G, METHODS[name](G), TOLERANCE[dtype])


@pytest.mark.parametrize("name", list(METHODS))
def test_float32_matches_float64(name: str) -> None:
    G = random_rows(seed=3, k=3, n=48, shared=0.5, spread=1.0)
    single, double = METHODS[name](G.float()), METHODS[name](G)
    assert_close(single.direction, double.direction, 1e-4, max_abs(double.direction))
    assert_close(single.weights, double.weights, 1e-4, max_abs(double.weights))


@pytest.mark.parametrize("name", list(METHODS))
def test_bfloat16_gradients_get_float32_weights(name: str) -> None:
    G = random_rows(seed=9, k=3, n=32, shared=0.3).to(torch.bfloat16)
    result = METHODS[name](G)
    assert result.direction.dtype == torch.bfloat16
    assert result.weights.dtype == torch.float32
    assert bool(torch.isfinite(result.direction).all())
    assert bool(torch.isfinite(result.weights).all())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(METHODS))
def test_cuda_matches_cpu(name: str, dtype: torch.dtype) -> None:
    G = random_rows(seed=4, k=3, n=64, shared=0.3, spread=1.0).to(dtype)
    on_cpu, on_cuda = METHODS[name](G), METHODS[name](G.cuda())
    assert on_cuda.direction.is_cuda and on_cuda.weights.is_cuda
    tol = TOLERANCE[dtype] * 10
    assert_close(on_cuda.direction.cpu(), on_cpu.direction, tol, max_abs(on_cpu.direction))
    assert_close(on_cuda.weights.cpu(), on_cpu.weights, tol, max_abs(on_cpu.weights))


def test_rejects_malformed_input() -> None:
    with pytest.raises(ValueError):
        upgrad.aggregate(torch.ones(3))
    with pytest.raises(ValueError):
        upgrad.aggregate(torch.ones(0, 3))
    with pytest.raises(ValueError):
        mgda_k.aggregate(torch.ones(2, 3), normalizer="loss")
    with pytest.raises(ValueError):
        mgda_k.aggregate(torch.ones(2, 3), normalizer="unknown")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        cagrad.aggregate(torch.ones(2, 3), rescale=3)


def test_nonfinite_gradients_propagate_instead_of_raising() -> None:
    G = torch.tensor([[1.0, float("inf")], [0.0, 1.0]])
    for name, method in METHODS.items():
        result = method(G)
        assert not bool(torch.isfinite(result.direction).all()), name
        assert torch.equal(result.weights, torch.ones(2)), name


# ---------------------------------------------------------------- shared solvers


@EXAMPLES
@given(G=gradient_matrices(max_k=5))
def test_min_norm_simplex_satisfies_optimality(G: torch.Tensor) -> None:
    """w in Δ is optimal iff (Kw)_i >= wᵀKw for every i (equality on the support)."""
    K = gram_matrix(G)
    w = min_norm_simplex(K)
    value = float(w @ K @ w)
    assert float(w.min()) >= 0 and abs(float(w.sum()) - 1) < 1e-12
    gradient = K @ w
    assert float(gradient.min()) >= value - 1e-9 * float(K.diagonal().max())


@EXAMPLES
@given(G=gradient_matrices(max_k=2, min_k=2))
def test_two_objective_mgda_closed_form(G: torch.Tensor) -> None:
    g1, g2 = G
    gamma = float(((g2 - g1) @ g2) / (g1 - g2).pow(2).sum())
    expected = min(max(gamma, 0.0), 1.0)
    for weights in (min_norm_simplex(gram_matrix(G)), mgda_k.aggregate(G).weights):
        assert abs(float(weights[0]) - expected) < 1e-9
        assert abs(float(weights[1]) - (1 - expected)) < 1e-9


@EXAMPLES
@given(G=gradient_matrices(), lower=st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4))
def test_dual_cone_projection_satisfies_optimality(G: torch.Tensor, lower: list[float]) -> None:
    """v >= u, Kv >= 0 and (v - u)ᵀKv = 0: the KKT conditions of min_{v >= u} vᵀKv."""
    K = gram_matrix(G)
    u = torch.tensor(lower[: G.shape[0]], dtype=torch.float64)
    v = project_onto_dual_cone(K, u)
    tol = 1e-9 * float(K.diagonal().max()) * (1 + float(v.abs().sum()))
    assert float((v - u).min()) >= 0
    assert float((K @ v).min()) >= -tol
    assert abs(float((v - u) @ K @ v)) <= tol


# ---------------------------------------------------------------- MGDA


@EXAMPLES
@given(G=gradient_matrices())
def test_mgda_inner_products_dominate_the_squared_norm(G: torch.Tensor) -> None:
    direction = mgda_k.aggregate(G).direction
    inner = G @ direction
    assert float(inner.min()) >= float(direction @ direction) - 1e-9 * row_scale(G) ** 2


@EXAMPLES
@given(G=gradient_matrices(), scales=st.lists(log_scales, min_size=4, max_size=4))
def test_mgda_l2_normalized_is_invariant_to_per_objective_scaling(
    G: torch.Tensor, scales: list[float]
) -> None:
    method = partial(mgda_k.aggregate, normalizer="l2", apply_to="normalized")
    row_scales = torch.tensor(scales[: G.shape[0]], dtype=torch.float64).unsqueeze(1)
    base, scaled = method(G), method(row_scales * G)
    assert_close(scaled.direction, base.direction, 1e-7, max_abs(base.direction))


def test_mgda_loss_normalizers_follow_sener_koltun() -> None:
    G = random_rows(seed=21, k=3, n=16, spread=1.0)
    losses = torch.tensor([0.5, 2.0, 1.5], dtype=torch.float64)
    norms = G.norm(dim=1)
    for normalizer, scales in [("loss", losses), ("loss+", losses * norms), ("l2", norms)]:
        expected = min_norm_simplex(gram_matrix(G / scales.unsqueeze(1)))
        raw = mgda_k.aggregate(G, normalizer=normalizer, losses=losses)
        assert_close(raw.weights, expected, 1e-9, 1.0)
        normalized = mgda_k.aggregate(
            G, normalizer=normalizer, losses=losses, apply_to="normalized"
        )
        assert_close(normalized.weights, expected / scales, 1e-9, max_abs(expected / scales))


# ---------------------------------------------------------------- PCGrad and GradVac


def test_pcgrad_two_vectors_hand_computed() -> None:
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    # <g1, g2> = -1: g1' = g1 + (1/2) g2 = (0.5, 0.5); g2' = g2 + 1 g1 = (0, 1).
    result = pcgrad.aggregate(torch.stack([g1, g2]))
    assert_close(result.direction, torch.tensor([0.5, 1.5]), 1e-6, 1.0)
    assert_close(result.weights, torch.tensor([2.0, 1.5]), 1e-6, 1.0)
    mean = pcgrad.aggregate(torch.stack([g1, g2]), reduction="mean")
    assert_close(mean.direction, torch.tensor([0.25, 0.75]), 1e-6, 1.0)


def test_pcgrad_leaves_non_conflicting_rows_alone() -> None:
    G = torch.tensor([[1.0, 0.2, 0.0], [0.5, 1.0, 0.0], [0.1, 0.3, 2.0]])
    result = pcgrad.aggregate(G)
    assert_close(result.weights, torch.ones(3), 1e-7, 1.0)


def test_pcgrad_random_order_is_reproducible_and_generator_only() -> None:
    G = random_rows(seed=8, k=4, n=3)
    outcomes = set()
    for seed in range(20):
        first = pcgrad.aggregate(G, generator=torch.Generator().manual_seed(seed))
        second = pcgrad.aggregate(G, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(first.direction, second.direction)
        assert torch.equal(first.weights, second.weights)
        outcomes.add(tuple(round(w, 9) for w in first.weights.tolist()))
    assert len(outcomes) > 1, "the projection order never mattered: the test case is too easy"
    rng_state = torch.get_rng_state()
    without = [pcgrad.aggregate(G).weights for _ in range(2)]
    assert torch.equal(*without)
    assert torch.equal(rng_state, torch.get_rng_state()), "PCGrad consumed the global RNG"


@pytest.mark.parametrize("name", ["pcgrad", "gradvac"])
def test_surgery_on_two_rows_is_permutation_equivariant(name: str) -> None:
    """Only one order exists for k = 2, so the random-order methods are equivariant there."""
    G = torch.tensor([[1.0, 0.0, 0.5], [-1.0, 1.0, 0.0]], dtype=torch.float64)
    base, swapped = METHODS[name](G), METHODS[name](G.flip(0))
    assert_close(swapped.direction, base.direction, 1e-12, 1.0)
    assert_close(swapped.weights, base.weights.flip(0), 1e-12, 1.0)


def test_gradvac_with_zero_targets_on_two_rows_is_pcgrad() -> None:
    G = torch.tensor([[1.0, 0.0, 0.5], [-1.0, 1.0, 0.0]], dtype=torch.float64)
    vaccinated, _ = gradvac.aggregate(G, None)
    projected = pcgrad.aggregate(G)
    assert_close(vaccinated.direction, projected.direction, 1e-12, 1.0)


def test_gradvac_reaches_the_target_cosine_and_updates_it_by_ema() -> None:
    G = torch.tensor([[1.0, 0.0, 0.5], [-1.0, 1.0, 0.0]], dtype=torch.float64)
    g1, g2 = G
    cosine = float(g1 @ g2 / (g1.norm() * g2.norm()))
    beta, goal = 0.1, 0.3
    state = gradvac.GradVacState(torch.tensor([[0.0, goal], [goal, goal]], dtype=torch.float64))
    target_before = state.target.clone()
    result, new_state = gradvac.aggregate(G, state, beta=beta)
    assert torch.equal(state.target, target_before), "the given state was modified"
    # weights = 1ᵀC with C = [[1, c01], [c10, 1]], so g1' = g1 + (w_2 - 1) g2.
    adjusted = g1 + (result.weights[1] - 1) * g2
    assert abs(float(adjusted @ g2 / (adjusted.norm() * g2.norm())) - goal) < 1e-12
    expected = (1 - beta) * goal + beta * cosine
    expected_target = torch.tensor([[0.0, expected], [expected, goal]], dtype=torch.float64)
    assert_close(new_state.target, expected_target, 1e-12, 1.0)
    _, next_state = gradvac.aggregate(G, new_state, beta=beta)
    assert abs(float(next_state.target[0, 1]) - ((1 - beta) * expected + beta * cosine)) < 1e-12


def test_gradvac_ema_from_zero_and_no_adjustment_above_target() -> None:
    G = torch.tensor([[1.0, 0.2], [0.8, 1.0]], dtype=torch.float64)
    cosine = float(G[0] @ G[1] / (G[0].norm() * G[1].norm()))
    result, state = gradvac.aggregate(G, None, beta=0.01)
    assert_close(result.weights, torch.ones(2), 1e-15, 1.0)
    off_diagonal = 1 - torch.eye(2, dtype=torch.float64)
    assert_close(state.target, 0.01 * cosine * off_diagonal, 1e-15, 1.0)
    with pytest.raises(ValueError):
        gradvac.aggregate(torch.ones(3, 2), state)


# ---------------------------------------------------------------- CAGrad


@pytest.mark.parametrize("rescale", [0, 1, 2])
def test_cagrad_with_c_zero_is_the_mean(rescale: int) -> None:
    G = random_rows(seed=2, k=3, n=20, spread=1.0)
    result = cagrad.aggregate(G, c=0.0, rescale=rescale)
    assert_close(result.direction, G.mean(0), 1e-12, row_scale(G))
    assert_close(result.weights, torch.full((3,), 1 / 3, dtype=torch.float64), 1e-12, 1.0)


def test_cagrad_rescale_divisors() -> None:
    G = random_rows(seed=6, k=2, n=20)
    plain = cagrad.aggregate(G, c=0.5, rescale=0).direction
    for rescale, divisor in [(1, 1 + 0.5**2), (2, 1 + 0.5)]:
        direction = cagrad.aggregate(G, c=0.5, rescale=rescale).direction
        assert_close(direction, plain / divisor, 1e-12, max_abs(plain))


@pytest.mark.parametrize("k", [2, 3])
def test_cagrad_sum_reduction_is_k_times_the_mean(k: int) -> None:
    """reduction="sum": the authors' overwrite_grad multiplies by the number of tasks."""
    G = random_rows(seed=16, k=k, n=20, shared=-0.5)
    mean = cagrad.aggregate(G)
    total = cagrad.aggregate(G, reduction="sum")
    assert_close(total.direction, k * mean.direction, 1e-12, k * max_abs(mean.direction))
    assert_close(total.weights, k * mean.weights, 1e-12, k * max_abs(mean.weights))
    with pytest.raises(ValueError, match="reduction"):
        cagrad.aggregate(G, reduction="max")


@pytest.mark.parametrize("method", [upgrad.aggregate, dualproj.aggregate])
def test_torchjd_regularisation_below_norm_eps_is_the_mean(method: Aggregator) -> None:
    """tr K < norm_eps: torchjd's normalize gives 0, so only reg_eps · I is left (weights 1/k)."""
    g, h = random_rows(seed=17, k=2, n=12)
    G = 1e-4 * torch.stack([g, -g + 0.1 * h, h])
    weights = method(G, reg_eps=1e-4).weights
    assert_close(weights, torch.full((3,), 1 / 3, dtype=torch.float64), 1e-12, 1.0)
    assert not torch.allclose(method(G).weights, weights)
    with pytest.raises(ValueError, match="norm_eps"):
        method(G, reg_eps=1e-4, norm_eps=-1.0)


@settings(max_examples=10, deadline=None, derandomize=True, database=None)
@given(G=gradient_matrices(min_k=3, max_k=3), c=st.floats(0.1, 1.0))
def test_cagrad_inner_problem_is_solved(G: torch.Tensor, c: float) -> None:
    """Our w* is at least as good as a tightly converged SLSQP on F(w) = g_wᵀg0 + ρ||g_w||."""
    K = gram_matrix(G)
    radius = c * math.sqrt(float(K.mean()))
    A, mean_row = K.numpy(), K.mean(1).numpy()

    def objective(w: np.ndarray) -> float:
        return float(w @ mean_row + radius * math.sqrt(max(float(w @ A @ w), 0.0)))

    reference = minimize(
        objective,
        np.full(3, 1 / 3),
        method="SLSQP",
        bounds=[(0, 1)] * 3,
        constraints={"type": "eq", "fun": lambda w: 1 - w.sum()},
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    ours = cagrad.conflict_averse_weights(K, radius).numpy()
    assert objective(ours) <= objective(reference.x) + 1e-10 * float(K.diagonal().max())


def test_cagrad_direction_stays_in_the_ball_and_improves_the_worst_objective() -> None:
    G = torch.tensor([[1.0, 0.0], [-0.9, 0.5]], dtype=torch.float64)
    c = 0.4
    direction = cagrad.aggregate(G, c=c, rescale=0).direction
    mean = G.mean(0)
    assert float((direction - mean).norm()) <= c * float(mean.norm()) + 1e-12
    assert float((G @ direction).min()) > float((G @ mean).min())


# ---------------------------------------------------------------- UPGrad and DualProj


@EXAMPLES
@given(G=gradient_matrices())
def test_upgrad_and_dualproj_are_the_mean_without_conflict(G: torch.Tensor) -> None:
    G = G.abs()  # non-negative entries: no two rows conflict
    for method in (upgrad.aggregate, dualproj.aggregate):
        result = method(G)
        assert_close(result.direction, G.mean(0), 1e-9, row_scale(G))


@EXAMPLES
@given(G=gradient_matrices())
def test_dualproj_is_the_mean_when_the_mean_does_not_conflict(G: torch.Tensor) -> None:
    mean = G.mean(0)
    result = dualproj.aggregate(G)
    if float((G @ mean).min()) >= 0:
        assert_close(result.direction, mean, 1e-9, row_scale(G))
    else:
        assert float((result.weights - 1 / G.shape[0]).min()) >= -1e-12
        assert float((result.direction - mean).norm()) > 0


@EXAMPLES
@given(
    G=gradient_matrices(),
    first=st.lists(log_scales, min_size=4, max_size=4),
    second=st.lists(log_scales, min_size=4, max_size=4),
)
def test_upgrad_is_linear_under_scaling(
    G: torch.Tensor, first: list[float], second: list[float]
) -> None:
    """d(diag(a + b) G) = d(diag(a) G) + d(diag(b) G) for positive a, b."""
    k = G.shape[0]
    a = torch.tensor(first[:k], dtype=torch.float64).unsqueeze(1)
    b = torch.tensor(second[:k], dtype=torch.float64).unsqueeze(1)
    together = upgrad.aggregate((a + b) * G).direction
    separately = upgrad.aggregate(a * G).direction + upgrad.aggregate(b * G).direction
    assert_close(together, separately, 1e-7, max_abs(together) + row_scale((a + b) * G))


def test_upgrad_weights_are_the_mean_of_the_projections() -> None:
    G = torch.tensor([[1.0, 0.0], [-0.5, 1.0], [0.2, -1.0]], dtype=torch.float64)
    K = gram_matrix(G)
    projections = torch.stack([project_onto_dual_cone(K, i) for i in range(3)])
    assert_close(upgrad.aggregate(G).weights, projections.mean(0), 1e-12, 1.0)


# ---------------------------------------------------------------- IMTL-G, ConFIG, Aligned-MTL


@EXAMPLES
@given(G=gradient_matrices())
def test_imtl_g_has_equal_projections_on_the_unit_vectors(G: torch.Tensor) -> None:
    result = imtl_g.aggregate(G)
    projections = (G / G.norm(dim=1, keepdim=True)) @ result.direction
    assert abs(float(result.weights.sum()) - 1) < 1e-9
    assert_close(projections, projections.mean().expand_as(projections), 1e-8, row_scale(G))


@EXAMPLES
@given(G=gradient_matrices(), scales=st.lists(log_scales, min_size=4, max_size=4))
def test_imtl_g_and_config_directions_keep_their_line_under_row_scaling(
    G: torch.Tensor, scales: list[float]
) -> None:
    row_scales = torch.tensor(scales[: G.shape[0]], dtype=torch.float64).unsqueeze(1)
    for method, same_sign in ((imtl_g.aggregate, False), (config.aggregate, True)):
        base, scaled = method(G).direction, method(row_scales * G).direction
        assume(float(base.norm()) > 1e-6 * row_scale(G))
        cosine = float(base @ scaled / (base.norm() * scaled.norm()))
        assert (cosine if same_sign else abs(cosine)) > 1 - 1e-9


@EXAMPLES
@given(G=gradient_matrices())
def test_config_has_equal_cosines_and_projection_length(G: torch.Tensor) -> None:
    direction = config.aggregate(G).direction
    unit = direction / direction.norm()
    cosines = (G / G.norm(dim=1, keepdim=True)) @ unit
    assert_close(cosines, cosines.mean().expand_as(cosines), 1e-8, 1.0)
    assert abs(float(direction.norm()) - float((G @ unit).sum())) <= 1e-8 * row_scale(G)


def test_config_and_aligned_mtl_on_orthogonal_rows() -> None:
    """Orthogonal rows: v ∝ Σ u_i for ConFIG; α_i = sqrt(λ_min) / ||g_i|| for Aligned-MTL."""
    norms = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    G = torch.diag(norms)
    unit = torch.ones(3, dtype=torch.float64) / math.sqrt(3)
    length = float((G @ unit).sum())
    assert_close(config.aggregate(G).direction, length * unit, 1e-12, 1.0)
    assert_close(aligned_mtl.aggregate(G).weights, 1.0 / norms, 1e-12, 1.0)


@EXAMPLES
@given(G=gradient_matrices())
def test_aligned_mtl_aligned_matrix_has_equal_singular_values(G: torch.Tensor) -> None:
    K = gram_matrix(G)
    B = aligned_mtl.alignment_matrix(K)
    eigenvalues = torch.linalg.eigvalsh(K)
    identity = torch.eye(G.shape[0], dtype=torch.float64)
    assert_close(B @ K @ B, float(eigenvalues[0]) * identity, 1e-10, float(eigenvalues[-1]))


def test_aligned_mtl_rank_deficient_keeps_the_range() -> None:
    g, h = random_rows(seed=14, k=2, n=8)
    G = torch.stack([g, 2 * g, h])
    B = aligned_mtl.alignment_matrix(gram_matrix(G))
    eigenvalues = torch.linalg.eigvalsh(B @ gram_matrix(G) @ B)
    kept = eigenvalues[eigenvalues > 1e-9 * float(eigenvalues.max())]
    assert kept.numel() == 2
    assert_close(kept, kept[0].expand_as(kept), 1e-9, float(kept[0]))


# ---------------------------------------------------------------- Nash-MTL


@EXAMPLES
@given(G=gradient_matrices())
def test_nash_mtl_solves_the_bargaining_equations(G: torch.Tensor) -> None:
    K = gram_matrix(G)
    raw = nash_mtl.aggregate(G, max_norm=0.0).weights
    assert float(raw.min()) > 0
    assert_close((K @ raw) * raw, torch.ones(G.shape[0]), 1e-6, 1.0)
    clipped = nash_mtl.aggregate(G)
    assert_close(clipped.weights, raw / (math.sqrt(G.shape[0]) + 1e-6), 1e-9, max_abs(raw))


@EXAMPLES
@given(G=gradient_matrices(), scales=st.lists(log_scales, min_size=4, max_size=4))
def test_nash_mtl_direction_ignores_per_objective_scaling(
    G: torch.Tensor, scales: list[float]
) -> None:
    row_scales = torch.tensor(scales[: G.shape[0]], dtype=torch.float64).unsqueeze(1)
    for method in (METHODS["nash_mtl"], METHODS["nash_mtl_unclipped"]):
        base = method(G).direction
        assert_close(method(row_scales * G).direction, base, 1e-6, max_abs(base))


def test_nash_mtl_zero_row_takes_no_part() -> None:
    g, h = random_rows(seed=15, k=2, n=8)
    G = torch.stack([g, torch.zeros_like(g), h])
    with_zero = nash_mtl.aggregate(G, max_norm=0.0)
    without = nash_mtl.aggregate(torch.stack([g, h]), max_norm=0.0)
    assert float(with_zero.weights[1]) == 0.0
    assert_close(with_zero.direction, without.direction, 1e-9, max_abs(without.direction))
