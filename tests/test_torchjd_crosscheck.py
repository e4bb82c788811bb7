"""Our aggregators against torchjd 0.18.0 (a dev dependency: an import failure fails here).

torchjd (TorchJD/torchjd, ``torchjd/aggregation/*.py``) implements UPGrad, DualProj, MGDA,
PCGrad, IMTL-G, Aligned-MTL, CAGrad, ConFIG, GradVac and Nash-MTL. Each comparison runs on
seeded random float64 matrices with 2 and 3 rows (5-20 columns, with and without a shared
component, so some rows conflict) and states its conventions and tolerance:

- closed forms / exact active-set QPs (UPGrad, DualProj with quadprog, IMTL-G, Aligned-MTL,
  ConFIG, PCGrad, GradVac): 1e-10;
- iterative solvers: MGDA (torchjd's Frank-Wolfe, run to 1e-12 / 10^5 steps) and CAGrad
  (cvxpy/CLARABEL): our objective value is never worse, weights agree to 1e-4;
  Nash-MTL (cvxpy/ECOS convex-concave steps, stopped at residual 1e-3): 1e-6 relative.
"""

from __future__ import annotations

import pytest
import torch
import torchjd.aggregation as tjd
from torchjd._linalg import QuadprogProjector

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
from mmbench.strategies.gram import gram_matrix

CASES = [(seed, k) for seed in range(4) for k in (2, 3)]
EXACT = 1e-10


