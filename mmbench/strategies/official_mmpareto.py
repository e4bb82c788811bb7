"""MMPareto as the official release computes it: four backward passes, cloned ``.grad``.

A reference, not a strategy to train with: it exists to check that ``MMPareto`` (two
passes) gives the same update, and to price the official procedure in the step-cost
benchmark. Passes: L_mm, then each L_m alone, then L_mm + sum_m L_m, zeroing ``.grad``
in between; each encoder tensor is then rewritten from the recorded gradients, with the
final pass's ``.grad`` (g_mm + g_u for that encoder) as the magnitude reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmbench.models.multimodal import MultimodalClassifier
from mmbench.strategies.base import GradientStrategy, StepLosses, Telemetry
from mmbench.strategies.mgda import min_norm_weight


class OfficialFourPassMMPareto(GradientStrategy):
    """The official k + 2 = 4 backward passes (two modalities) and per-name grad loops."""

    name = "official_4pass"

    def __init__(self, gamma: float = 1.5) -> None:
        self.gamma = gamma

    def backward(
        self, model: MultimodalClassifier, losses: StepLosses, telemetry: bool = False
    ) -> Telemetry:
        encoders = model.encoder_parameters()
        model.zero_grad(set_to_none=True)
        losses.fused.backward(retain_graph=True)
        recorded_mm = {n: [p.grad.clone() for p in ps] for n, ps in encoders.items()}
        recorded_u = {}
        for name, loss in losses.unimodal.items():
            model.zero_grad(set_to_none=True)
            loss.backward(retain_graph=True)
            recorded_u[name] = [p.grad.clone() for p in encoders[name]]
        model.zero_grad(set_to_none=True)
        (losses.fused + losses.unimodal_sum()).backward()
        report = {}
        for name, params in encoders.items():
            x1 = torch.cat([g.flatten() for g in recorded_mm[name]])
            x2 = torch.cat([g.flatten() for g in recorded_u[name]])
            cos = F.cosine_similarity(x1, x2, dim=0)
            if cos > 0:
                w_mm, w_u = 0.5, 0.5
            else:
                w_mm = float(min_norm_weight(x1 @ x1, x1 @ x2, x2 @ x2))
                w_u = 1 - w_mm
            for p, g_mm, g_u in zip(params, recorded_mm[name], recorded_u[name], strict=True):
                three_norm = torch.norm(p.grad.clone())
                new_grad = 2 * w_mm * g_mm + 2 * w_u * g_u
                ratio = three_norm / torch.norm(new_grad)
                p.grad = self.gamma * ratio * new_grad if ratio > 1 else self.gamma * new_grad
            report[name] = {"cos": float(cos), "w_mm": w_mm, "w_u": w_u}
        return report if telemetry else {}
