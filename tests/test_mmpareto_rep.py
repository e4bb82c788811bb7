"""Representation-level MMPareto and MGDA-UB: where they must equal the exact strategies,
what they compute elsewhere, and that they cross the encoders exactly once per step."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import make_conflicting, step_losses, tiny_batch, tiny_model
from torch import nn

from mmbench.models.multimodal import MultimodalClassifier
from mmbench.strategies.base import GradientStrategy, StepLosses, separate_gradients
from mmbench.strategies.mgda import MGDA
from mmbench.strategies.mgda_ub import MGDAUB
from mmbench.strategies.mmpareto import MMPareto
from mmbench.strategies.mmpareto_rep import MMParetoRep
from mmbench.strategies.uniform import Uniform


def grads_after(
    strategy: GradientStrategy, model: MultimodalClassifier, batch: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, float]]]:
    """Every parameter's gradient (by name) after one strategy step on a copy, and telemetry."""
    model = copy.deepcopy(model)
    rows = strategy.backward(model, step_losses(model, batch), telemetry=True)
    return {k: p.grad.clone() for k, p in model.named_parameters()}, rows


def is_encoder(key: str) -> bool:
    return key.startswith("encoders.")


def aligned(model: MultimodalClassifier) -> None:
    """Fused head = the unimodal heads side by side: g_mm points along g_u at both levels."""
    with torch.no_grad():
        weights = [model.heads[m].weight for m in model.modality_names]
        model.fusion.fc_out.weight.copy_(torch.cat(weights, dim=1))
        model.fusion.fc_out.bias.copy_(sum(model.heads[m].bias for m in model.modality_names))


def linear_encoders(model: MultimodalClassifier, dim: int = 16) -> MultimodalClassifier:
    """Each encoder a single Linear on the flattened input: dL/dW = a x^T at batch size 1."""
    torch.manual_seed(1)
    for spec in model.modalities:
        inputs = int(torch.tensor(spec.shape).prod())
        model.encoders[spec.name] = nn.Sequential(nn.Flatten(), nn.Linear(inputs, dim))
    return model


def test_without_conflict_at_either_level_both_give_gamma_times_uniform() -> None:
    model, batch = tiny_model(3), tiny_batch(3)
    aligned(model)
    exact, exact_rows = grads_after(MMPareto(gamma=1.5), model, batch)
    rep, rep_rows = grads_after(MMParetoRep(gamma=1.5), model, batch)
    plain, _ = grads_after(Uniform(), model, batch)
    for m in model.modality_names:
        assert exact_rows[m]["cos"] > 0 and rep_rows[m]["cos"] > 0
        assert rep_rows[m]["w_mm"] == rep_rows[m]["w_u"] == 0.5
    for key, g in plain.items():
        expected = 1.5 * g if is_encoder(key) else g
        torch.testing.assert_close(rep[key], expected, rtol=1e-5, atol=1e-7, msg=key)
        torch.testing.assert_close(rep[key], exact[key], rtol=1e-5, atol=1e-7, msg=key)


@pytest.mark.parametrize(
    "fast,slow",
    [
        (lambda: MMParetoRep(gamma=1.5), lambda: MMPareto(gamma=1.5, rescale="tensor")),
        (lambda: MGDAUB(), lambda: MGDA()),
    ],
)
def test_single_linear_encoder_at_batch_size_one_equals_the_exact_strategy(fast, slow) -> None:
    """In float64, so that the two orders of summation agree to ~1e-12, not float32's ~1e-6."""
    model = linear_encoders(tiny_model(2)).double()
    make_conflicting(model)
    with torch.no_grad():
        model.fusion.fc_out.weight.mul_(3.0)  # unequal norms: interior min-norm weights
    batch = {k: v.double() if v.is_floating_point() else v for k, v in tiny_batch(5, 1).items()}
    exact, exact_rows = grads_after(slow(), model, batch)
    rep, rep_rows = grads_after(fast(), model, batch)
    for m in model.modality_names:
        assert exact_rows[m]["cos"] < 0  # the min-norm branch, not the uniform one
        assert 0.01 < exact_rows[m]["w_mm"] < 0.99 and abs(exact_rows[m]["w_mm"] - 0.5) > 0.02
        for key in ("cos", "w_mm", "w_u"):
            assert rep_rows[m][key] == pytest.approx(exact_rows[m][key], rel=1e-6, abs=1e-7)
    for key, g in exact.items():
        torch.testing.assert_close(rep[key], g, rtol=1e-10, atol=1e-12, msg=key)


def test_the_rescale_is_active_in_the_linear_case() -> None:
    """The equality above covers the magnitude rule: without it the result differs."""
    model = linear_encoders(tiny_model(2))
    make_conflicting(model)
    with torch.no_grad():
        model.fusion.fc_out.weight.mul_(3.0)
    batch = tiny_batch(5, size=1)
    rescaled, _ = grads_after(MMParetoRep(rescale="encoder"), model, batch)
    direction, _ = grads_after(MMParetoRep(rescale="none"), model, batch)
    key = "encoders.gray.1.weight"
    ratio = rescaled[key].norm() / direction[key].norm()
    assert ratio > 1.01
    torch.testing.assert_close(rescaled[key], ratio * direction[key], rtol=1e-5, atol=1e-8)


