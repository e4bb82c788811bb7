"""MMPareto against its specification and the official four-pass procedure."""

from __future__ import annotations

import math
from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmbench.strategies import base
from mmbench.strategies.base import separate_gradients
from mmbench.strategies.mgda import combine as mgda_combine
from mmbench.strategies.mgda import min_norm_weight
from mmbench.strategies.mmpareto import RESCALE_MODES, MMPareto, combine
from mmbench.strategies.official_mmpareto import OfficialFourPassMMPareto
from mmbench.strategies.uniform import Uniform
from tests.conftest import make_conflicting, step_losses, tiny_batch, tiny_model

SHAPES = [(4, 3), (5,), (2, 2, 2)]


def random_grads(seed: int, shapes=SHAPES) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]


def flat(ts: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in ts])


def test_no_conflict_is_exactly_gamma_times_uniform() -> None:
    g_mm = random_grads(0)
    g_u = [g + 0.1 * h for g, h in zip(g_mm, random_grads(1), strict=True)]
    out, info = combine(g_mm, g_u)
    assert info.cos > 0 and info.w_mm == 0.5 and info.w_u == 0.5
    for o, a, b in zip(out, g_mm, g_u, strict=True):
        assert torch.equal(o, 1.5 * (a + b))


def test_conflict_uses_closed_form_weights_and_per_tensor_norm() -> None:
    # Hand-made conflict: x1 = (1, 0 | 0), x2 = (-1, 2 | 1) -> cos < 0.
    g_mm = [torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64)]
    g_u = [torch.tensor([-1.0, 2.0], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64)]
    v11, v12, v22 = 1.0, -1.0, 6.0
    w = (v22 - v12) / (v11 + v22 - 2 * v12)  # = 7/9
    out, info = combine(g_mm, g_u, gamma=1.5)
    assert info.cos < 0
    assert info.w_mm.item() == pytest.approx(w) and info.w_u.item() == pytest.approx(1 - w)
    for o, a, b in zip(out, g_mm, g_u, strict=True):
        d = 2 * (w * a + (1 - w) * b)
        expected_norm = 1.5 * max((a + b).norm().item(), d.norm().item())
        assert o.norm().item() == pytest.approx(expected_norm)
        assert torch.allclose(o / o.norm(), d / d.norm())


@settings(max_examples=60, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000), anti=st.floats(-3.0, 3.0), gamma=st.floats(0.5, 3.0))
def test_random_gradients_follow_the_formula(seed: int, anti: float, gamma: float) -> None:
    g_mm = random_grads(seed)
    g_u = [anti * a + b for a, b in zip(g_mm, random_grads(seed + 1), strict=True)]
    out, info = combine(g_mm, g_u, gamma=gamma)
    x1, x2 = flat(g_mm), flat(g_u)
    cos = (x1 @ x2) / (x1.norm() * x2.norm())
    if cos > 0:
        w = 0.5
    else:
        w = min_norm_weight(x1 @ x1, x1 @ x2, x2 @ x2).item()
        assert 0.001 <= w <= 0.999
    assert info.w_mm.item() == pytest.approx(w) and info.w_u.item() == pytest.approx(1 - w)
    for o, a, b in zip(out, g_mm, g_u, strict=True):
        d = 2 * (w * a + (1 - w) * b)
        assert o.norm().item() == pytest.approx(gamma * max((a + b).norm(), d.norm()).item())
        assert torch.allclose(o, d * (o.norm() / d.norm()))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000))
def test_conflict_branch_never_conflicts_with_either_objective(seed: int) -> None:
    g_mm = random_grads(seed)
    g_u = [-a + 0.5 * b for a, b in zip(g_mm, random_grads(seed + 7), strict=True)]
    out, info = combine(g_mm, g_u, rescale="encoder", clip=(0.0, 1.0))
    assert info.cos < 0
    direction = flat(out)
    assert direction @ flat(g_mm) >= -1e-9 and direction @ flat(g_u) >= -1e-9


def test_rescale_modes() -> None:
    g_mm, g_u = random_grads(3), [-g for g in random_grads(3)]
    g_u[0] = g_u[0] + 0.3
    none, info = combine(g_mm, g_u, rescale="none")
    d = [2 * (info.w_mm * a + info.w_u * b) for a, b in zip(g_mm, g_u, strict=True)]
    assert all(torch.allclose(o, 1.5 * x) for o, x in zip(none, d, strict=True))
    enc, _ = combine(g_mm, g_u, rescale="encoder")
    ratio = max(1.0, (flat(g_mm) + flat(g_u)).norm().item() / flat(d).norm().item())
    assert all(torch.allclose(o, 1.5 * ratio * x) for o, x in zip(enc, d, strict=True))
    with pytest.raises(ValueError, match="rescale"):
        combine(g_mm, g_u, rescale="layer")


