"""The strategy contract and the gradient plumbing every strategy shares.

A strategy receives the model and one step's losses (fused + one per modality), fills
``.grad`` of every trainable parameter and, when asked, returns per-encoder telemetry.
The engine then steps the optimizer. Gradient math lives in pure functions elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from mmbench.models.multimodal import ModelOutput, MultimodalClassifier


@dataclass
class StepLosses:
    """One training step: the fused loss, the unimodal losses and what produced them.

    ``batch`` (inputs by modality name, and "label") lets a strategy run extra forward
    passes (e.g. AGM's zeroed-input responses); ``epoch`` lets it follow a schedule.
    """

    fused: torch.Tensor
    unimodal: dict[str, torch.Tensor]
    outputs: ModelOutput
    labels: torch.Tensor
    batch: dict[str, torch.Tensor] | None = None
    epoch: int = 0

    @classmethod
    def from_outputs(
        cls, outputs: ModelOutput, batch: dict[str, torch.Tensor], epoch: int = 0
    ) -> StepLosses:
        """Mean cross-entropy of the fused logits and of each unimodal head (in float32)."""
        labels = batch["label"]
        fused = F.cross_entropy(outputs.fused.float(), labels)
        unimodal = {m: F.cross_entropy(v.float(), labels) for m, v in outputs.unimodal.items()}
        return cls(fused, unimodal, outputs, labels, batch, epoch)

    def unimodal_sum(self) -> torch.Tensor:
        return torch.stack(list(self.unimodal.values())).sum()


class EncoderStats(NamedTuple):
    """Per-encoder telemetry of one step (0-d tensors until reported).

    cos = cosine(g_mm, g_u) over the whole encoder; norms of both; weights applied.
    """

    cos: torch.Tensor
    norm_mm: torch.Tensor
    norm_u: torch.Tensor
    w_mm: torch.Tensor
    w_u: torch.Tensor


Telemetry = dict[str, dict[str, float]]


def _vector_view(t: torch.Tensor) -> tuple[torch.Tensor, str]:
    """``t`` as a vector in the element order of its memory layout, and that layout.

    ``contiguous`` and ``channels_last`` tensors give a view (no copy); anything else is
    copied in logical order (``copy``).
    """
    if t.is_contiguous():
        return t.view(-1), "contiguous"
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return t.permute(0, 2, 3, 1).reshape(-1), "channels_last"
    return t.reshape(-1), "copy"


def tensor_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """<a, b> over all elements, without copying when both share a memory layout."""
    va, layout_a = _vector_view(a)
    vb, layout_b = _vector_view(b)
    if layout_a == layout_b:
        return torch.dot(va, vb)
    return (a * b).sum()


class PairProducts(NamedTuple):
    """Per-tensor inner products of two gradient lists a, b: <a,a>, <a,b>, <b,b> (1-D)."""

    aa: torch.Tensor
    ab: torch.Tensor
    bb: torch.Tensor

    def stats(
        self, w_mm: torch.Tensor | float, w_u: torch.Tensor | float, eps: float = 1e-8
    ) -> EncoderStats:
        """Encoder stats; cos = <a,b> / (max(||a||, eps) max(||b||, eps)) over the encoder."""
        norm_a, norm_b = self.aa.sum().sqrt(), self.bb.sum().sqrt()
        cos = self.ab.sum() / (norm_a.clamp_min(eps) * norm_b.clamp_min(eps))
        as_tensor = lambda w: torch.as_tensor(w, dtype=cos.dtype, device=cos.device)  # noqa: E731
        return EncoderStats(cos, norm_a, norm_b, as_tensor(w_mm), as_tensor(w_u))


def pair_products(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> PairProducts:
    """<a_t,a_t>, <a_t,b_t>, <b_t,b_t> for every tensor t: a few reads, no flattened copies."""
    return sweep_pair(a, b, scale=None).products


def goes_tensor_by_tensor(device: torch.device) -> bool:
    """Whether gradient sweeps run tensor by tensor (CPU caches) or as foreach kernels."""
    return device.type == "cpu"


class PairSweep(NamedTuple):
    """One read of two gradient lists a, b: their products, scale * (a + b) and ||a + b||."""

    products: PairProducts
    sums: list[torch.Tensor]  # scale * (a_t + b_t); empty when not asked for
    sum_norms: torch.Tensor | None  # ||a_t + b_t|| (unscaled), 1-D


def sweep_pair(
    a: Sequence[torch.Tensor],
    b: Sequence[torch.Tensor],
    scale: float | None = 1.0,
    inplace: bool = False,
) -> PairSweep:
    """The per-tensor products of a and b, scale * (a_t + b_t) and ||a_t + b_t||.

    ``scale=None`` skips the sums. ``inplace`` writes the sums into a's tensors (b is only
    read). On CPU the work goes tensor by tensor: the dot products, the sum and its norm
    of a pair of tensors run while that pair is in cache, so each gradient is read from
    memory once (a sweep per quantity costs about twice as much on a ResNet-18 encoder).
    On other devices each quantity is one batched (foreach) kernel.
    """
    if len(a) != len(b):
        raise ValueError(f"gradient lists differ in length: {len(a)} vs {len(b)}")
    a, b = list(a), list(b)
    if a and goes_tensor_by_tensor(a[0].device):
        aa, ab, bb, sums, norms = [], [], [], [], []
        for x, y in zip(a, b, strict=True):
            aa.append(tensor_dot(x, x))
            ab.append(tensor_dot(x, y))
            bb.append(tensor_dot(y, y))
            if scale is not None:
                total = x.add_(y) if inplace else torch.add(x, y)
                norms.append(torch.linalg.vector_norm(total))
                sums.append(total.mul_(scale))
        products = PairProducts(torch.stack(aa), torch.stack(ab), torch.stack(bb))
        return PairSweep(products, sums, torch.stack(norms) if norms else None)
    aa = torch.stack(torch._foreach_norm(a)).square()
    bb = torch.stack(torch._foreach_norm(b)).square()
    ab = torch.stack([tensor_dot(x, y) for x, y in zip(a, b, strict=True)])
    products = PairProducts(aa, ab, bb)
    if scale is None:
        return PairSweep(products, [], None)
    if inplace:
        sums = a
        torch._foreach_add_(sums, b)
    else:
        sums = torch._foreach_add(a, b)
    norms = torch.stack(torch._foreach_norm(sums))
    torch._foreach_mul_(sums, scale)
    return PairSweep(products, sums, norms)


def stats_to_floats(stats: dict[str, EncoderStats]) -> Telemetry:
    """One device sync for all encoders' telemetry."""
    if not stats:
        return {}
    names = list(stats)
    values = torch.stack([torch.stack(list(stats[n])) for n in names]).double().cpu().tolist()
    return {
        n: dict(zip(EncoderStats._fields, row, strict=True))
        for n, row in zip(names, values, strict=True)
    }