def test_mgda_ub_is_the_parameter_combination_with_representation_weights() -> None:
    """J^T is linear: the update is w g_mm + (1 - w) g_u with w decided on z (conv encoders)."""
    model, batch = tiny_model(2), tiny_batch(5)
    make_conflicting(model)
    with torch.no_grad():
        model.fusion.fc_out.weight.mul_(3.0)
    reference = copy.deepcopy(model)
    separate = separate_gradients(reference, step_losses(reference, batch))
    position = {k: i for i, (k, _) in enumerate(reference.named_parameters())}
    rep, rows = grads_after(MGDAUB(), model, batch)
    plain, _ = grads_after(Uniform(), model, batch)
    for key, g in rep.items():
        if not is_encoder(key):
            torch.testing.assert_close(g, plain[key], msg=key)  # heads: plain gradient
            continue
        w = rows[key.split(".")[1]]["w_mm"]
        i = position[key]
        expected = w * separate.fused[i] + (1 - w) * separate.unimodal[i]
        torch.testing.assert_close(g, expected, rtol=1e-4, atol=1e-6, msg=key)


def count_encoder_passes(
    strategy: GradientStrategy,
    model: MultimodalClassifier,
    batch: dict[str, torch.Tensor],
    telemetry: bool,
) -> dict[str, tuple[int, int]]:
    """Per encoder: executions of its output node (backward entering it) and of its first
    parameter's gradient hook, during one strategy step."""
    model = copy.deepcopy(model)
    losses = step_losses(model, batch)
    counts = {m: [0, 0] for m in model.modality_names}
    for m in model.modality_names:
        node = losses.outputs.features[m].grad_fn
        node.register_prehook(lambda grads, m=m: counts[m].__setitem__(0, counts[m][0] + 1))
        first = model.encoder_parameters()[m][0]
        first.register_hook(lambda g, m=m: counts[m].__setitem__(1, counts[m][1] + 1))
    strategy.backward(model, losses, telemetry=telemetry)
    return {m: tuple(c) for m, c in counts.items()}


@pytest.mark.parametrize(
    "make,telemetry,passes",
    [
        (MMParetoRep, False, 1),
        (MMParetoRep, True, 1),  # its telemetry is the representation stats: no extra pass
        (MGDAUB, False, 1),
        (MGDAUB, True, 1),
        (Uniform, False, 1),
        (Uniform, True, 3),  # the counter sees uniform's two telemetry passes
        (MMPareto, False, 2),  # and the exact strategy's two passes
        (lambda: MMParetoRep(exact_below=1.0), False, 2),  # adaptive mode, every step exact
        (lambda: MMParetoRep(exact_below=-1.0), False, 1),
    ],
)
def test_encoders_are_crossed_once(make, telemetry: bool, passes: int) -> None:
    model, batch = tiny_model(4), tiny_batch(4)
    make_conflicting(model)
    counts = count_encoder_passes(make(), model, batch, telemetry)
    assert counts == {m: (passes, passes) for m in model.modality_names}


def test_adaptive_mode_takes_the_exact_step_when_the_representation_signals_conflict() -> None:
    model, batch = tiny_model(2), tiny_batch(5)
    make_conflicting(model)
    exact, exact_rows = grads_after(MMPareto(), model, batch)
    adaptive, rows = grads_after(MMParetoRep(exact_below=0.0), model, batch)
    assert all(torch.equal(adaptive[k], g) for k, g in exact.items())
    assert all(rows[m]["exact"] == 1.0 for m in rows)
    assert rows["gray"]["cos"] == exact_rows["gray"]["cos"]
    aligned(model)
    _, rows = grads_after(MMParetoRep(exact_below=0.0), model, batch)
    assert all(rows[m]["exact"] == 0.0 for m in rows)


def test_bf16_autocast_gives_float32_gradients_close_to_float32() -> None:
    model, batch = tiny_model(2), tiny_batch(5)
    make_conflicting(model)
    reference, _ = grads_after(MMParetoRep(), model, batch)
    model = copy.deepcopy(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(batch)
    assert outputs.features["gray"].dtype == torch.bfloat16
    MMParetoRep().backward(model, StepLosses.from_outputs(outputs, batch))
    for key, p in model.named_parameters():
        assert p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all(), key
        cos = torch.nn.functional.cosine_similarity(p.grad.flatten(), reference[key].flatten(), 0)
        assert cos > 0.95, key


def test_refuses_a_per_tensor_rescale_naming_the_config() -> None:
    with pytest.raises(ValueError, match=r"mmpareto_rep\.yaml.*rescale='tensor'"):
        MMParetoRep(rescale="tensor")
    with pytest.raises(ValueError, match="exact_below"):
        MMParetoRep(exact_below=2.0)