@pytest.mark.parametrize("inplace", [False, True])
def test_cpu_sweep_and_foreach_kernels_agree(inplace: bool, monkeypatch) -> None:
    """CPU goes tensor by tensor, CUDA uses foreach kernels: same products and sums."""
    g_mm, g_u = random_grads(21), random_grads(22)
    g_mm.append(torch.randn(3, 4, 2, 2, dtype=torch.float64).to(memory_format=torch.channels_last))
    g_u.append(torch.randn(3, 4, 2, 2, dtype=torch.float64))  # mixed layouts: no flat view
    results = {}
    for sweep in (True, False):
        monkeypatch.setattr(base, "goes_tensor_by_tensor", lambda device, sweep=sweep: sweep)
        a, b = [g.clone() for g in g_mm], [g.clone() for g in g_u]
        products, out, sum_norms = base.sweep_pair(a, b, scale=1.5, inplace=inplace)
        assert all((o is x) == inplace for o, x in zip(out, a, strict=True))
        expected_norms = [(x + y).norm() for x, y in zip(g_mm, g_u, strict=True)]
        assert torch.allclose(sum_norms, torch.stack(expected_norms))
        assert all(torch.equal(x, y) for x, y in zip(b, g_u, strict=True))
        opposed = [0.3 * y - x for x, y in zip(g_mm, g_u, strict=True)]
        combined = [
            flat(combine(g_mm, other, rescale=rescale)[0])
            for other in (g_u, opposed)
            for rescale in RESCALE_MODES
        ]
        assert combine(g_mm, opposed)[1].cos < 0  # the conflict branch is covered too
        results[sweep] = products, out, combined
    x1, x2 = flat(g_mm), flat(g_u)
    for products, out, combined in results.values():
        sums = (products.aa.sum(), products.ab.sum(), products.bb.sum())
        assert torch.allclose(torch.stack(sums), torch.stack([x1 @ x1, x1 @ x2, x2 @ x2]))
        assert torch.allclose(flat(out), 1.5 * (x1 + x2))
        for mine, reference in zip(combined, results[True][2], strict=True):
            assert torch.allclose(mine, reference)


@pytest.mark.parametrize("rescale", RESCALE_MODES)
@pytest.mark.parametrize("anti", [-2.0, 0.0, 2.0])  # conflict, either, no conflict
def test_inplace_gives_the_same_result_and_only_writes_g_mm(rescale: str, anti: float) -> None:
    g_mm = random_grads(11)
    g_u = [anti * a + b for a, b in zip(g_mm, random_grads(12), strict=True)]
    mm_before, u_before = [g.clone() for g in g_mm], [g.clone() for g in g_u]
    expected, info = combine(g_mm, g_u, rescale=rescale)
    assert all(torch.equal(a, b) for a, b in zip(g_mm + g_u, mm_before + u_before, strict=True))
    out, info_inplace = combine(g_mm, g_u, rescale=rescale, inplace=True)
    assert all(o is g for o, g in zip(out, g_mm, strict=True))  # written where g_mm lay
    assert all(torch.equal(a, b) for a, b in zip(g_u, u_before, strict=True))
    assert all(torch.allclose(o, e) for o, e in zip(out, expected, strict=True))
    assert torch.equal(torch.stack(list(info)), torch.stack(list(info_inplace)))


