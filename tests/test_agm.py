"""AGM's coefficients follow the authors' running-target rule and resume exactly."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from mmbench.strategies.agm import AGM, agm_coefficients, mono_modal_scores, score_ratios
from tests.conftest import step_losses, tiny_batch, tiny_model


def test_two_modality_ratio_is_the_exponential_score_gap() -> None:
    ratios = score_ratios({"a": 0.4, "v": 1.5}, max_exponent=7.0)
    assert ratios["a"] == pytest.approx(math.exp(1.5 - 0.4))  # a's loss is lower: dominant
    assert ratios["v"] == pytest.approx(math.exp(0.4 - 1.5))


def test_steady_imbalance_is_left_alone_and_deviations_are_modulated() -> None:
    steady = {"a": 0.4, "v": 1.5}
    k, _ = agm_coefficients(steady, running=steady, alpha=1.0, max_exponent=7.0)
    assert k == pytest.approx({"a": 1.0, "v": 1.0})
    more_dominant = {"a": 0.2, "v": 1.7}  # a pulls further ahead than it usually does
    k, ratios = agm_coefficients(more_dominant, running=steady, alpha=1.0, max_exponent=7.0)
    assert k["a"] < 1.0 < k["v"]
    target_a = math.exp(1.5 - 0.4)
    assert k["a"] == pytest.approx(math.exp(target_a - ratios["a"]))


def test_first_step_targets_balance_and_the_exponent_is_clipped() -> None:
    zero = {"a": 0.0, "v": 0.0}
    k, _ = agm_coefficients({"a": 0.0, "v": 0.0}, running=zero, alpha=1.0, max_exponent=7.0)
    assert k == pytest.approx({"a": 1.0, "v": 1.0})
    k, _ = agm_coefficients({"a": 0.0, "v": 20.0}, running=zero, alpha=5.0, max_exponent=7.0)
    assert k["a"] == pytest.approx(math.exp(-7.0))  # ratio_a = e^7 (clipped), target 1
    assert k["v"] == pytest.approx(math.exp(5.0 * (1 - math.exp(-7.0))))


def test_scores_are_mean_negative_log_likelihoods_of_the_kept_modality() -> None:
    model, batch = tiny_model(0), tiny_batch(0)
    model.train()
    scores = mono_modal_scores(model, batch, batch["label"])
    with torch.no_grad():
        kept = {"gray": batch["gray"], "color": torch.zeros_like(batch["color"])}
        expected = torch.nn.functional.cross_entropy(model(kept).fused, batch["label"])
    assert scores["gray"] == pytest.approx(float(expected), rel=1e-5)


def test_running_scores_are_the_mean_over_steps_and_resume_exactly() -> None:
    model, batch = tiny_model(1), tiny_batch(1)
    strategy = AGM(alpha=1.0)
    seen = []
    for _ in range(3):
        losses = step_losses(model, batch)
        losses.batch = batch
        seen.append(mono_modal_scores(model, batch, batch["label"]))
        model.zero_grad()
        strategy.backward(model, losses)
    assert strategy.steps == 3
    for m in model.modality_names:
        assert strategy.running[m] == pytest.approx(sum(s[m] for s in seen) / 3)
    restored = AGM(alpha=1.0)
    restored.load_state_dict(copy.deepcopy(strategy.state_dict()))
    for other in (strategy, restored):
        copy_model = copy.deepcopy(model)
        losses = step_losses(copy_model, batch)
        losses.batch = batch
        other.backward(copy_model, losses)
    assert restored.running == strategy.running and restored.steps == strategy.steps == 4
