"""Adaptor: any pure k-objective aggregator applied per encoder to (g_mm, g_u).

For every encoder block θ_m, two backward passes (:func:`separate_gradients`) give
g_mm = ∇_θm L_mm and g_u = ∇_θm L_m; the adaptor hands the aggregator's pure
``aggregate(G, ...) -> Aggregation(direction, weights)`` the two rows

    G = [g_mm; g_u]   (2, n_m)

as :class:`~mmbench.strategies.gram.BlockRows`: the encoder's per-tensor gradients, never
concatenated. The aggregator sees K = G Gᵀ from per-tensor dot products and returns
``direction`` (= weightsᵀG) per tensor, written over g_mm's buffers. Heads,
fusion and every other parameter keep the plain gradient of L_mm + Σ_m L_m. Telemetry per
encoder: cos(g_mm, g_u), both norms and the weights applied (w_mm = weights[0],
w_u = weights[1]). Any number of modalities and any fusion work: each encoder is one
two-objective problem.

State: stateful aggregators (GradVac's EMA cosine targets) keep one state per encoder;
randomness (PCGrad/GradVac projection order) comes from a CPU ``torch.Generator`` seeded by
the ``seed`` knob. Both are in :meth:`state_dict`, so a resumed run is exact.

The aggregators (papers in their modules): pcgrad, cagrad, gradvac, imtl_g, aligned_mtl,
nash_mtl, upgrad, dualproj, config (ConFIG), mgda_k. ``mgda_k`` with the ``loss``/``loss+``
normalisers receives the loss values [L_mm, L_m] of the step.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from importlib import import_module
from typing import Any

import torch

from mmbench.strategies.base import (
    EncoderStats,
    PairProducts,
    PerEncoderPairStrategy,
    StepLosses,
)
from mmbench.strategies.gradvac import GradVacState
from mmbench.strategies.gram import Aggregation, BlockRows

AGGREGATORS = (
    "pcgrad",
    "cagrad",
    "gradvac",
    "imtl_g",
    "aligned_mtl",
    "nash_mtl",
    "upgrad",
    "dualproj",
    "config",
    "mgda_k",
)

# The state (a NamedTuple of tensors) of each stateful aggregator, rebuilt on resume.
STATE_TYPES: dict[str, type] = {"gradvac": GradVacState}


def load_aggregator(name: str) -> Callable[..., Any]:
    """The ``aggregate`` function of ``mmbench.strategies.<name>``."""
    if name not in AGGREGATORS:
        raise ValueError(f"strategy.aggregator={name!r}: use one of {list(AGGREGATORS)}")
    return import_module(f"mmbench.strategies.{name}").aggregate


class PerEncoderAggregation(PerEncoderPairStrategy):
    """Per encoder, g = aggregate([g_mm; g_u]).direction; two backward passes per step.

    ``aggregator`` names the module; every other keyword (``**knobs``) goes to its
    ``aggregate`` unchanged (e.g. ``c`` for CAGrad, ``normalizer`` for MGDA).
    """

    name = "aggregated"

    def __init__(self, aggregator: str, seed: int = 0, **knobs: Any) -> None:
        self.aggregator = aggregator
        self.aggregate = load_aggregator(aggregator)
        accepted = inspect.signature(self.aggregate).parameters
        unknown = sorted(set(knobs) - set(accepted) - {"G", "state", "generator", "losses"})
        if unknown:
            raise ValueError(f"aggregator {aggregator!r} has no knob(s) {unknown}")
        self.knobs = dict(knobs)
        self.stateful = "state" in accepted
        if self.stateful and aggregator not in STATE_TYPES:
            raise ValueError(f"aggregator {aggregator!r} is stateful but has no STATE_TYPES entry")
        self.takes_losses = "losses" in accepted
        self.name = aggregator
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.states: dict[str, Any] = {}

    def combine(self, name: str, G: BlockRows, losses: torch.Tensor) -> Aggregation:
        """The aggregation of one encoder's (2, n) rows, updating its state if any."""
        kwargs: dict[str, Any] = {**self.knobs, "generator": self.generator}
        if self.takes_losses:
            kwargs["losses"] = losses
        if self.stateful:
            result, self.states[name] = self.aggregate(G, self.states.get(name), **kwargs)
            return result
        return self.aggregate(G, **kwargs)

    def combine_encoder(
        self,
        g_mm: list[torch.Tensor],
        g_u: list[torch.Tensor],
        encoder: str,
        losses: StepLosses,
    ) -> tuple[list[torch.Tensor], EncoderStats]:
        G = BlockRows([g_mm, g_u], inplace=True)
        loss_values = torch.stack([losses.fused, losses.unimodal[encoder]]).detach()
        result = self.combine(encoder, G, loss_values)
        K, w = G.gram(), result.weights.detach()
        products = PairProducts(K[0, 0].reshape(1), K[0, 1].reshape(1), K[1, 1].reshape(1))
        return list(result.direction), products.stats(w[0], w[1])

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.get_state(),
            "states": {
                name: {field: value.clone() for field, value in state._asdict().items()}
                for name, state in self.states.items()
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"].cpu())
        if not self.stateful:
            return
        cls = STATE_TYPES[self.aggregator]
        self.states = {name: cls(**fields) for name, fields in state["states"].items()}