def test_mgda_inplace_matches_and_only_writes_g_mm() -> None:
    g_mm, g_u = random_grads(13), [-2 * g for g in random_grads(13)]
    g_u[0] = g_u[0] + 1.0
    u_before = [g.clone() for g in g_u]
    expected, _ = mgda_combine(g_mm, g_u)
    out, _ = mgda_combine(g_mm, g_u, inplace=True)
    assert all(o is g for o, g in zip(out, g_mm, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(g_u, u_before, strict=True))
    assert all(torch.allclose(o, e) for o, e in zip(out, expected, strict=True))


class SharedBias(torch.nn.Module):
    """y = x + b1 + b2: autograd hands b1 and b2 the very same gradient buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.b1 = torch.nn.Parameter(torch.zeros(3))
        self.b2 = torch.nn.Parameter(torch.zeros(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b1 + self.b2


def test_separate_gradients_own_their_storage() -> None:
    model = SharedBias()
    out = model(torch.randn(3))
    raw = torch.autograd.grad(out.sum(), [model.b1, model.b2], retain_graph=True)
    assert raw[0].untyped_storage().data_ptr() == raw[1].untyped_storage().data_ptr()
    losses = mock.Mock(fused=out.sum(), unimodal_sum=lambda: (2 * out).sum())
    grads = separate_gradients(model, losses)
    buffers = [g.untyped_storage().data_ptr() for g in grads.fused + grads.unimodal]
    assert len(set(buffers)) == 4
    assert all(torch.equal(g, torch.ones(3)) for g in grads.fused)
    assert all(torch.equal(g, torch.full((3,), 2.0)) for g in grads.unimodal)


@pytest.mark.parametrize("case", ["mm_zero", "u_zero", "both_zero", "tensor_zero"])
def test_zero_directions_give_no_nan(case: str) -> None:
    g_mm, g_u = random_grads(4), random_grads(5)
    if case in ("mm_zero", "both_zero"):
        g_mm = [torch.zeros_like(g) for g in g_mm]
    if case in ("u_zero", "both_zero"):
        g_u = [torch.zeros_like(g) for g in g_u]
    if case == "tensor_zero":
        g_mm[1] = torch.zeros_like(g_mm[1])
        g_u[1] = torch.zeros_like(g_u[1])
        g_u = [-g for g in g_u]
    out, info = combine(g_mm, g_u)
    assert all(torch.isfinite(o).all() for o in out)
    assert all(math.isfinite(v.item()) for v in info)
    if case == "both_zero":
        assert all(torch.equal(o, torch.zeros_like(o)) for o in out)
    if case == "mm_zero":  # w_mm = 0.999 on the zero vector: the final grad is 1.5 g_u
        assert all(torch.allclose(o, 1.5 * b) for o, b in zip(out, g_u, strict=True))


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_gradients_are_truly_separate_and_conflict_on_a_real_batch() -> None:
    model, batch = tiny_model(), tiny_batch()
    make_conflicting(model)
    telemetry = MMPareto().backward(model, step_losses(model, batch), telemetry=True)
    for encoder in ("gray", "color"):
        assert telemetry[encoder]["cos"] < -0.5, telemetry  # never the pitfall's cosine of 1
    # The separate gradients equal each loss's own gradient computed alone.
    model.zero_grad()
    losses = step_losses(model, batch)
    grads = separate_gradients(model, losses, retain_graph=True)
    params = grads.params
    alone_mm = torch.autograd.grad(losses.fused, params, retain_graph=True, allow_unused=True)
    alone_gray = torch.autograd.grad(losses.unimodal["gray"], params, allow_unused=True)
    gray = {id(p) for p in model.encoders["gray"].parameters()}
    for p, sep_mm, ref_mm, sep_u, ref_u in zip(
        params, grads.fused, alone_mm, grads.unimodal, alone_gray, strict=True
    ):
        if sep_mm is not None:
            assert torch.allclose(sep_mm, ref_mm)
        if id(p) in gray:
            assert torch.allclose(sep_u, ref_u)


def test_weights_are_not_swapped_under_conflict() -> None:
    model, batch = tiny_model(1), tiny_batch(1)
    make_conflicting(model)
    with torch.no_grad():  # make the unimodal gradient much larger than the fused one
        for m in model.modality_names:
            model.heads[m].weight.mul_(4.0)
    losses = step_losses(model, batch)
    enc = list(model.encoders["color"].parameters())
    x1 = flat(list(torch.autograd.grad(losses.fused, enc, retain_graph=True)))
    x2 = flat(list(torch.autograd.grad(losses.unimodal["color"], enc, retain_graph=True)))
    expected = min_norm_weight(x1 @ x1, x1 @ x2, x2 @ x2).item()
    telemetry = MMPareto().backward(model, losses, telemetry=True)["color"]
    assert telemetry["w_mm"] == pytest.approx(expected, rel=1e-4)
    assert telemetry["norm_u"] > telemetry["norm_mm"]
    assert telemetry["w_mm"] > 0.5  # the min-norm point leans towards the smaller gradient


@pytest.mark.parametrize("conflict", [False, True])
def test_matches_the_official_four_pass_procedure(conflict: bool) -> None:
    results = []
    for strategy in (MMPareto(), OfficialFourPassMMPareto()):
        model, batch = tiny_model(2), tiny_batch(2)
        if conflict:
            make_conflicting(model)
        strategy.backward(model, step_losses(model, batch))
        results.append(_grads(model))
    assert results[0].keys() == results[1].keys()
    for name in results[0]:
        assert torch.allclose(results[0][name], results[1][name], rtol=1e-4, atol=1e-7), name


def test_heads_equal_uniform_and_encoders_scale_without_conflict() -> None:
    grads = {}
    for strategy in (MMPareto(), Uniform()):
        model, batch = tiny_model(3), tiny_batch(3)
        strategy.backward(model, step_losses(model, batch))
        grads[strategy.name] = _grads(model)
    model, batch = tiny_model(3), tiny_batch(3)
    telemetry = MMPareto().backward(model, step_losses(model, batch), telemetry=True)
    for name, g in grads["uniform"].items():
        if name.startswith(("heads.", "fusion.")):
            assert torch.allclose(grads["mmpareto"][name], g, rtol=1e-5, atol=1e-8), name
        else:
            encoder = name.split(".")[1]
            if telemetry[encoder]["cos"] > 0:
                assert torch.allclose(grads["mmpareto"][name], 1.5 * g, rtol=1e-4, atol=1e-7), name


def test_two_backward_passes_per_step() -> None:
    model, batch = tiny_model(), tiny_batch()
    losses = step_losses(model, batch)
    with (
        mock.patch("torch.autograd.grad", wraps=torch.autograd.grad) as grad,
        mock.patch("torch.Tensor.backward", autospec=True) as backward,
    ):
        MMPareto().backward(model, losses, telemetry=True)
    assert grad.call_count == 2
    assert backward.call_count == 0
