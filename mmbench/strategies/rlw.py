"""RLW — random loss weighting.

Baijiong Lin, Feiyang Ye, Yu Zhang, Ivor W. Tsang, "Reasonable Effectiveness of Random
Weighting: A Litmus Test for Multi-Task Learning", TMLR 2022.

Each step draws λ = softmax(z), z ~ N(0, I_K) over the K losses [L_mm, L_1, ..., L_k]
(the paper's normal-softmax variant), and back-propagates Σ_i λ_i L_i once, as the
authors' implementation in LibMTL ``LibMTL/weighting/RLW.py`` (commit 43368048:
``F.softmax(torch.randn(task_num))`` per step). z comes from
a CPU generator seeded by ``seed`` and saved in :meth:`state_dict` (exact resume).
Telemetry: w_mm = λ_mm, w_u = λ_m for encoder m.
"""

from __future__ import annotations

from typing import Any

import torch

from mmbench.models.multimodal import MultimodalClassifier
from mmbench.strategies.base import GradientStrategy, StepLosses, Telemetry, one_pass_telemetry


class RLW(GradientStrategy):
    """Σ_i λ_i L_i with λ = softmax(N(0, I)) drawn every step."""

    name = "rlw"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    def backward(
        self, model: MultimodalClassifier, losses: StepLosses, telemetry: bool = False
    ) -> Telemetry:
        names = list(losses.unimodal)
        lam = torch.softmax(torch.randn(1 + len(names), generator=self.generator), dim=0)
        rows = {}
        if telemetry:
            w = lam.tolist()
            rows = one_pass_telemetry(
                model, losses, {m: (w[0], w[1 + i]) for i, m in enumerate(names)}
            )
        values = torch.stack([losses.fused, *losses.unimodal.values()])
        (lam.to(device=values.device, dtype=values.dtype) * values).sum().backward()
        return rows

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"].cpu())
