"""Baseline: only the fused loss is back-propagated (g = g_mm); heads stay untrained."""

from __future__ import annotations

from mmbench.models.multimodal import MultimodalClassifier
from mmbench.strategies.base import GradientStrategy, StepLosses, Telemetry, stats_to_floats


class OneJointLoss(GradientStrategy):
    """g = dL_mm/dtheta. The unimodal heads never receive a gradient."""

    name = "one_joint_loss"
    trains_unimodal_heads = False

    def backward(
        self, model: MultimodalClassifier, losses: StepLosses, telemetry: bool = False
    ) -> Telemetry:
        stats = self.measure_conflict(model, losses, 1.0, 0.0) if telemetry else {}
        losses.fused.backward()
        return stats_to_floats(stats)
