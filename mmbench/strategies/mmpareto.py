"""MMPareto (Wei & Hu, "MMPareto: Boosting Multimodal Learning with Innocent Unimodal
Assistance", ICML 2024), faithful to the official release: GeWu-Lab/MMPareto_ICML2024
``code/MMPareto.py`` (the training step: conflict test, weights, per-tensor rescale, gamma)
with ``code/min_norm_solvers.py`` (the two-vector min-norm rule), checked at commit a339db3.

Per encoder, with per-tensor gradients g_mm[t] (fused loss) and g_u[t] (its unimodal loss):
  c = cos(flat g_mm, flat g_u)
  (w_mm, w_u) = (1/2, 1/2) if c > 0 else the two-objective min-norm weights (MinNormSolver)
  d[t] = 2 (w_mm g_mm[t] + w_u g_u[t])
  r[t] = ||g_mm[t] + g_u[t]|| / ||d[t]||
  g[t] = gamma * r[t] * d[t] if r[t] > 1 else gamma * d[t]
so g[t] has direction d[t] and norm gamma * max(||g_mm[t] + g_u[t]||, ||d[t]||).
Without conflict g = gamma * (g_mm + g_u) exactly. Heads keep plain gradients (no gamma).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mmbench.strategies.base import (
    EncoderStats,
    PerEncoderPairStrategy,
    StepLosses,
    goes_tensor_by_tensor,
    sweep_pair,
)
from mmbench.strategies.mgda import OFFICIAL_CLIP, min_norm_weight

RESCALE_MODES = ("tensor", "encoder", "none")


def _ratio(target: torch.Tensor, norm_d: torch.Tensor) -> torch.Tensor:
    """target / norm_d, and 1 where d is zero (the official code divides by zero there)."""
    safe = norm_d.clamp_min(torch.finfo(norm_d.dtype).tiny)
    return torch.where(norm_d > 0, target / safe, torch.ones_like(target))


def combine(
    g_mm: Sequence[torch.Tensor],
    g_uni: Sequence[torch.Tensor],
    gamma: float = 1.5,
    rescale: str = "tensor",
    eps: float = 1e-8,
    clip: tuple[float, float] = OFFICIAL_CLIP,
    inplace: bool = False,
) -> tuple[list[torch.Tensor], EncoderStats]:
    """Combine one encoder's multimodal and unimodal per-tensor gradients (see module doc).

    rescale: ``tensor`` (official: one norm ratio per tensor), ``encoder`` (one ratio over
    the whole encoder) or ``none`` (g = gamma * d). Returns the new per-tensor gradients and
    the encoder's stats (cosine, both norms, weights used). The inputs are not modified
    unless ``inplace``: then the result is written into (and returned as) ``g_mm``'s
    tensors, which the caller must own; ``g_uni`` is only read.

    Cost: one sweep reads each gradient once and gives the encoder products, the result
    without conflict gamma * (g_mm + g_u) and the rescale targets ||g_mm[t] + g_u[t]||.
    With conflict the sum s becomes, where it lies, d = 2 w_mm s + 2 (1 - 2 w_mm) g_u
    = 2 (w_mm g_mm + w_u g_u), then is rescaled; on CPU tensor by tensor, while in cache.
    """
    if rescale not in RESCALE_MODES:
        raise ValueError(f"strategy.rescale={rescale!r}: use one of {list(RESCALE_MODES)}")
    sweep = sweep_pair(g_mm, g_uni, gamma, inplace)
    out, products = sweep.sums, sweep.products
    stats = products.stats(0.5, 0.5, eps)
    if stats.cos > 0 or gamma == 0:  # d = 2 (a/2 + b/2) = a + b, every norm ratio is 1
        return out, stats
    w_mm = min_norm_weight(products.aa.sum(), products.ab.sum(), products.bb.sum(), clip)
    w = w_mm.item()
    to_direction = (2 * w / gamma, 2 * (1 - 2 * w))  # gamma * s -> d, with g_u
    g_uni = list(g_uni)
    if rescale == "tensor" and out and goes_tensor_by_tensor(out[0].device):
        for o, u, target in zip(out, g_uni, sweep.sum_norms.tolist(), strict=True):
            o.mul_(to_direction[0]).add_(u, alpha=to_direction[1])
            norm_d = torch.linalg.vector_norm(o).item()
            o.mul_(gamma * (target / norm_d if 0 < norm_d < target else 1.0))
        return out, stats._replace(w_mm=w_mm, w_u=1 - w_mm)
    torch._foreach_mul_(out, to_direction[0])
    torch._foreach_add_(out, g_uni, alpha=to_direction[1])
    if rescale == "none":
        factors = torch.ones(len(out))
    else:
        sums, norms_d = sweep.sum_norms, torch.stack(torch._foreach_norm(out))
        if rescale == "tensor":
            ratios = _ratio(sums, norms_d)
        else:
            ratios = _ratio(sums.square().sum().sqrt(), norms_d.square().sum().sqrt())
            ratios = ratios.expand(len(out))
        factors = torch.where(ratios > 1, ratios, torch.ones_like(ratios))
    torch._foreach_mul_(out, (gamma * factors).tolist())
    return out, stats._replace(w_mm=w_mm, w_u=1 - w_mm)


class MMPareto(PerEncoderPairStrategy):
    """MMPareto on every encoder; two backward passes per step (not the official four)."""

    name = "mmpareto"

    def __init__(self, gamma: float = 1.5, rescale: str = "tensor", eps: float = 1e-8) -> None:
        if rescale not in RESCALE_MODES:
            raise ValueError(f"strategy.rescale={rescale!r}: use one of {list(RESCALE_MODES)}")
        self.gamma, self.rescale, self.eps = gamma, rescale, eps

    def combine_encoder(
        self,
        g_mm: list[torch.Tensor],
        g_u: list[torch.Tensor],
        encoder: str = "",
        losses: StepLosses | None = None,
    ) -> tuple[list[torch.Tensor], EncoderStats]:
        return combine(g_mm, g_u, self.gamma, self.rescale, self.eps, inplace=True)
