"""AGM — adaptive gradient modulation, as the authors' CREMA-D training loop.

Hong Li, Xingyu Li, Pengbo Hu, Yinuo Lei, Chunxiao Li, Yi Zhou, "Boosting Multi-modal Model
Performance with Adaptive Gradient Modulation", ICCV 2023. Checked against Lingy12/AGM_ICCV2023
(commit a24f2ce): run/CREMAD_main.py ``train``, model/CREMAD_net.py ``GradMod``, utils/config.py;
the three-modality rule against model/URFunny_net.py and run/URFunny_main.py.

Responses. f(T) = the fused logits with every input outside T zeroed (f(N) = the step's
output, train mode; the others one forward each in eval mode, running BatchNorm statistics,
with gradients, as GradMod.forward). Modality m's response is its Shapley value with f(∅) = 0,

    φ_m = Σ_{S ⊆ N \\ {m}} |S|! (k - |S| - 1)! / k! · (f(S ∪ {m}) - f(S)),

so Σ_m φ_m = f(N): k = 2 gives CREMAD_net's 0.5 (total - pad_self + pad_other), k = 3
URFunny_net's formula (2^k - 2 extra forwards; the authors' unused all-zero pass is skipped).

Coefficients, per step (CREMAD_main.py; the factor k / (k - 1) is 2 there, 3/2 in URFunny):

    s_m      = (1/B) Σ_b -log max(softmax(φ_m(x_b))[y_b], 1e-8)     (lower = stronger)
    ratio_m  = exp(k / (k - 1) (mean_j s_j - s_m))   (k = 2: exp(s_other - s_m))
    target_m = the same with S_m, the running mean of s_m over all steps before this one
    k_m      = exp(α min(target_m - ratio_m, gap_cap))                (gap_cap = 10)

S starts at 0 and is updated after the coefficients, every step. Inside the window
modulation_starts <= epoch <= modulation_ends (ours 0-based; the authors' epochs are 1-based
and their default 0..20 is our 0..19) the step applies the new k; outside it applies the last
applied k (initially 1), as the authors' backward hooks keep their last scale
(``hold_after_window=false``: k = 1 outside).

Update: only L_mm is back-propagated (unimodal heads untrained). GradMod's hooks scale the
gradient reaching φ_m by k_m, so with g = dL_mm/df(N) every parameter gets the gradient of

    Σ_T c_T <g, f(T)>,   Σ_T c_T f(T) = Σ_m k_m φ_m,

one backward. That scales encoder m's gradient of L_mm by k_m only when the zeroed passes
compute the same features as the main one and a zeroed input yields parameter-free features
(no BatchNorm/dropout, no biases); otherwise the eval-mode passes add their own terms, and
fusion parameters are modulated too. Then, as CREMAD_main.py, if an element of the fusion's
output-layer weight gradient (fc_out; sum fusion: its per-modality layers) exceeds
``grad_clip`` in absolute value, all gradients are clipped to total norm ``grad_clip``
(1.0 in CREMAD_main.py; 5.0 in URFunny_main.py; ``null``: never).
S, the step count and the applied k are saved in :meth:`state_dict`, so resume is exact.
Telemetry: w_mm = k_m, w_u = 0, plus ``k``, ``score`` (s_m) and ``ratio``.
A step without ``losses.batch`` cannot build the responses and back-propagates L_mm alone.
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import Any

import torch
from torch import nn

from mmbench.models.multimodal import MultimodalClassifier
from mmbench.strategies.base import GradientStrategy, StepLosses, Telemetry, one_pass_telemetry

log = logging.getLogger(__name__)

PROBABILITY_FLOOR = 1e-8  # CREMAD_main.py's floor on the label probability

Coalition = frozenset[str]


def shapley_coefficients(names: list[str], weights: dict[str, float]) -> dict[Coalition, float]:
    """c_T with Σ_T c_T f(T) = Σ_m weights_m φ_m, over non-empty coalitions T (f(∅) = 0)."""
    k = len(names)
    coefficients: dict[Coalition, float] = {}
    for m in names:
        others = [n for n in names if n != m]
        for size in range(k):
            share = math.factorial(size) * math.factorial(k - size - 1) / math.factorial(k)
            for subset in itertools.combinations(others, size):
                with_m = frozenset((*subset, m))
                coefficients[with_m] = coefficients.get(with_m, 0.0) + weights[m] * share
                if subset:
                    without = frozenset(subset)
                    coefficients[without] = coefficients.get(without, 0.0) - weights[m] * share
    return coefficients


def padded_outputs(
    model: MultimodalClassifier, batch: dict[str, torch.Tensor]
) -> dict[Coalition, torch.Tensor]:
    """f(T) for every non-empty proper coalition T: eval mode, inputs outside T zeroed."""
    names = model.modality_names
    was_training = model.training
    model.eval()
    try:
        outputs = {}
        for size in range(1, len(names)):
            for kept in itertools.combinations(names, size):
                inputs = {n: batch[n] if n in kept else torch.zeros_like(batch[n]) for n in names}
                outputs[frozenset(kept)] = model(inputs).fused.float()
    finally:
        model.train(was_training)
    return outputs


def responses(
    names: list[str], total: torch.Tensor, padded: dict[Coalition, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """φ_m for each modality (detached), from f(N) = ``total`` and the padded outputs."""
    everything = frozenset(names)
    out = {}
    for m in names:
        coefficients = shapley_coefficients(names, {n: float(n == m) for n in names})
        terms = [
            c * (total if t == everything else padded[t]).detach().float()
            for t, c in coefficients.items()
        ]
        out[m] = torch.stack(terms).sum(0)
    return out


def mono_modal_scores(logits: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, float]:
    """s_m = mean_b -log max(softmax(φ_m)[b, y_b], 1e-8) (lower = stronger)."""
    scores = {}
    for m, v in logits.items():
        label_p = torch.softmax(v.float(), 1).gather(1, labels[:, None])
        scores[m] = float(-label_p.clamp_min(PROBABILITY_FLOOR).log().mean())
    return scores


def score_ratios(scores: dict[str, float]) -> dict[str, float]:
    """ratio_m = exp(k / (k - 1) (mean_j s_j - s_m)); 1 for a single modality."""
    k = len(scores)
    factor = k / (k - 1) if k > 1 else 0.0
    mean = sum(scores.values()) / k
    return {m: math.exp(factor * (mean - s)) for m, s in scores.items()}


def agm_coefficients(
    scores: dict[str, float], running: dict[str, float], alpha: float, gap_cap: float
) -> tuple[dict[str, float], dict[str, float]]:
    """(k_m, ratio_m): k_m = exp(α min(target_m - ratio_m, gap_cap)), targets from running S."""
    ratios = score_ratios(scores)
    targets = score_ratios(running)
    coefficients = {m: math.exp(alpha * min(targets[m] - r, gap_cap)) for m, r in ratios.items()}
    return coefficients, ratios


def output_layer_weights(fusion: nn.Module) -> list[nn.Parameter]:
    """The fusion's last linear weights: fc_out (concat, FiLM, gated) or each fc (sum)."""
    if isinstance(getattr(fusion, "fc_out", None), nn.Linear):
        return [fusion.fc_out.weight]
    return [layer.weight for layer in fusion.fc]


