"""AGM — adaptive gradient modulation.

Hong Li, Xingyu Li, Pengbo Hu, Yinuo Lei, Chunxiao Li, Yi Zhou, "Boosting Multi-modal Model
Performance with Adaptive Gradient Modulation", ICCV 2023.

Mono-modal responses: for each modality m, one extra forward pass (no gradient) of the
whole model with every other modality's input set to zero; its fused logits r_m measure
what modality m alone contributes. As the authors' training loop (checked against the
public AGM_ICCV2023 code), for k >= 2 modalities:

    s_m       = (1/B) Σ_b -log max(softmax(r_m(x_b))[y_b], 1e-8)   (score: lower = stronger)
    ratio_m   = exp(2 (mean_j s_j - s_m))      (> 1 when m dominates; exponent clipped to ±c)
    S_m       = the running mean of s_m over every training step so far
    target_m  = exp(2 (mean_j S_j - S_m))                          (the usual ratio)
    k_m       = exp(clip(α (target_m - ratio_m), -c, c)),  c = ``max_exponent``

so a modality that dominates more than it usually does is slowed (k < 1) and one that
falls behind is boosted (k > 1); a steady imbalance gives k = 1. For two modalities
ratio_a = exp(s_v - s_a). S starts at 0 (target 1 on the first step) and is updated
after the step's coefficients, as in the authors' loop; it is saved in
:meth:`state_dict`, so a resumed run is exact. The clip is ours (the authors' code has
none; it bounds k should the scores jump).

Update: one backward of L_mm + Σ_m L_m, then encoder m's gradient is scaled by k_m (heads
and fusion keep theirs); the authors scale modality m's path in their model's forward
instead and clip the gradient norm of their MOSEI model, neither of which is reproduced.
The extra forwards run in the model's current mode; BatchNorm layers use batch
statistics there without updating their running buffers, so the zeroed inputs never leak
into them (and no tensor the main backward needs changes in place).
Telemetry: w_mm = w_u = k_m, plus ``k``, ``score`` (s_m) and ``ratio``.
A step without ``losses.batch`` (direct strategy calls) cannot build the responses and
uses k_m = 1.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch.nn.modules.batchnorm import _BatchNorm

from mmbench.models.multimodal import MultimodalClassifier
from mmbench.strategies.base import GradientStrategy, StepLosses, Telemetry, one_pass_telemetry

log = logging.getLogger(__name__)


PROBABILITY_FLOOR = 1e-8  # the authors' floor on the label probability


@torch.no_grad()
def mono_modal_scores(
    model: MultimodalClassifier, batch: dict[str, torch.Tensor], labels: torch.Tensor
) -> dict[str, float]:
    """s_m: the mean -log p(label) of the model with only modality m kept (lower = stronger)."""
    names = model.modality_names
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    try:
        for norm in norms:  # batch statistics, running buffers untouched (no in-place update
            norm.track_running_stats = False  # of tensors the main backward still needs)
        scores = {}
        for m in names:
            zeroed = {n: batch[n] if n == m else torch.zeros_like(batch[n]) for n in names}
            probabilities = torch.softmax(model(zeroed).fused.float(), 1)
            label_p = probabilities.gather(1, labels[:, None]).clamp_min(PROBABILITY_FLOOR)
            scores[m] = float(-label_p.log().mean())
    finally:
        for norm in norms:
            norm.track_running_stats = True
    return scores


def score_ratios(scores: dict[str, float], max_exponent: float) -> dict[str, float]:
    """ratio_m = exp(2 (mean_j s_j - s_m)), the exponent clipped to ±max_exponent."""
    mean = sum(scores.values()) / len(scores)
    return {
        m: math.exp(max(-max_exponent, min(2 * (mean - s), max_exponent)))
        for m, s in scores.items()
    }


def agm_coefficients(
    scores: dict[str, float],
    running: dict[str, float],
    alpha: float,
    max_exponent: float,
) -> tuple[dict[str, float], dict[str, float]]:
    """(k_m, ratio_m): k_m = exp(clip(α (target_m - ratio_m))), targets from the running S."""
    ratios = score_ratios(scores, max_exponent)
    targets = score_ratios(running, max_exponent)
    coefficients = {
        m: math.exp(max(-max_exponent, min(alpha * (targets[m] - r), max_exponent)))
        for m, r in ratios.items()
    }
    return coefficients, ratios


class AGM(GradientStrategy):
    """AGM on every encoder: one backward plus one no-grad forward per modality."""

    name = "agm"

    def __init__(self, alpha: float = 1.0, max_exponent: float = 7.0) -> None:
        self.alpha, self.max_exponent = alpha, max_exponent
        self.running: dict[str, float] = {}  # S_m, the running mean score
        self.steps = 0
        self.warned = False

    def backward(
        self, model: MultimodalClassifier, losses: StepLosses, telemetry: bool = False
    ) -> Telemetry:
        names = model.modality_names
        if losses.batch is None:
            if not self.warned:
                log.warning("agm: the step carries no batch; modulation coefficients set to 1")
                self.warned = True
            scales, scores, ratios = dict.fromkeys(names, 1.0), {}, {}
        else:
            scores = mono_modal_scores(model, losses.batch, losses.labels)
            running = {m: self.running.get(m, 0.0) for m in names}
            scales, ratios = agm_coefficients(scores, running, self.alpha, self.max_exponent)
            self.steps += 1
            self.running = {m: running[m] + (scores[m] - running[m]) / self.steps for m in names}
        rows = {}
        if telemetry:
            extra = {
                m: {"k": scales[m], "score": scores.get(m, 0.0), "ratio": ratios.get(m, 1.0)}
                for m in names
            }
            rows = one_pass_telemetry(model, losses, {m: (k, k) for m, k in scales.items()}, extra)
        (losses.fused + losses.unimodal_sum()).backward()
        with torch.no_grad():
            for name, params in model.encoder_parameters().items():
                for p in params:
                    if p.grad is not None:
                        p.grad.mul_(scales[name])
        return rows

    def state_dict(self) -> dict[str, Any]:
        return {"running": dict(self.running), "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.running, self.steps = dict(state["running"]), int(state["steps"])
