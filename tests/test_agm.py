"""AGM follows Lingy12/AGM_ICCV2023 (run/CREMAD_main.py, model/CREMAD_net.py); exact resume."""

from __future__ import annotations

import copy
import math
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from mmbench.strategies.agm import (
    AGM,
    agm_coefficients,
    clip_gradients,
    mono_modal_scores,
    padded_outputs,
    responses,
    score_ratios,
    shapley_coefficients,
)
from tests.conftest import step_losses, tiny_batch, tiny_model

CONF = Path(__file__).resolve().parent.parent / "conf" / "strategy"
CE = nn.functional.cross_entropy


def with_batchnorm(seed: int):
    """The tiny model with conv + BatchNorm encoders (train and eval modes differ)."""
    model = tiny_model(seed)
    torch.manual_seed(seed)
    for name, channels in (("gray", 1), ("color", 3)):
        model.encoders[name] = nn.Sequential(
            nn.Conv2d(channels, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, 16),
        )
    return model


def bias_free(seed: int):
    """The tiny model with bias-free linear + ReLU encoders: zero input -> zero features."""
    model = tiny_model(seed)
    torch.manual_seed(seed)
    for name, size in (("gray", 64), ("color", 192)):
        model.encoders[name] = nn.Sequential(
            nn.Flatten(), nn.Linear(size, 16, bias=False), nn.ReLU()
        )
    return model


def strategy_losses(model, batch, epoch: int = 0):
    losses = step_losses(model, batch)
    losses.batch, losses.epoch = batch, epoch
    return losses


def test_preset_is_the_authors_cremad_setting() -> None:
    strategy = instantiate(OmegaConf.load(CONF / "agm.yaml").method)
    assert (strategy.alpha, strategy.gap_cap, strategy.grad_clip) == (1.0, 10.0, 1.0)
    assert strategy.window == (0, 19) and strategy.hold_after_window
    assert not strategy.trains_unimodal_heads


def test_two_modality_response_is_half_total_minus_pad_self_plus_pad_other() -> None:
    names = ["a", "v"]
    gen = torch.Generator().manual_seed(0)
    total, only_a, only_v = (torch.randn(3, 4, generator=gen) for _ in range(3))
    phi = responses(names, total, {frozenset("a"): only_a, frozenset("v"): only_v})
    # CREMAD_net.py: pad_audio_out = f(visual only), pad_visual_out = f(audio only)
    torch.testing.assert_close(phi["a"], 0.5 * (total - only_v + only_a))
    torch.testing.assert_close(phi["v"], 0.5 * (total - only_a + only_v))
    torch.testing.assert_close(phi["a"] + phi["v"], total)


def test_three_modality_responses_are_urfunny_nets() -> None:
    # URFunny_net.py Modality_Audio: (total - pad_a + pad_vt) / 3
    #                                + (pad_v - pad_at + pad_t - pad_va) / 6
    c = shapley_coefficients(["a", "v", "t"], {"a": 1.0, "v": 0.0, "t": 0.0})
    third, sixth = Fraction(1, 3), Fraction(1, 6)
    expected = {
        "avt": third,
        "vt": -third,  # pad_a
        "a": third,  # pad_vt
        "at": sixth,  # pad_v
        "v": -sixth,  # pad_at
        "av": sixth,  # pad_t
        "t": -sixth,  # pad_va
    }
    assert {"".join(sorted(t, key="avt".index)): v for t, v in c.items()} == pytest.approx(
        {t: float(v) for t, v in expected.items()}
    )


def test_ratios_and_coefficients_follow_cremad_main() -> None:
    ratios = score_ratios({"a": 0.4, "v": 1.5})
    assert ratios["a"] == pytest.approx(math.exp(1.5 - 0.4))  # a's loss is lower: dominant
    assert ratios["v"] == pytest.approx(math.exp(0.4 - 1.5))
    three = score_ratios({"a": 0.4, "v": 1.5, "t": 0.8})  # URFunny_main.py: factor 3/2
    assert three["a"] == pytest.approx(math.exp(1.5 * ((0.4 + 1.5 + 0.8) / 3 - 0.4)))
    steady = {"a": 0.4, "v": 1.5}
    k, _ = agm_coefficients(steady, steady, alpha=1.0, gap_cap=10.0)
    assert k == pytest.approx({"a": 1.0, "v": 1.0})
    k, _ = agm_coefficients({"a": 0.0, "v": 20.0}, {"a": 9.0, "v": 0.0}, 2.0, 10.0)
    # optimal_ratio - ratio is capped at 10 from above only, before alpha
    assert k["v"] == pytest.approx(math.exp(2.0 * 10.0))
    assert k["a"] == pytest.approx(math.exp(2.0 * (math.exp(-9.0) - math.exp(20.0))))


def test_scores_floor_the_label_probability() -> None:
    logits = {"a": torch.tensor([[30.0, -30.0], [0.0, 0.0]])}
    scores = mono_modal_scores(logits, torch.tensor([1, 0]))
    assert scores["a"] == pytest.approx((-math.log(1e-8) + math.log(2)) / 2)