class SeparateGradients(NamedTuple):
    """Per-parameter gradients of the fused loss and of the summed unimodal losses."""

    params: list[nn.Parameter]
    fused: list[torch.Tensor | None]
    unimodal: list[torch.Tensor | None]


def separate_gradients(
    model: nn.Module, losses: StepLosses, retain_graph: bool = False
) -> SeparateGradients:
    """Two backward passes: d L_mm / d theta and d (sum_m L_m) / d theta.

    Each unimodal loss L_m depends only on encoder m and head m, so the gradient of their
    sum restricted to encoder m is exactly d L_m / d theta_m: two passes give every
    encoder's multimodal and unimodal gradient separately (the official code needs k + 2).
    Every returned tensor has a storage of its own, so a strategy may overwrite them.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    fused = torch.autograd.grad(losses.fused, params, retain_graph=True, allow_unused=True)
    unimodal = torch.autograd.grad(
        losses.unimodal_sum(), params, retain_graph=retain_graph, allow_unused=True
    )
    owned = _own_storages([*fused, *unimodal])
    return SeparateGradients(params, owned[: len(params)], owned[len(params) :])


def _own_storages(grads: list[torch.Tensor | None]) -> list[torch.Tensor | None]:
    """``grads`` with a copy of any tensor whose storage an earlier one already uses.

    Autograd may hand the same buffer to two parameters (e.g. both inputs of an add);
    copying those makes in-place combination safe.
    """
    seen: set[int] = set()
    owned = []
    for g in grads:
        if g is not None:
            key = g.untyped_storage().data_ptr()
            if key in seen:
                g = g.clone()
            seen.add(g.untyped_storage().data_ptr())
        owned.append(g)
    return owned


def add_optional(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    """a + b where a missing gradient counts as zero (None when both are missing)."""
    if a is None:
        return b
    return a if b is None else a + b


def encoder_indices(
    model: MultimodalClassifier, params: Sequence[nn.Parameter]
) -> dict[str, list[int]]:
    """Positions in ``params`` of each encoder's parameters."""
    position = {id(p): i for i, p in enumerate(params)}
    return {
        name: [position[id(p)] for p in enc_params if id(p) in position]
        for name, enc_params in model.encoder_parameters().items()
    }


