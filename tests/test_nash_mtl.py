"""Nash-MTL against the authors' algorithm (AvivNavon/nash-mtl methods/weight_methods.py):
the bargaining equations of the unnormalised Gram matrix, scale invariance, and their
clip_grad_norm_ of the shared (here: encoder) gradient."""

from __future__ import annotations

import math

import pytest
import torch

from mmbench.strategies import nash_mtl
from mmbench.strategies.aggregated import PerEncoderAggregation
from mmbench.strategies.gram import gram_matrix

DIAGONAL = torch.tensor([[3.0, 0.0], [0.0, 4.0]], dtype=torch.float64)


def random_rows(seed: int, k: int, n: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(k, n, generator=generator, dtype=torch.float64)


def test_orthogonal_rows_closed_form() -> None:
    """G = diag(3, 4): α = (1/3, 1/4), d = (1, 1) (the reviewer's and torchjd's numbers)."""
    result = nash_mtl.aggregate(DIAGONAL, max_norm=0.0)
    torch.testing.assert_close(result.weights, torch.tensor([1 / 3, 1 / 4], dtype=torch.float64))
    torch.testing.assert_close(result.direction, torch.ones(2, dtype=torch.float64))


@pytest.mark.parametrize("scale", [1e-3, 0.1, 10.0, 1e4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_direction_is_invariant_to_a_common_scale(seed: int, scale: float) -> None:
    G = random_rows(seed, k=3, n=12)
    base, scaled = nash_mtl.aggregate(G, max_norm=0.0), nash_mtl.aggregate(scale * G, max_norm=0)
    torch.testing.assert_close(scaled.direction, base.direction, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(scaled.weights * scale, base.weights, rtol=1e-9, atol=0.0)


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_unnormalised_bargaining_equations_and_norm(seed: int) -> None:
    """α_i (Kα)_i = 1 for K = G Gᵀ itself, hence ||d||² = k."""
    G = 7.0 * random_rows(seed, k=3, n=10)
    result = nash_mtl.aggregate(G, max_norm=0.0)
    K = gram_matrix(G)
    torch.testing.assert_close(result.weights * (K @ result.weights), torch.ones(3).double())
    assert math.isclose(float(result.direction.norm()), math.sqrt(3), rel_tol=1e-9)


def test_default_clips_like_clip_grad_norm() -> None:
    """max_norm=1 (the authors' default) scales d by 1 / (||d|| + 1e-6) as clip_grad_norm_."""
    G = 10 * DIAGONAL
    clipped = nash_mtl.aggregate(G)
    unclipped = nash_mtl.aggregate(G, max_norm=0.0)
    parameter = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    parameter.grad = unclipped.direction.clone()
    torch.nn.utils.clip_grad_norm_([parameter], max_norm=1.0)
    torch.testing.assert_close(clipped.direction, parameter.grad, rtol=1e-12, atol=0.0)
    torch.testing.assert_close(clipped.direction, nash_mtl.aggregate(DIAGONAL).direction)
    assert clipped.direction @ torch.ones(2).double() == pytest.approx(math.sqrt(2), rel=1e-5)


def test_short_directions_are_not_clipped() -> None:
    G = DIAGONAL
    assert torch.equal(
        nash_mtl.aggregate(G, max_norm=2.0).direction, nash_mtl.aggregate(G, max_norm=0).direction
    )


def test_rejects_negative_max_norm() -> None:
    with pytest.raises(ValueError, match="max_norm"):
        nash_mtl.aggregate(DIAGONAL, max_norm=-1.0)


def test_strategy_config_knob_reaches_the_aggregator() -> None:
    """conf/strategy/nash_mtl.yaml's max_norm is an accepted knob; the retired one is refused."""
    strategy = PerEncoderAggregation("nash_mtl", max_norm=1.0)
    assert strategy.knobs["max_norm"] == 1.0
    with pytest.raises(ValueError, match="normalize_gram"):
        PerEncoderAggregation("nash_mtl", normalize_gram=True)