def authors_step(model, batch, scales: dict[str, float], clip: float | None) -> None:
    """CREMAD_net.py GradMod + CREMAD_main.py, rebuilt with backward hooks on our model."""
    taps = {}
    for m in model.modality_names:
        taps[m] = nn.Identity()
        taps[m].register_full_backward_hook(
            lambda module, grad_in, grad_out, s=scales[m]: (grad_in[0].clone() * s,)
        )
    a, v = model.modality_names
    total = model(batch).fused
    model.eval()
    pad_visual_out = model({a: batch[a], v: torch.zeros_like(batch[v])}).fused
    pad_audio_out = model({a: torch.zeros_like(batch[a]), v: batch[v]}).fused
    model.train()
    m_a = taps[a](0.5 * (total - pad_audio_out + pad_visual_out))
    m_v = taps[v](0.5 * (total - pad_visual_out + pad_audio_out))
    CE(m_a + m_v, batch["label"]).backward()
    weight_grad = model.fusion.fc_out.weight.grad
    if clip is not None and (weight_grad.max() > clip or weight_grad.min() < -clip):
        nn.utils.clip_grad_norm_(model.parameters(), max_norm=clip)


@pytest.mark.parametrize("clip", [None, 1e-3])
def test_step_is_the_authors_hooked_backward(clip: float | None) -> None:
    model, batch = with_batchnorm(1), tiny_batch(1)
    model.train()
    reference = copy.deepcopy(model)
    rows = AGM(alpha=10.0, grad_clip=clip).backward(
        model, strategy_losses(model, batch), telemetry=True
    )
    scales = {m: rows[m]["k"] for m in model.modality_names}
    assert abs(scales["gray"] - 1.0) > 0.05 and abs(scales["color"] - 1.0) > 0.05
    authors_step(reference, batch, scales, clip)
    for (key, p), q in zip(model.named_parameters(), reference.named_parameters(), strict=True):
        assert (p.grad is None) == (q[1].grad is None), key
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q[1].grad, rtol=1e-4, atol=1e-7, msg=key)
    assert all(p.grad is None for p in model.heads.parameters())  # only L_mm


def test_zeroed_passes_run_on_running_statistics_and_leave_them() -> None:
    model, batch = with_batchnorm(2), tiny_batch(2)
    model.train()
    model(batch)  # non-trivial running statistics
    buffers = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    padded = padded_outputs(model, batch)
    assert model.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in buffers.items())
    model.eval()
    with torch.no_grad():
        only_gray = model({"gray": batch["gray"], "color": torch.zeros_like(batch["color"])})
    torch.testing.assert_close(padded[frozenset({"gray"})], only_gray.fused)


def test_scaling_encoder_gradients_is_equivalent_only_without_zero_input_terms() -> None:
    """Bias-free, BatchNorm-free encoders: encoder m's gradient is exactly k_m dL_mm/dθ_m."""
    batch = tiny_batch(3)
    for build, equivalent in ((bias_free, True), (with_batchnorm, False)):
        model = build(3)
        plain = copy.deepcopy(model)
        step_losses(plain, batch).fused.backward()
        rows = AGM(alpha=2.0, grad_clip=None).backward(
            model, strategy_losses(model, batch), telemetry=True
        )
        for m, params in model.encoder_parameters().items():
            got = torch.cat([p.grad.flatten() for p in params])
            plain_params = plain.encoder_parameters()[m]
            scaled = rows[m]["k"] * torch.cat([p.grad.flatten() for p in plain_params])
            assert torch.allclose(got, scaled, rtol=1e-4, atol=1e-7) == equivalent, m


def test_window_holds_the_last_coefficients_then_optionally_resets() -> None:
    model, batch = tiny_model(4), tiny_batch(4)
    strategy = AGM(alpha=2.0, modulation_ends=0)
    inside = strategy.backward(copy.deepcopy(model), strategy_losses(model, batch, 0), True)
    after = strategy.backward(copy.deepcopy(model), strategy_losses(model, batch, 1), True)
    assert strategy.steps == 2  # S is updated every step, in the window or not
    assert {m: r["k"] for m, r in after.items()} == {m: r["k"] for m, r in inside.items()}
    assert strategy.state_dict()["applied"] == {m: r["k"] for m, r in inside.items()}
    reset = AGM(alpha=2.0, modulation_ends=0, hold_after_window=False)
    reset.backward(copy.deepcopy(model), strategy_losses(model, batch, 0))
    rows = reset.backward(copy.deepcopy(model), strategy_losses(model, batch, 1), True)
    assert all(r["k"] == 1.0 for r in rows.values())


def test_clip_applies_only_when_the_fusion_weight_gradient_leaves_the_box() -> None:
    model = tiny_model(5)
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.01)
    assert not clip_gradients(model, 1.0)
    assert all(torch.all(p.grad == 0.01) for p in model.parameters())
    model.fusion.fc_out.weight.grad[0, 0] = -1.5
    assert clip_gradients(model, 1.0)
    total = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert float(total) == pytest.approx(1.0, rel=1e-4)


def test_running_scores_are_the_mean_over_steps_and_resume_exactly() -> None:
    model, batch = tiny_model(1), tiny_batch(1)
    strategy = AGM(alpha=1.0)
    seen = []
    for _ in range(3):
        losses = strategy_losses(model, batch)
        phi = responses(model.modality_names, losses.outputs.fused, padded_outputs(model, batch))
        seen.append(mono_modal_scores(phi, batch["label"]))
        model.zero_grad()
        strategy.backward(model, losses)
    assert strategy.steps == 3
    for m in model.modality_names:
        assert strategy.running[m] == pytest.approx(sum(s[m] for s in seen) / 3)
    restored = AGM(alpha=1.0)
    restored.load_state_dict(copy.deepcopy(strategy.state_dict()))
    for other in (strategy, restored):
        copy_model = copy.deepcopy(model)
        other.backward(copy_model, strategy_losses(copy_model, batch))
    assert restored.running == strategy.running and restored.steps == strategy.steps == 4
    assert restored.applied == strategy.applied
