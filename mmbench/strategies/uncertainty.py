"""Uncertainty weighting (homoscedastic task uncertainty).

Alex Kendall, Yarin Gal, Roberto Cipolla, "Multi-Task Learning Using Uncertainty to Weigh
Losses for Scene Geometry and Semantics", CVPR 2018.

With learnable log-variances s_i (one per loss: the fused loss and each unimodal loss),

    L = Σ_i exp(-s_i) L_i + s_i,

one backward pass. No code by the authors is public. LibMTL ``LibMTL/weighting/UW.py``
(commit 43368048) uses half of this, Σ_i ½ exp(-s_i) L_i + ½ s_i, with s_i initialised at
-0.5 (weights ½ e^{0.5} ≈ 0.82): the same optimum s_i* = log L_i, but half the model
gradient; that variant is not offered here. The s_i are parameters owned by the strategy
(:meth:`parameters`, so train.py adds them to the optimiser; the optimiser's weight decay
applies to them too) and saved in :meth:`state_dict`; they start at 0 (weights 1, i.e.
uniform). The number of losses comes from ``modalities`` (the config passes
``${dataset.modalities}``).
Telemetry: w_mm = exp(-s_mm), w_u = exp(-s_m) for encoder m.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from mmbench.models.multimodal import MultimodalClassifier
from mmbench.strategies.base import GradientStrategy, StepLosses, Telemetry, one_pass_telemetry


def modality_names(modalities: Sequence[str | Mapping[str, Any]]) -> list[str]:
    """Names from a list of names or of dataset modality entries ({name: ..., ...})."""
    return [m if isinstance(m, str) else str(m["name"]) for m in modalities]


class Uncertainty(GradientStrategy):
    """L = Σ_i exp(-s_i) L_i + s_i over [L_mm, L_1, ..., L_k]; learnable s (index 0 = fused)."""

    name = "uncertainty"

    def __init__(self, modalities: Sequence[str | Mapping[str, Any]], init: float = 0.0) -> None:
        self.modalities = modality_names(modalities)
        self.log_vars = nn.Parameter(torch.full((1 + len(self.modalities),), float(init)))

    def parameters(self) -> list[nn.Parameter]:
        return [self.log_vars]

    def backward(
        self, model: MultimodalClassifier, losses: StepLosses, telemetry: bool = False
    ) -> Telemetry:
        if list(losses.unimodal) != self.modalities:
            raise ValueError(
                f"uncertainty was built for modalities {self.modalities}, "
                f"the step has {list(losses.unimodal)}"
            )
        s = self.log_vars.to(losses.fused.device)
        values = torch.stack([losses.fused, *losses.unimodal.values()])
        rows = {}
        if telemetry:
            w = torch.exp(-s.detach()).cpu().tolist()
            rows = one_pass_telemetry(
                model, losses, {m: (w[0], w[1 + i]) for i, m in enumerate(self.modalities)}
            )
        (torch.exp(-s) * values + s).sum().backward()
        return rows

    def state_dict(self) -> dict[str, Any]:
        return {"log_vars": self.log_vars.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.log_vars.copy_(state["log_vars"])
