"""AGM — adaptive gradient modulation.

Hong Li, Xingyu Li, Pengbo Hu, Yinuo Lei, Chunxiao Li, Yi Zhou, "Boosting Multi-modal Model
Performance with Adaptive Gradient Modulation", ICCV 2023.

Mono-modal responses: for each modality m, one extra forward pass (no gradient) of the
whole model with every other modality's input set to zero; its fused logits r_m measure
what modality m alone contributes. Our reading of the paper, for k >= 2 modalities:

    s_m      = (1/B) Σ_b log softmax(r_m(x_b))[y_b]       (score: higher = stronger)
    ratio_m  = exp(s_m - mean_j s_j)                       (score ratio, > 1 if dominant)
    k_m      = exp(clip(α (mean_j ratio_j - ratio_m), -c, c)),   c = ``max_exponent``

so the dominant modality is slowed (k < 1) and the weaker ones are boosted (k > 1); with
equal scores every k_m = 1. For two modalities ratio_a = exp((s_a - s_v) / 2), the paper's
exponential of the score difference. The paper uses the *sum* over the batch of the scores
and a running mean as the target ratio; we use the batch mean (independent of the batch
size, so α does not depend on it) and the batch's mean ratio, as spec/strategies.md states.
The exponent is clipped to ±c (the authors' code caps the exponent) so k stays finite.

Update: one backward of L_mm + Σ_m L_m, then encoder m's gradient is scaled by k_m (heads
and fusion keep theirs). The extra forwards run in the model's current mode; BatchNorm
layers use batch statistics there without updating their running buffers, so the zeroed
inputs never leak into them (and no tensor the main backward needs changes in place).
Telemetry: w_mm = w_u = k_m, plus ``k`` and ``score``. A step without ``losses.batch``
(direct strategy calls) cannot build the responses and uses k_m = 1.
"""

from __future__ import annotations

import logging
import math

import torch
from torch.nn.modules.batchnorm import _BatchNorm

from mmbench.models.multimodal import MultimodalClassifier
from mmbench.strategies.base import GradientStrategy, StepLosses, Telemetry, one_pass_telemetry

log = logging.getLogger(__name__)


@torch.no_grad()
def mono_modal_scores(
    model: MultimodalClassifier, batch: dict[str, torch.Tensor], labels: torch.Tensor
) -> dict[str, float]:
    """s_m: the mean log-probability of the label from the model with only modality m kept."""
    names = model.modality_names
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    try:
        for norm in norms:  # batch statistics, running buffers untouched (no in-place update
            norm.track_running_stats = False  # of tensors the main backward still needs)
        scores = {}
        for m in names:
            zeroed = {n: batch[n] if n == m else torch.zeros_like(batch[n]) for n in names}
            logits = model(zeroed).fused.float()
            scores[m] = float(torch.log_softmax(logits, 1).gather(1, labels[:, None]).mean())
    finally:
        for norm in norms:
            norm.track_running_stats = True
    return scores


def agm_coefficients(
    scores: dict[str, float], alpha: float, max_exponent: float
) -> dict[str, float]:
    """k_m = exp(clip(α (mean ratio - ratio_m), ±max_exponent)), ratio_m = exp(s_m - mean s)."""
    mean_score = sum(scores.values()) / len(scores)
    ratios = {m: math.exp(min(s - mean_score, max_exponent)) for m, s in scores.items()}
    mean_ratio = sum(ratios.values()) / len(ratios)
    return {
        m: math.exp(max(-max_exponent, min(alpha * (mean_ratio - r), max_exponent)))
        for m, r in ratios.items()
    }


class AGM(GradientStrategy):
    """AGM on every encoder: one backward plus one no-grad forward per modality."""

    name = "agm"

    def __init__(self, alpha: float = 1.0, max_exponent: float = 7.0) -> None:
        self.alpha, self.max_exponent = alpha, max_exponent
        self.warned = False

    def backward(
        self, model: MultimodalClassifier, losses: StepLosses, telemetry: bool = False
    ) -> Telemetry:
        names = model.modality_names
        if losses.batch is None:
            if not self.warned:
                log.warning("agm: the step carries no batch; modulation coefficients set to 1")
                self.warned = True
            scores = {m: 0.0 for m in names}
        else:
            scores = mono_modal_scores(model, losses.batch, losses.labels)
        scales = agm_coefficients(scores, self.alpha, self.max_exponent)
        rows = {}
        if telemetry:
            rows = one_pass_telemetry(
                model,
                losses,
                {m: (k, k) for m, k in scales.items()},
                {m: {"k": scales[m], "score": scores[m]} for m in names},
            )
        (losses.fused + losses.unimodal_sum()).backward()
        with torch.no_grad():
            for name, params in model.encoder_parameters().items():
                for p in params:
                    if p.grad is not None:
                        p.grad.mul_(scales[name])
        return rows
