"""Representation-level strategies: decide on dL/dz_m, then back-propagate once.

The idea of MGDA-UB (Sener & Koltun, NeurIPS 2018, Section 3.3; the authors' code,
isl-org/MultiObjectiveOptimization ``multi_task/train_multi_task.py``, commit bf5bbb3, with
``use_approximation``): solve the min-norm problem on the gradients of the losses with
respect to the shared representation instead of the shared parameters, then run a single
backward pass. Here every encoder m has its own representation z_m (``ModelOutput.features``),
consumed by the fusion head (L_mm) and by its unimodal head (L_m), so per encoder

  a_m = dL_mm / dz_m,   b_m = dL_m / dz_m          (B x D each, only heads and fusion crossed)
  v_m = rule(a_m, b_m)                              (the strategy's per-encoder combination)
  grad theta_m = J_m^T v_m                          (one backward through all encoders at once)

where J_m = dz_m / dtheta_m. Since J_m^T is linear, J_m^T (w a_m + (1 - w) b_m) is exactly
w g_mm + (1 - w) g_u on the parameters: only the decisions (cosine test, weights, norms)
are taken on z_m instead of theta_m. The encoders are disjoint, so the final
``torch.autograd.backward(zs, grad_tensors=vs)`` visits every encoder once. Heads, fusion
and every other parameter get the plain gradient of L_mm + sum_m L_m (as ``uniform``), from
the same two representation passes. Cost class: one backward.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from mmbench.models.multimodal import MultimodalClassifier
from mmbench.strategies.base import (
    EncoderStats,
    GradientStrategy,
    StepLosses,
    Telemetry,
    add_optional,
    assign_gradients,
    stats_to_floats,
)


class RepresentationGradients(NamedTuple):
    """dL_mm/dz_m and dL_m/dz_m (>= float32) per encoder, and the other parameters' gradients."""

    features: dict[str, torch.Tensor]  # z_m, as the model produced it (graph attached)
    fused: dict[str, torch.Tensor]  # a_m = dL_mm / dz_m
    unimodal: dict[str, torch.Tensor]  # b_m = dL_m / dz_m
    others: list[nn.Parameter]  # every trainable parameter outside the encoders
    others_grads: list[torch.Tensor | None]  # d(L_mm + sum_m L_m) / d(those parameters)


def representation_gradients(
    model: MultimodalClassifier, losses: StepLosses
) -> RepresentationGradients:
    """Two passes that stop at the features: through the fusion (L_mm) and the heads (sum L_m).

    The graph is kept for the encoders' backward. L_m depends on z only through z_m, so the
    gradient of sum_m L_m at z_m is dL_m/dz_m. Features that need no gradient (frozen
    encoders) are left out.
    """
    features = {m: z for m, z in losses.outputs.features.items() if m in model.modality_names}
    features = {m: z for m, z in features.items() if z.requires_grad}
    names, zs = list(features), list(features.values())
    encoder_ids = {id(p) for ps in model.encoder_parameters().values() for p in ps}
    others = [p for p in model.parameters() if p.requires_grad and id(p) not in encoder_ids]
    inputs = [*zs, *others]
    fused = torch.autograd.grad(losses.fused, inputs, retain_graph=True, allow_unused=True)
    unimodal = torch.autograd.grad(
        losses.unimodal_sum(), inputs, retain_graph=True, allow_unused=True
    )
    k = len(zs)

    def as_float(g: torch.Tensor | None, z: torch.Tensor) -> torch.Tensor:
        """At least float32 (bf16 features under AMP are combined in float32)."""
        dtype = torch.promote_types(z.dtype, torch.float32)
        return torch.zeros_like(z, dtype=dtype) if g is None else g.to(dtype)

    return RepresentationGradients(
        features,
        {m: as_float(g, z) for m, g, z in zip(names, fused[:k], zs, strict=True)},
        {m: as_float(g, z) for m, g, z in zip(names, unimodal[:k], zs, strict=True)},
        others,
        [add_optional(a, b) for a, b in zip(fused[k:], unimodal[k:], strict=True)],
    )


def backward_through_encoders(
    model: MultimodalClassifier, rep: RepresentationGradients, updates: dict[str, torch.Tensor]
) -> None:
    """Set the heads' plain gradients, then ONE backward of every z_m with its update v_m.

    The encoders' ``.grad`` is cleared first, so the result replaces anything accumulated.
    """
    assign_gradients(rep.others, rep.others_grads)
    for params in model.encoder_parameters().values():
        for p in params:
            p.grad = None
    zs = [rep.features[m] for m in updates]
    vs = [updates[m].to(rep.features[m].dtype) for m in updates]
    torch.autograd.backward(zs, grad_tensors=vs)


class RepresentationStrategy(GradientStrategy):
    """Base of the one-backward representation-level strategies (see the module doc).

    Subclasses implement ``combine_representation(a, b, encoder)`` -> (v, stats), where the
    stats (cosine, norms, weights) are those of the representation gradients.
    """

    def combine_representation(
        self, a: torch.Tensor, b: torch.Tensor, encoder: str
    ) -> tuple[torch.Tensor, EncoderStats]:
        raise NotImplementedError

    def decide(
        self, model: MultimodalClassifier, losses: StepLosses
    ) -> tuple[RepresentationGradients, dict[str, torch.Tensor], dict[str, EncoderStats]]:
        """The representation gradients and, per encoder, the update v_m and its stats."""
        rep = representation_gradients(model, losses)
        updates, stats = {}, {}
        for m in rep.features:
            updates[m], stats[m] = self.combine_representation(rep.fused[m], rep.unimodal[m], m)
        return rep, updates, stats

    def backward(
        self, model: MultimodalClassifier, losses: StepLosses, telemetry: bool = False
    ) -> Telemetry:
        rep, updates, stats = self.decide(model, losses)
        backward_through_encoders(model, rep, updates)
        return stats_to_floats(stats) if telemetry else {}