def rows(seed: int, k: int) -> torch.Tensor:
    """k Gaussian rows of 5-20 columns plus ±0.5 of a shared vector (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    n = 5 + (5 * seed) % 16
    G = torch.randn(k, n, generator=generator, dtype=torch.float64)
    shared = torch.randn(1, n, generator=generator, dtype=torch.float64)
    return G + (0.5 if seed % 2 else -0.5) * shared


def conflicting(seed: int, k: int) -> torch.Tensor:
    """Rows whose first two have a negative inner product (so surgery and projection act)."""
    G = rows(seed, k)
    if float(G[0] @ G[1]) > 0:
        G[1] = G[1] - 2 * float(G[0] @ G[1]) / float(G[0] @ G[0]) * G[0]
    return G


def close(ours: torch.Tensor, theirs: torch.Tensor, tol: float) -> None:
    error = float((ours.double() - theirs.double()).abs().max())
    scale = float(theirs.double().abs().max())
    assert error <= tol * max(scale, 1.0), f"error {error:.2e} > {tol:.0e} x {scale:.2e}"


@pytest.mark.parametrize(("seed", "k"), CASES)
def test_upgrad_and_dualproj_exact(seed: int, k: int) -> None:
    """reg_eps = 0 on both sides (torchjd's projector then solves the exact QP on K / tr K)."""
    G = conflicting(seed, k)
    projector = QuadprogProjector(norm_eps=0.0, reg_eps=0.0)
    close(upgrad.aggregate(G).direction, tjd.UPGrad(projector=projector)(G), EXACT)
    close(dualproj.aggregate(G).direction, tjd.DualProj(projector=projector)(G), EXACT)


@pytest.mark.parametrize("scale", [1.0, 1e-4])
@pytest.mark.parametrize(("seed", "k"), CASES)
def test_upgrad_and_dualproj_with_torchjd_regularisation(seed: int, k: int, scale: float) -> None:
    """reg_eps = norm_eps = 1e-4 (torchjd's defaults), also below the trace threshold."""
    G = scale * conflicting(seed, k)
    close(upgrad.aggregate(G, reg_eps=1e-4).direction, tjd.UPGrad()(G), EXACT)
    close(dualproj.aggregate(G, reg_eps=1e-4).direction, tjd.DualProj()(G), EXACT)


@pytest.mark.parametrize(("seed", "k"), CASES)
def test_mgda(seed: int, k: int) -> None:
    """Exact min-norm weights vs torchjd's Frank-Wolfe (Sener & Koltun's Algorithm 2)."""
    G = conflicting(seed, k)
    K = gram_matrix(G)
    ours = mgda_k.aggregate(G).weights
    theirs = tjd.MGDA(epsilon=1e-12, max_iters=100_000).gramian_weighting(K)
    assert float(ours @ K @ ours) <= float(theirs @ K @ theirs) * (1 + 1e-12)
    close(ours, theirs, 1e-4)


@pytest.mark.parametrize(("seed", "k"), CASES)
def test_pcgrad(seed: int, k: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same projection order on both sides: torchjd's global randperm made the identity,
    ours without a generator (order j = 0, 1, ...). Sum reduction on both."""
    G = conflicting(seed, k)
    monkeypatch.setattr(torch, "randperm", lambda n, *args, **kwargs: torch.arange(n))
    close(pcgrad.aggregate(G).direction, tjd.PCGrad()(G), EXACT)


@pytest.mark.parametrize(("seed", "k"), CASES)
def test_imtl_g(seed: int, k: int) -> None:
    G = rows(seed, k)
    close(imtl_g.aggregate(G).direction, tjd.IMTLG()(G), EXACT)


@pytest.mark.parametrize("scale_mode", ["min", "median", "rmse"])
@pytest.mark.parametrize(("seed", "k"), CASES)
def test_aligned_mtl(seed: int, k: int, scale_mode: str) -> None:
    """Convention: torchjd applies B to the mean weights 1/k, ours to 1 (the paper's α = B1)."""
    G = rows(seed, k)
    theirs = tjd.AlignedMTL(scale_mode=scale_mode)(G)
    close(aligned_mtl.aggregate(G, scale_mode=scale_mode).direction / k, theirs, EXACT)


@pytest.mark.parametrize(("seed", "k"), CASES)
def test_cagrad(seed: int, k: int) -> None:
    """Convention: torchjd has no rescaling (our rescale=0). Solver: CLARABEL vs ours."""
    G = conflicting(seed, k)
    K = gram_matrix(G)
    ours = cagrad.aggregate(G, c=0.4, rescale=0).weights
    theirs = tjd.CAGrad(c=0.4).gramian_weighting(K)
    close(ours, theirs, 1e-4)

    def objective(weights: torch.Tensor) -> float:
        """F(w) of the conflict-averse dual at w = (weights - 1/k) / λ normalised onto Δ."""
        w = (weights - 1 / k).clamp_min(0)
        w = w / w.sum()
        mean = torch.full((k,), 1 / k, dtype=torch.float64)
        return float(w @ K @ mean + 0.4 * (mean @ K @ mean).sqrt() * (w @ K @ w).sqrt())

    assert objective(ours) <= objective(theirs) + 1e-9


@pytest.mark.parametrize(("seed", "k"), CASES)
def test_config(seed: int, k: int) -> None:
    """Both: v = U⁺1, d = (Σ g_iᵀ v̂) v̂ (torchjd's default preference 1, the sum)."""
    G = conflicting(seed, k)
    close(config.aggregate(G).direction, tjd.ConFIG()(G), EXACT)


@pytest.mark.parametrize(("seed", "k"), CASES)
def test_gradvac_with_state_over_steps(seed: int, k: int) -> None:
    """Five steps with the EMA targets carried. Same order: our generator and torchjd's global
    RNG seeded alike draw the same randperm per objective. torchjd's eps (added to both
    denominators) set to 0; ours (a floor on sqrt(1 - φ̂²)) never binds here."""
    aggregator = tjd.GradVac(beta=0.3, eps=0.0)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    state = None
    for step in range(5):
        G = conflicting(100 * seed + step, k)
        ours, state = gradvac.aggregate(G, state, beta=0.3, generator=generator)
        close(ours.direction, aggregator(G), EXACT)
        close(state.target, aggregator.gramian_weighting._phi_t, EXACT)


@pytest.mark.filterwarnings("ignore:You are solving a parameterized problem that is not DPP")
@pytest.mark.parametrize(("seed", "k"), CASES)
def test_nash_mtl(seed: int, k: int) -> None:
    """Both solve (Kα)_i = 1/α_i for the unnormalised K; clipping off on both (max_norm=0).
    torchjd clips to exactly max_norm, ours with clip_grad_norm_'s + 1e-6 (the authors')."""
    G = rows(seed, k)
    ours = nash_mtl.aggregate(G, max_norm=0.0).weights
    theirs = tjd.NashMTL(n_tasks=k, max_norm=0.0).weighting(G)
    close(ours / theirs, torch.ones(k, dtype=torch.float64), 1e-6)
    clipped = nash_mtl.aggregate(G).weights
    theirs_clipped = tjd.NashMTL(n_tasks=k, max_norm=1.0).weighting(G)
    close(clipped / theirs_clipped, torch.ones(k, dtype=torch.float64), 2e-6)