def clip_gradients(model: MultimodalClassifier, limit: float) -> bool:
    """If |grad| > limit anywhere in the fusion's output weights, clip all to norm ``limit``."""
    grads = [w.grad for w in output_layer_weights(model.fusion) if w.grad is not None]
    if not grads or max(float(g.abs().max()) for g in grads) <= limit:
        return False
    nn.utils.clip_grad_norm_(model.parameters(), max_norm=limit)
    return True


class AGM(GradientStrategy):
    """AGM: one backward of L_mm through the main and 2^k - 2 zeroed-input forwards."""

    name = "agm"
    trains_unimodal_heads = False

    def __init__(
        self,
        alpha: float = 1.0,
        gap_cap: float = 10.0,
        modulation_starts: int = 0,
        modulation_ends: int = 19,
        hold_after_window: bool = True,
        grad_clip: float | None = 1.0,
    ) -> None:
        if grad_clip is not None and not grad_clip > 0:
            raise ValueError(
                f"conf/strategy/agm.yaml: method.grad_clip={grad_clip} must be > 0 or null"
            )
        self.alpha, self.gap_cap = alpha, gap_cap
        self.window = (modulation_starts, modulation_ends)
        self.hold_after_window, self.grad_clip = hold_after_window, grad_clip
        self.running: dict[str, float] = {}  # S_m, the running mean score
        self.steps = 0
        self.applied: dict[str, float] = {}  # the k of the last modulated step
        self.warned = False

    def step_coefficients(
        self, names: list[str], scores: dict[str, float], epoch: int
    ) -> tuple[dict[str, float], dict[str, float]]:
        """(applied k_m, ratio_m) of this step; updates S, the step count and the held k."""
        running = {m: self.running.get(m, 0.0) for m in names}
        fresh, ratios = agm_coefficients(scores, running, self.alpha, self.gap_cap)
        self.steps += 1
        self.running = {m: running[m] + (scores[m] - running[m]) / self.steps for m in names}
        if self.window[0] <= epoch <= self.window[1]:
            self.applied = fresh
            return fresh, ratios
        held = self.applied if self.hold_after_window else {}
        return {m: held.get(m, 1.0) for m in names}, ratios

    def backward(
        self, model: MultimodalClassifier, losses: StepLosses, telemetry: bool = False
    ) -> Telemetry:
        names = model.modality_names
        if losses.batch is None:
            if not self.warned:
                log.warning("agm: the step carries no batch; modulation coefficients set to 1")
                self.warned = True
            scales, scores, ratios, padded = dict.fromkeys(names, 1.0), {}, {}, {}
        else:
            padded = padded_outputs(model, losses.batch)
            phi = responses(names, losses.outputs.fused, padded)
            scores = mono_modal_scores(phi, losses.labels)
            scales, ratios = self.step_coefficients(names, scores, losses.epoch)
        rows = {}
        if telemetry:
            extra = {
                m: {"k": scales[m], "score": scores.get(m, 0.0), "ratio": ratios.get(m, 1.0)}
                for m in names
            }
            weights = {m: (k, 0.0) for m, k in scales.items()}
            rows = one_pass_telemetry(model, losses, weights, extra)
        self.modulated_backward(model, losses, scales, padded)
        if self.grad_clip is not None:
            clip_gradients(model, self.grad_clip)
        return rows

    @staticmethod
    def modulated_backward(
        model: MultimodalClassifier,
        losses: StepLosses,
        scales: dict[str, float],
        padded: dict[Coalition, torch.Tensor],
    ) -> None:
        """Back-propagate Σ_T c_T <g, f(T)> (c from k_m φ_m, g = dL_mm / df(N))."""
        names = model.modality_names
        coefficients = shapley_coefficients(names, scales)
        extra = [(c, padded[t]) for t, c in coefficients.items() if t in padded and c != 0.0]
        if not extra:
            (coefficients.get(frozenset(names), 1.0) * losses.fused).backward()
            return
        (g,) = torch.autograd.grad(losses.fused, losses.outputs.fused, retain_graph=True)
        g = g.detach().float()
        surrogate = coefficients[frozenset(names)] * losses.fused
        for c, output in extra:
            surrogate = surrogate + c * (g * output).sum()
        surrogate.backward()

    def state_dict(self) -> dict[str, Any]:
        return {"running": dict(self.running), "steps": self.steps, "applied": dict(self.applied)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.running, self.steps = dict(state["running"]), int(state["steps"])
        self.applied = dict(state.get("applied", {}))
