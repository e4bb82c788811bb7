"""DWA — dynamic weight average.

Shikun Liu, Edward Johns, Andrew J. Davison, "End-to-End Multi-Task Learning with
Attention", CVPR 2019.

For the K losses [L_mm, L_1, ..., L_k] and the mean training losses L̄_i of past epochs,

    r_i(t-1) = L̄_i(t-1) / L̄_i(t-2),   λ_i(t) = K exp(r_i(t-1) / T) / Σ_j exp(r_j(t-1) / T),

with λ_i = 1 for the first two epochs (no ratio yet); T = 2 as in the paper. As the
authors' code, lorenmt/mtan ``im2im_pred/utils.py`` (``multi_task_trainer``, commit
c36c30ba: ratios of the epoch-mean training losses, ``--temp`` default 2.0). One backward
of Σ_i λ_i L_i. The means come from the engine via :meth:`on_epoch_end` (``train_loss``,
``train_loss_<modality>``) and are kept (last two epochs) in :meth:`state_dict`.
Telemetry: w_mm = λ_mm, w_u = λ_m for encoder m.
"""

from __future__ import annotations

import math
from typing import Any

from mmbench.models.multimodal import MultimodalClassifier
from mmbench.strategies.base import GradientStrategy, StepLosses, Telemetry, one_pass_telemetry


def dwa_weights(previous: list[float], before: list[float], temperature: float) -> list[float]:
    """λ_i = K softmax(r / T)_i with r_i = previous_i / before_i (a zero ``before`` gives 1)."""
    ratios = [p / b if b > 0 else 1.0 for p, b in zip(previous, before, strict=True)]
    top = max(ratios)
    exps = [math.exp((r - top) / temperature) for r in ratios]
    return [len(exps) * e / sum(exps) for e in exps]


class DWA(GradientStrategy):
    """Σ_i λ_i L_i with DWA weights from the last two epochs' mean losses."""

    name = "dwa"

    def __init__(self, temperature: float = 2.0) -> None:
        self.temperature = temperature
        self.means: list[dict[str, float]] = []

    def weights(self, names: list[str]) -> dict[str, float]:
        """λ for "fused" and each modality name (1 each until two epochs are known)."""
        keys = ["fused", *names]
        if len(self.means) < 2:
            return dict.fromkeys(keys, 1.0)
        before, previous = self.means[-2], self.means[-1]
        lam = dwa_weights([previous[k] for k in keys], [before[k] for k in keys], self.temperature)
        return dict(zip(keys, lam, strict=True))

    def backward(
        self, model: MultimodalClassifier, losses: StepLosses, telemetry: bool = False
    ) -> Telemetry:
        lam = self.weights(list(losses.unimodal))
        rows = {}
        if telemetry:
            rows = one_pass_telemetry(
                model, losses, {m: (lam["fused"], lam[m]) for m in losses.unimodal}
            )
        total = lam["fused"] * losses.fused
        for m, loss in losses.unimodal.items():
            total = total + lam[m] * loss
        total.backward()
        return rows

    def on_epoch_end(self, epoch: int, train_metrics: dict[str, float]) -> None:
        means = {"fused": float(train_metrics["train_loss"])}
        for key, value in train_metrics.items():
            if key.startswith("train_loss_"):
                means[key.removeprefix("train_loss_")] = float(value)
        self.means = [*self.means, means][-2:]

    def state_dict(self) -> dict[str, Any]:
        return {"means": [dict(m) for m in self.means]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.means = [dict(m) for m in state["means"]]
