"""OGM-GE — on-the-fly gradient modulation with generalisation enhancement.

Xiaokang Peng, Yake Wei, Andong Deng, Dong Wang, Di Hu, "Balanced Multimodal Learning via
On-the-fly Gradient Modulation", CVPR 2022.

Per batch, from each modality's own unimodal head (logits f_m):

    s_m = Σ_b softmax(f_m(x_b))[y_b],
    ρ_m = s_m / s_other,   s_other = the other modality's score (k = 2), or the mean score
                           of the other modalities (k > 2, our generalisation),
    k_m = 1 - tanh(α ρ_m) if ρ_m > 1 else 1,

so only the dominant modality is slowed down. Encoder m's gradient g_m of the uniform loss
L_mm + Σ_m L_m (one backward) becomes, per tensor,

    g_m <- k_m g_m + N(0, std(g_m)²)      ("GE": Gaussian noise, std of the unscaled tensor,
                                          + 1e-8 as the official code; ``noise=false``: OGM)

during the epochs modulation_starts <= epoch <= modulation_ends; outside it the update is
plain uniform. The official code modulates only the 4-D (conv) weights of the encoders
(``conv_only=true``); the default modulates every encoder tensor, as the paper's equations.
The noise comes from a generator seeded by ``seed`` and saved in :meth:`state_dict`.
Telemetry: w_mm = w_u = k_m (both gradients are scaled), plus ``k`` and ``rho``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from mmbench.models.multimodal import MultimodalClassifier
from mmbench.strategies.base import GradientStrategy, StepLosses, Telemetry, one_pass_telemetry


def label_scores(logits: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, float]:
    """s_m = Σ_b softmax(logits_m)[b, y_b] per modality (detached floats)."""
    return {
        m: float(torch.softmax(v.detach().float(), dim=1).gather(1, labels[:, None]).sum())
        for m, v in logits.items()
    }


def modulation_coefficients(
    scores: dict[str, float], alpha: float
) -> dict[str, tuple[float, float]]:
    """(k_m, ρ_m) per modality: ρ_m = s_m / mean of the others, k_m = 1 - tanh(α ρ_m) if ρ_m > 1."""
    out = {}
    for m, s in scores.items():
        others = [v for n, v in scores.items() if n != m]
        if not others:
            out[m] = (1.0, 1.0)
            continue
        reference = sum(others) / len(others)
        rho = s / reference if reference > 0 else (math.inf if s > 0 else 1.0)
        out[m] = (1.0 - math.tanh(alpha * rho) if rho > 1 else 1.0, rho)
    return out


class OGMGE(GradientStrategy):
    """OGM-GE on every encoder; one backward pass of the uniform loss per step."""

    name = "ogm_ge"

    def __init__(
        self,
        alpha: float = 0.8,
        modulation_starts: int = 0,
        modulation_ends: int = 50,
        noise: bool = True,
        conv_only: bool = False,
        seed: int = 0,
    ) -> None:
        self.alpha, self.noise, self.conv_only = alpha, noise, conv_only
        self.window = (modulation_starts, modulation_ends)
        self.seed = seed
        self.generator: torch.Generator | None = None

    def noise_generator(self, device: torch.device) -> torch.Generator:
        """The seeded noise generator, created on the gradients' device at first use."""
        if self.generator is None or self.generator.device != device:
            self.generator = torch.Generator(device=device).manual_seed(self.seed)
        return self.generator

    def backward(
        self, model: MultimodalClassifier, losses: StepLosses, telemetry: bool = False
    ) -> Telemetry:
        active = self.window[0] <= losses.epoch <= self.window[1]
        coefficients = modulation_coefficients(
            label_scores(losses.outputs.unimodal, losses.labels), self.alpha
        )
        if not active:
            coefficients = {m: (1.0, rho) for m, (_, rho) in coefficients.items()}
        rows = {}
        if telemetry:
            rows = one_pass_telemetry(
                model,
                losses,
                {m: (k, k) for m, (k, _) in coefficients.items()},
                {m: {"k": k, "rho": rho} for m, (k, rho) in coefficients.items()},
            )
        (losses.fused + losses.unimodal_sum()).backward()
        if active:
            self.modulate(model, {m: k for m, (k, _) in coefficients.items()})
        return rows

    @torch.no_grad()
    def modulate(self, model: MultimodalClassifier, scales: dict[str, float]) -> None:
        """g <- k g (+ N(0, std(g)²) with GE) on each encoder's (conv) tensors."""
        for name, params in model.encoder_parameters().items():
            for p in params:
                if p.grad is None or (self.conv_only and p.grad.dim() != 4):
                    continue
                grad = p.grad
                std = grad.std() if grad.numel() > 1 else torch.zeros((), device=grad.device)
                new = grad * scales[name]
                if self.noise:
                    gen = self.noise_generator(grad.device)
                    draw = torch.randn(grad.shape, generator=gen, device=grad.device)
                    new = new + draw.to(grad.dtype) * (std + 1e-8)
                p.grad = new

    def state_dict(self) -> dict[str, Any]:
        if self.generator is None:
            return {"generator": None}
        return {"generator": self.generator.get_state(), "device": str(self.generator.device)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("generator") is None:
            self.generator = None
            return
        self.generator = torch.Generator(device=state["device"])
        self.generator.set_state(state["generator"].cpu())
