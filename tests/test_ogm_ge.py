"""OGM-GE follows GeWu-Lab/OGM-GE_CVPR2022 main.py train_epoch; ogm_ge_uniform is the variant."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mmbench.models.backbones import DigitConvNetBackbone
from mmbench.models.fusion import FiLMFusion, GatedFusion, SumFusion
from mmbench.models.multimodal import MultimodalClassifier
from mmbench.strategies.ogm_ge import OGMGE, label_scores, modulation_coefficients
from tests.conftest import SPECS, step_losses, tiny_batch, tiny_model

CONF = Path(__file__).resolve().parent.parent / "conf" / "strategy"


def preset(name: str) -> OGMGE:
    root = OmegaConf.create({"seed": 0})
    root.strategy = OmegaConf.load(CONF / f"{name}.yaml")
    return instantiate(root.strategy.method)


def features(seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(5, 16, generator=gen), torch.randn(5, 16, generator=gen)]


def test_concat_scores_are_the_halves_of_fc_out_plus_half_the_bias() -> None:
    model = tiny_model(0)
    z_a, z_v = features()
    w, b = model.fusion.fc_out.weight, model.fusion.fc_out.bias
    out_a, out_v = model.fusion.modality_logits([z_a, z_v])
    torch.testing.assert_close(out_a, z_a @ w[:, :16].T + b / 2)
    torch.testing.assert_close(out_v, z_v @ w[:, 16:].T + b / 2)
    torch.testing.assert_close(out_a + out_v, model.fusion([z_a, z_v]))


def test_sum_scores_are_each_branch_layer_with_its_bias() -> None:
    torch.manual_seed(0)
    fusion = SumFusion([16, 16], 4)
    z_a, z_v = features()
    out_a, out_v = fusion.modality_logits([z_a, z_v])
    torch.testing.assert_close(out_a, fusion.fc[0](z_a))
    torch.testing.assert_close(out_v, fusion.fc[1](z_v))


@pytest.mark.parametrize("fusion_cls", [FiLMFusion, GatedFusion])
def test_film_and_gated_scores_zero_the_other_features(fusion_cls) -> None:
    torch.manual_seed(0)
    fusion = fusion_cls([16, 16], 4)
    z_a, z_v = features()
    out_a, out_v = fusion.modality_logits([z_a, z_v])
    torch.testing.assert_close(out_a, fusion([z_a, torch.zeros_like(z_v)]))
    torch.testing.assert_close(out_v, fusion([torch.zeros_like(z_a), z_v]))


def test_two_modality_coefficients_follow_main_py() -> None:
    alpha = 0.8
    k = modulation_coefficients({"a": 2.0, "v": 3.0}, alpha)  # ratio_v = 1.5 > 1: v slowed
    assert k["v"] == pytest.approx((1 - math.tanh(alpha * 1.5), 1.5))
    assert k["a"] == pytest.approx((1.0, 1 / 1.5))
    k = modulation_coefficients({"a": 3.0, "v": 2.0}, alpha)
    assert k["a"] == pytest.approx((1 - math.tanh(alpha * 1.5), 1.5))
    assert k["v"][0] == 1.0
    tie = modulation_coefficients({"a": 2.0, "v": 2.0}, alpha)  # else-branch: a slowed
    assert tie["a"][0] == pytest.approx(1 - math.tanh(alpha)) and tie["v"][0] == 1.0


def test_presets_are_the_authors_method_and_the_uniform_variant() -> None:
    authors, variant = preset("ogm_ge"), preset("ogm_ge_uniform")
    assert (authors.loss, authors.scores, authors.conv_only) == ("fused", "fusion", True)
    assert not authors.trains_unimodal_heads
    assert (variant.loss, variant.scores, variant.conv_only) == ("uniform", "heads", True)
    assert variant.trains_unimodal_heads
    assert authors.window == variant.window == (0, 50) and authors.alpha == 0.8


def test_fused_loss_with_head_scores_is_refused() -> None:
    with pytest.raises(ValueError, match="scores=heads needs method.loss=uniform"):
        OGMGE(loss="fused", scores="heads")


def hand_fusion_coefficients(model: MultimodalClassifier, batch, alpha: float) -> dict:
    """main.py's k_a, k_v from the fc_out halves, computed here from scratch."""
    with torch.no_grad():
        out = model(batch)
        w, b = model.fusion.fc_out.weight, model.fusion.fc_out.bias
        out_a = out.features["gray"] @ w[:, :16].T + b / 2
        out_v = out.features["color"] @ w[:, 16:].T + b / 2
    y = batch["label"]
    score_a = sum(float(torch.softmax(out_a, 1)[i, y[i]]) for i in range(len(y)))
    score_v = sum(float(torch.softmax(out_v, 1)[i, y[i]]) for i in range(len(y)))
    ratio_v = score_v / score_a
    if ratio_v > 1:
        return {"gray": 1.0, "color": 1 - math.tanh(alpha * ratio_v)}
    return {"gray": 1 - math.tanh(alpha / ratio_v), "color": 1.0}