def assign_gradients(params: Sequence[nn.Parameter], grads: Sequence[torch.Tensor | None]) -> None:
    """Set ``.grad`` (replacing anything accumulated) of each parameter."""
    for p, g in zip(params, grads, strict=True):
        p.grad = None if g is None else g.detach()


class GradientStrategy:
    """Base of all strategies. Subclasses implement ``backward``.

    ``trains_unimodal_heads`` is False when the unimodal losses never reach the heads, so
    their accuracy is meaningless and reported as untrained.
    """

    name = "strategy"
    trains_unimodal_heads = True

    def backward(
        self, model: MultimodalClassifier, losses: StepLosses, telemetry: bool = False
    ) -> Telemetry:
        raise NotImplementedError

    def parameters(self) -> list[nn.Parameter]:
        """Trainable parameters the strategy owns (e.g. uncertainty weights); optimised too."""
        return []

    def on_epoch_end(self, epoch: int, train_metrics: dict[str, float]) -> None:
        """Called after each training epoch with its mean losses (``train_loss``, ...)."""
        del epoch, train_metrics

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume the strategy exactly (saved in the checkpoint)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state

    @staticmethod
    def measure_conflict(
        model: MultimodalClassifier, losses: StepLosses, w_mm: float, w_u: float
    ) -> dict[str, EncoderStats]:
        """Telemetry for one-pass strategies: extra separate passes, graph kept for theirs."""
        grads = separate_gradients(model, losses, retain_graph=True)
        stats = {}
        for name, idx in encoder_indices(model, grads.params).items():
            g_mm, g_u = zero_filled(grads, idx)
            stats[name] = pair_products(g_mm, g_u).stats(w_mm, w_u)
        return stats


def zero_filled(
    grads: SeparateGradients, idx: Sequence[int]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The fused and unimodal gradients of the parameters at ``idx``, zeros for missing."""

    def pick(source: list[torch.Tensor | None]) -> list[torch.Tensor]:
        return [
            source[i] if source[i] is not None else torch.zeros_like(grads.params[i]) for i in idx
        ]

    return pick(grads.fused), pick(grads.unimodal)


class PerEncoderPairStrategy(GradientStrategy):
    """Strategies that, per encoder, combine its two gradients (fused and own unimodal).

    Two backward passes give both; ``combine_encoder`` rewrites each encoder's gradient;
    heads, fusion and every other parameter keep the plain gradient of L_mm + sum_m L_m.
    """

    def combine_encoder(
        self,
        g_mm: list[torch.Tensor],
        g_u: list[torch.Tensor],
        encoder: str,
        losses: StepLosses,
    ) -> tuple[list[torch.Tensor], EncoderStats]:
        """New per-tensor gradients of encoder ``encoder`` and its stats.

        ``g_mm`` and ``g_u`` are this step's own buffers: an implementation may overwrite
        them and return them as the result.
        """
        raise NotImplementedError

    def backward(
        self, model: MultimodalClassifier, losses: StepLosses, telemetry: bool = False
    ) -> Telemetry:
        grads = separate_gradients(model, losses)
        encoders = encoder_indices(model, grads.params)
        combined: list[torch.Tensor | None] = [None] * len(grads.params)
        in_encoder = {i for idx in encoders.values() for i in idx}
        for i, (a, b) in enumerate(zip(grads.fused, grads.unimodal, strict=True)):
            if i not in in_encoder:
                combined[i] = add_optional(a, b)
        stats = {}
        for name, idx in encoders.items():
            g_mm, g_u = zero_filled(grads, idx)
            new, stats[name] = self.combine_encoder(g_mm, g_u, name, losses)
            for i, g in zip(idx, new, strict=True):
                combined[i] = g
        assign_gradients(grads.params, combined)
        return stats_to_floats(stats) if telemetry else {}


def one_pass_telemetry(
    model: MultimodalClassifier,
    losses: StepLosses,
    weights: dict[str, tuple[float, float]],
    extra: dict[str, dict[str, float]] | None = None,
) -> Telemetry:
    """Telemetry of a one-backward strategy: measured cos and norms (two extra passes that
    keep the graph, so call it before the strategy's backward), the weights (w_mm, w_u) it
    applies to each encoder's two gradients, and any extra per-encoder keys (e.g. ``k``)."""
    rows = stats_to_floats(GradientStrategy.measure_conflict(model, losses, 0.0, 0.0))
    for name, row in rows.items():
        row["w_mm"], row["w_u"] = (float(w) for w in weights[name])
        row.update((extra or {}).get(name, {}))
    return rows
