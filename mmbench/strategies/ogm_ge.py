"""OGM-GE — on-the-fly gradient modulation with generalisation enhancement.

Xiaokang Peng, Yake Wei, Andong Deng, Dong Wang, Di Hu, "Balanced Multimodal Learning via
On-the-fly Gradient Modulation", CVPR 2022. Checked against GeWu-Lab/OGM-GE_CVPR2022
(commit 343dc1d), main.py ``train_epoch`` and models/fusion_modules.py.

Per batch, from per-modality logits f_m (``scores``):

    s_m = Σ_b softmax(f_m(x_b))[y_b],
    k = 2:  ρ_v = s_v / s_a, ρ_a = 1 / ρ_v;  if ρ_v > 1: k_v = 1 - tanh(α ρ_v), k_a = 1
                                             else:      k_a = 1 - tanh(α ρ_a), k_v = 1
            (as main.py: a tie slows the first modality; its relu(ρ) is ρ, ρ > 0)
    k > 2:  ρ_m = s_m / mean_{j != m} s_j,  k_m = 1 - tanh(α ρ_m) if ρ_m > 1 else 1 (ours).

``scores=fusion`` (the authors): f_m is read off the fusion head, ``modality_logits`` of
mmbench/models/fusion.py — concat: z_m W[:, block_m]^T + b / k (main.py's halves of
fc_out.weight plus fc_out.bias / 2); sum: modality m's own layer W_m z_m + b_m (main.py's
fc_x / fc_y); FiLM and gated: the head with the other features zeroed (main.py's slicing
fails on those two, so there is no authors' rule to follow). ``scores=heads``: the
separate unimodal heads.

Then, during modulation_starts <= epoch <= modulation_ends (0-based, inclusive, as
main.py), every modulated tensor g of encoder m becomes

    g <- k_m g + N(0, (std(g) + 1e-8)²)   (``noise=false``: OGM, g <- k_m g),

std of the unscaled tensor, noise on every modality's tensors (k_m = 1 included), as
main.py. ``conv_only``: only 4-D (conv) weights, as main.py; else every encoder tensor.
``loss=fused`` (the authors) back-propagates L_mm only, so the unimodal heads never train
(reported untrained, as one_joint_loss); ``loss=uniform`` back-propagates L_mm + Σ_m L_m.
conf/strategy/ogm_ge.yaml is the authors' method; ogm_ge_uniform.yaml the uniform-loss
variant (unimodal-head scores, conv weights modulated as main.py).
The noise comes from a generator seeded by ``seed`` and saved in :meth:`state_dict`.
Telemetry: w_mm = k_m, w_u = k_m (uniform) or 0 (fused), plus ``k`` and ``rho``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from mmbench.models.multimodal import MultimodalClassifier
from mmbench.strategies.base import GradientStrategy, StepLosses, Telemetry, one_pass_telemetry

LOSSES = ("fused", "uniform")
SCORES = ("fusion", "heads")


def label_scores(logits: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, float]:
    """s_m = Σ_b softmax(logits_m)[b, y_b] per modality (detached floats)."""
    return {
        m: float(torch.softmax(v.detach().float(), dim=1).gather(1, labels[:, None]).sum())
        for m, v in logits.items()
    }


def score_ratio(score: float, reference: float) -> float:
    """score / reference, with x / 0 = inf for x > 0 and 0 / 0 = 1."""
    if reference > 0:
        return score / reference
    return math.inf if score > 0 else 1.0


def modulation_coefficients(
    scores: dict[str, float], alpha: float
) -> dict[str, tuple[float, float]]:
    """(k_m, ρ_m) per modality, main.py's two-modality rule or its k > 2 generalisation."""
    names = list(scores)
    if len(names) == 1:
        return {names[0]: (1.0, 1.0)}
    if len(names) == 2:
        a, v = names
        rho_v = score_ratio(scores[v], scores[a])
        rho_a = 1.0 / rho_v if rho_v > 0 else math.inf
        if rho_v > 1:
            return {a: (1.0, rho_a), v: (1.0 - math.tanh(alpha * rho_v), rho_v)}
        return {a: (1.0 - math.tanh(alpha * rho_a), rho_a), v: (1.0, rho_v)}
    out = {}
    for m, s in scores.items():
        others = [x for n, x in scores.items() if n != m]
        rho = score_ratio(s, sum(others) / len(others))
        out[m] = (1.0 - math.tanh(alpha * rho) if rho > 1 else 1.0, rho)
    return out


def fusion_logits(model: MultimodalClassifier, losses: StepLosses) -> dict[str, torch.Tensor]:
    """Per-modality logits read off the fusion head (detached features)."""
    names = model.modality_names
    with torch.no_grad():
        logits = model.fusion.modality_logits([losses.outputs.features[m] for m in names])
    return dict(zip(names, logits, strict=True))


class OGMGE(GradientStrategy):
    """OGM-GE on every encoder; one backward pass per step."""

    name = "ogm_ge"

    def __init__(
        self,
        alpha: float = 0.8,
        modulation_starts: int = 0,
        modulation_ends: int = 50,
        noise: bool = True,
        conv_only: bool = True,
        loss: str = "fused",
        scores: str = "fusion",
        seed: int = 0,
    ) -> None:
        if loss not in LOSSES or scores not in SCORES:
            raise ValueError(
                f"conf/strategy/ogm_ge*.yaml: method.loss={loss!r} must be one of {LOSSES} and "
                f"method.scores={scores!r} one of {SCORES}"
            )
        if loss == "fused" and scores == "heads":
            raise ValueError(
                "conf/strategy/ogm_ge*.yaml: method.scores=heads needs method.loss=uniform (with "
                "loss=fused the unimodal heads never train); use scores=fusion"
            )
        self.alpha, self.noise, self.conv_only = alpha, noise, conv_only
        self.loss, self.scores = loss, scores
        self.trains_unimodal_heads = loss == "uniform"
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
        logits = (
            fusion_logits(model, losses) if self.scores == "fusion" else losses.outputs.unimodal
        )
        coefficients = modulation_coefficients(label_scores(logits, losses.labels), self.alpha)
        if not active:
            coefficients = {m: (1.0, rho) for m, (_, rho) in coefficients.items()}
        uniform = self.loss == "uniform"
        rows = {}
        if telemetry:
            rows = one_pass_telemetry(
                model,
                losses,
                {m: (k, k if uniform else 0.0) for m, (k, _) in coefficients.items()},
                {m: {"k": k, "rho": rho} for m, (k, rho) in coefficients.items()},
            )
        (losses.fused + losses.unimodal_sum() if uniform else losses.fused).backward()
        if active:
            self.modulate(model, {m: k for m, (k, _) in coefficients.items()})
        return rows

    @torch.no_grad()
    def modulate(self, model: MultimodalClassifier, scales: dict[str, float]) -> None:
        """g <- k g (+ N(0, (std(g) + 1e-8)²) with GE) on each encoder's (conv) tensors."""
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