@pytest.mark.parametrize("noise", [False, True])
def test_authors_step_is_the_fused_gradient_modulated_on_conv_weights(noise: bool) -> None:
    model, batch = tiny_model(3), tiny_batch(3)
    coeff = hand_fusion_coefficients(model, batch, alpha=0.8)
    assert min(coeff.values()) < 1.0
    plain = copy.deepcopy(model)
    step_losses(plain, batch).fused.backward()
    OGMGE(noise=noise, seed=7).backward(model, step_losses(model, batch))
    gen = torch.Generator().manual_seed(7)
    encoder_ids = {}
    for m, params in model.encoder_parameters().items():
        encoder_ids.update({id(p): m for p in params})
    for (key, p), q in zip(model.named_parameters(), plain.parameters(), strict=True):
        if key.startswith("heads."):
            assert p.grad is None, key  # only L_mm is back-propagated
        elif id(p) in encoder_ids and p.dim() == 4:
            expected = q.grad * coeff[encoder_ids[id(p)]]
            if noise:
                draw = torch.randn(q.grad.shape, generator=gen)
                expected = expected + draw * (q.grad.std() + 1e-8)
            torch.testing.assert_close(p.grad, expected, msg=key)
        else:
            torch.testing.assert_close(p.grad, q.grad, msg=key)  # fusion, biases, encoder fc


def test_conv_only_false_scales_every_encoder_tensor_from_head_scores() -> None:
    model, batch = tiny_model(4), tiny_batch(4)
    with torch.no_grad():
        scores = label_scores(model(batch).unimodal, batch["label"])
    coeff = {m: k for m, (k, _) in modulation_coefficients(scores, 0.8).items()}
    plain = copy.deepcopy(model)
    losses = step_losses(plain, batch)
    (losses.fused + losses.unimodal_sum()).backward()
    OGMGE(noise=False, conv_only=False, loss="uniform", scores="heads").backward(
        model, step_losses(model, batch)
    )
    encoder_of = {id(p): m for m, ps in model.encoder_parameters().items() for p in ps}
    for (key, p), q in zip(model.named_parameters(), plain.parameters(), strict=True):
        scale = coeff[encoder_of[id(p)]] if id(p) in encoder_of else 1.0
        torch.testing.assert_close(p.grad, q.grad * scale, msg=key)


def test_outside_the_window_the_step_is_the_plain_fused_gradient() -> None:
    model, batch = tiny_model(5), tiny_batch(5)
    plain = copy.deepcopy(model)
    step_losses(plain, batch).fused.backward()
    losses = step_losses(model, batch)
    losses.epoch = 51
    OGMGE().backward(model, losses)
    for p, q in zip(model.parameters(), plain.parameters(), strict=True):
        assert (p.grad is None) == (q.grad is None)
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad)


@pytest.mark.parametrize("fusion_cls", [SumFusion, FiLMFusion, GatedFusion])
def test_every_fusion_gives_scores_and_finite_steps(fusion_cls) -> None:
    torch.manual_seed(0)
    model = MultimodalClassifier(SPECS, DigitConvNetBackbone(feature_dim=16), fusion_cls, 4)
    rows = OGMGE().backward(model, step_losses(model, tiny_batch(6)), telemetry=True)
    assert set(rows) == {"gray", "color"}
    assert all(0.0 < r["k"] <= 1.0 and r["w_u"] == 0.0 for r in rows.values())
    assert all(torch.isfinite(p.grad).all() for p in model.encoders.parameters())
