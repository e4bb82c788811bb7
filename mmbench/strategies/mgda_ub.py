"""MGDA-UB per encoder (Sener & Koltun, NeurIPS 2018): min-norm weights on dL/dz_m, one pass.

The representation-level counterpart of :mod:`mmbench.strategies.mgda`, as the authors'
``use_approximation`` branch (isl-org/MultiObjectiveOptimization
``multi_task/train_multi_task.py``, commit bf5bbb3): the gradients of each loss with respect
to the representation, the two-vector min-norm rule of ``MinNormSolver`` on them
(``multi_task/min_norm_solvers.py``, endpoints 0.001/0.999), then one backward pass. Per
encoder m, with a = dL_mm/dz_m and b = dL_m/dz_m:

  w = min-norm weight of (a, b);   v = scale * (w a + (1 - w) b);   grad theta_m = J_m^T v

No rescaling. The authors weight the task losses, so their task heads get the weighted
gradients too; here (as in strategy=mgda) the heads and the fusion keep the plain gradient
of L_mm + sum_m L_m, because each encoder has its own weights and the fusion head sees all
encoders. The authors' optional gradient normalisers (default ``none`` in the paper) are not
offered. Telemetry comes from the representation gradients.
"""

from __future__ import annotations

import torch

from mmbench.strategies import mgda
from mmbench.strategies.base import EncoderStats
from mmbench.strategies.representation import RepresentationStrategy


class MGDAUB(RepresentationStrategy):
    """Two-objective MGDA decided on each encoder's representation gradients; one backward."""

    name = "mgda_ub"

    def __init__(self, scale: float = 1.0, exact: bool = False) -> None:
        self.scale = scale
        self.clip = (0.0, 1.0) if exact else mgda.OFFICIAL_CLIP

    def combine_representation(
        self, a: torch.Tensor, b: torch.Tensor, encoder: str = ""
    ) -> tuple[torch.Tensor, EncoderStats]:
        out, stats = mgda.combine([a], [b], self.scale, self.clip)
        return out[0], stats
