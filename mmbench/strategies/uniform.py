"""Baseline: the uniform sum L = w_mm L_mm + w_u sum_m L_m (weights 1 by default)."""

from __future__ import annotations

from mmbench.models.multimodal import MultimodalClassifier
from mmbench.strategies.base import GradientStrategy, StepLosses, Telemetry, stats_to_floats


class Uniform(GradientStrategy):
    """Encoder m gets w_mm g_mm + w_u g_m; every head its own loss's gradient. One backward.

    Telemetry steps measure the two gradients with extra passes; the update itself is
    always the single backward of the summed loss, so telemetry never changes training.
    """

    name = "uniform"

    def __init__(self, w_mm: float = 1.0, w_u: float = 1.0) -> None:
        self.w_mm, self.w_u = w_mm, w_u

    def backward(
        self, model: MultimodalClassifier, losses: StepLosses, telemetry: bool = False
    ) -> Telemetry:
        stats = self.measure_conflict(model, losses, self.w_mm, self.w_u) if telemetry else {}
        (self.w_mm * losses.fused + self.w_u * losses.unimodal_sum()).backward()
        return stats_to_floats(stats)
