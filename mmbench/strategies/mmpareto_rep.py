"""MMPareto at the price of one backward pass: the MMPareto rule on dL/dz_m (ours).

MMPareto (Wei & Hu, ICML 2024; official code GeWu-Lab/MMPareto_ICML2024 ``code/MMPareto.py``,
commit a339db3) takes its decisions on each encoder's parameter gradients g_mm, g_u, which
needs two backward passes (see :mod:`mmbench.strategies.mmpareto`). Here the same rule runs
on the representation gradients a = dL_mm/dz_m, b = dL_m/dz_m (B x D, the MGDA-UB idea of
Sener & Koltun 2018, see :mod:`mmbench.strategies.representation`), per encoder:

  c = cos(flat a, flat b)
  (w_mm, w_u) = (1/2, 1/2) if c > 0 else the min-norm weights of (a, b), endpoints 0.001/0.999
  d = 2 (w_mm a + w_u b)
  r = ||a + b|| / ||d||                 (rescale=encoder: one ratio on the representation)
  v = gamma * r * d if r > 1 else gamma * d      (rescale=none: v = gamma * d)
  grad theta_m = J_m^T v                (one backward through all encoders)

This is :func:`mmbench.strategies.mmpareto.combine` applied to the single tensor z_m, so a
per-tensor and an encoder-wide ratio coincide there; the parameters' per-tensor norms
(the official rule) are not available without the second pass. Without conflict at both
levels the step equals exact MMPareto: gamma (g_mm + g_u) = J^T gamma (a + b).

Adaptive exact mode (``exact_below``): when some encoder's representation cosine is
<= exact_below, the step is exact MMPareto (two parameter-level passes, official per-tensor
rescale) instead; elsewhere the representation step. Telemetry (from the representation
gradients, or from the parameter gradients on exact steps) has ``exact`` = 1 on those steps.
"""

from __future__ import annotations

import torch

from mmbench.models.multimodal import MultimodalClassifier
from mmbench.strategies import mmpareto
from mmbench.strategies.base import EncoderStats, StepLosses, Telemetry, stats_to_floats
from mmbench.strategies.representation import (
    RepresentationStrategy,
    backward_through_encoders,
)

REP_RESCALE_MODES = ("encoder", "none")


class MMParetoRep(RepresentationStrategy):
    """MMPareto decided on each encoder's representation gradients; one backward pass."""

    name = "mmpareto_rep"

    def __init__(
        self,
        gamma: float = 1.5,
        rescale: str = "encoder",
        eps: float = 1e-8,
        exact_below: float | None = None,
    ) -> None:
        if rescale not in REP_RESCALE_MODES:
            raise ValueError(
                f"conf/strategy/mmpareto_rep.yaml: strategy.method.rescale={rescale!r}: use one "
                f"of {list(REP_RESCALE_MODES)} (per-tensor norms do not exist at z_m; "
                "strategy=mmpareto has the official rescale=tensor)"
            )
        if exact_below is not None and not -1.0 <= exact_below <= 1.0:
            raise ValueError(
                f"conf/strategy/mmpareto_rep.yaml: strategy.method.exact_below={exact_below}: "
                "a cosine threshold in [-1, 1], or null for representation steps only"
            )
        self.gamma, self.rescale, self.eps, self.exact_below = gamma, rescale, eps, exact_below
        self.exact = mmpareto.MMPareto(gamma=gamma, rescale="tensor", eps=eps)

    def combine_representation(
        self, a: torch.Tensor, b: torch.Tensor, encoder: str = ""
    ) -> tuple[torch.Tensor, EncoderStats]:
        out, stats = mmpareto.combine([a], [b], self.gamma, self.rescale, self.eps)
        return out[0], stats

    def backward(
        self, model: MultimodalClassifier, losses: StepLosses, telemetry: bool = False
    ) -> Telemetry:
        rep, updates, stats = self.decide(model, losses)
        if self.exact_below is not None and any(s.cos <= self.exact_below for s in stats.values()):
            rows = self.exact.backward(model, losses, telemetry)
            return {m: {**row, "exact": 1.0} for m, row in rows.items()}
        backward_through_encoders(model, rep, updates)
        if not telemetry:
            return {}
        return {m: {**row, "exact": 0.0} for m, row in stats_to_floats(stats).items()}
