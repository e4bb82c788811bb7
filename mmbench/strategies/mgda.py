"""Conventional Pareto (MGDA, Sener & Koltun, NeurIPS 2018), per encoder, two objectives.

The paper's Figure 1(c) baseline: each encoder follows the min-norm point of the convex
hull of its two gradients, g = scale * (w g_mm + (1 - w) g_u), with no magnitude rescaling.
The two-vector rule and its 0.999 / 0.001 end points are those of
``MinNormSolver._min_norm_element_from2`` in the authors' code, isl-org/MultiObjectiveOptimization
``multi_task/min_norm_solvers.py`` (commit bf5bbb30).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mmbench.strategies.base import (
    EncoderStats,
    PerEncoderPairStrategy,
    StepLosses,
    pair_products,
)

OFFICIAL_CLIP = (0.001, 0.999)


def min_norm_weight(
    v11: torch.Tensor,
    v12: torch.Tensor,
    v22: torch.Tensor,
    clip: tuple[float, float] = OFFICIAL_CLIP,
) -> torch.Tensor:
    """Weight w of x1 in min_{w in [0,1]} ||w x1 + (1 - w) x2||^2 (MinNormSolver rule).

    With v11 = <x1,x1>, v12 = <x1,x2>, v22 = <x2,x2>:
    v12 >= v11 -> w = clip[1];  elif v12 >= v22 -> w = clip[0];
    else w = (v22 - v12) / (v11 + v22 - 2 v12).
    The official solver's endpoints are 0.999 / 0.001; ``clip=(0, 1)`` gives exact MGDA.
    Branch-free (no device sync) and NaN-free (the division is guarded where unused).
    """
    denominator = (v11 + v22 - 2 * v12).clamp_min(torch.finfo(v11.dtype).tiny)
    interior = (v22 - v12) / denominator
    low, high = (torch.as_tensor(c, dtype=v11.dtype, device=v11.device) for c in clip)
    return torch.where(v12 >= v11, high, torch.where(v12 >= v22, low, interior))


def combine(
    g_mm: Sequence[torch.Tensor],
    g_u: Sequence[torch.Tensor],
    scale: float = 1.0,
    clip: tuple[float, float] = OFFICIAL_CLIP,
    inplace: bool = False,
) -> tuple[list[torch.Tensor], EncoderStats]:
    """g[t] = scale * (w g_mm[t] + (1 - w) g_u[t]) with w the encoder's min-norm weight.

    ``inplace``: write the result into (and return) ``g_mm``'s tensors, which the caller
    must own; ``g_u`` is only read.
    """
    products = pair_products(g_mm, g_u)
    w_mm = min_norm_weight(products.aa.sum(), products.ab.sum(), products.bb.sum(), clip)
    w_u = 1 - w_mm
    if inplace:
        out = list(g_mm)
        torch._foreach_mul_(out, scale * w_mm)
    else:
        out = torch._foreach_mul(list(g_mm), scale * w_mm)
    torch._foreach_add_(out, list(g_u), alpha=scale * w_u.item())
    return out, products.stats(w_mm, w_u)


class MGDA(PerEncoderPairStrategy):
    """Per-encoder two-objective MGDA; heads keep the plain gradient of the summed loss."""

    name = "mgda"

    def __init__(self, scale: float = 1.0, exact: bool = False) -> None:
        self.scale = scale
        self.clip = (0.0, 1.0) if exact else OFFICIAL_CLIP

    def combine_encoder(
        self,
        g_mm: list[torch.Tensor],
        g_u: list[torch.Tensor],
        encoder: str = "",
        losses: StepLosses | None = None,
    ) -> tuple[list[torch.Tensor], EncoderStats]:
        return combine(g_mm, g_u, self.scale, self.clip, inplace=True)
