"""Fusion heads: pooled features of every modality -> fused class logits.

The four OGM-GE fusions, generalised from two to k >= 2 modalities. With two modalities
each equals OGM-GE's module (modality order = the dataset config's order, audio first).
Each class is configured with ``_partial_: true``; the model supplies the feature sizes.
``modality_logits`` gives one logit tensor per modality, the per-modality scores OGM-GE reads
off the fusion head (see each class).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mmbench.models.modality import IncompatibleConfigError


class ConcatFusion(nn.Module):
    """logits = W [z_1; ...; z_k] + b (one linear layer on the concatenation)."""

    def __init__(self, feature_dims: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.fc_out = nn.Linear(sum(feature_dims), num_classes)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.fc_out(torch.cat(list(features), dim=1))

    def modality_logits(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """z_m W[:, block_m]^T + b / k: modality m's column block of W and a k-th of the bias.

        With k = 2 this is OGM-GE's out_a / out_v (GeWu-Lab/OGM-GE_CVPR2022, main.py
        ``train_epoch``: each half of fc_out.weight plus fc_out.bias / 2); they sum to the
        fused logits.
        """
        blocks = torch.split(self.fc_out.weight, [z.shape[1] for z in features], dim=1)
        bias = self.fc_out.bias / len(features)
        return [z @ w.T + bias for z, w in zip(features, blocks, strict=True)]


class SumFusion(nn.Module):
    """logits = sum_m (W_m z_m + b_m) (one linear layer per modality, summed)."""

    def __init__(self, feature_dims: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.fc = nn.ModuleList(nn.Linear(d, num_classes) for d in feature_dims)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack([fc(z) for fc, z in zip(self.fc, features, strict=True)]).sum(0)

    def modality_logits(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """W_m z_m + b_m: each modality's own layer (OGM-GE main.py: fc_x / fc_y with bias)."""
        return [fc(z) for fc, z in zip(self.fc, features, strict=True)]


def zeroed_responses(fusion: nn.Module, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """F(z with every feature but z_m set to zero), for each modality m.

    For fusions with no per-modality split of their logits (FiLM, gated).
    """
    return [
        fusion([z if i == m else torch.zeros_like(z) for i, z in enumerate(features)])
        for m in range(len(features))
    ]


def _check_condition(feature_dims: Sequence[int], condition: int, what: str) -> None:
    if not 0 <= condition < len(feature_dims):
        raise IncompatibleConfigError(
            f"fusion.{what}={condition} is not a modality index (0..{len(feature_dims) - 1})"
        )


class FiLMFusion(nn.Module):
    """Feature-wise linear modulation (Perez et al. 2018) as in OGM-GE.

    The conditioning modality c gives (gamma_j, beta_j) = split(W_j z_c + b_j) for every
    other modality j; logits = fc_out(sum_{j != c} gamma_j * z_j + beta_j).
    """

    def __init__(
        self,
        feature_dims: Sequence[int],
        num_classes: int,
        condition: int = 0,
    ) -> None:
        super().__init__()
        _check_condition(feature_dims, condition, "condition")
        others = [d for i, d in enumerate(feature_dims) if i != condition]
        if len(set(others)) != 1:
            raise IncompatibleConfigError(
                f"FiLM fusion needs equal feature sizes for the modulated modalities, got {others}"
            )
        self.condition = condition
        self.film = nn.ModuleList(nn.Linear(feature_dims[condition], 2 * others[0]) for _ in others)
        self.fc_out = nn.Linear(others[0], num_classes)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        cond = features[self.condition]
        others = [z for i, z in enumerate(features) if i != self.condition]
        fused = 0
        for film, z in zip(self.film, others, strict=True):
            gamma, beta = torch.chunk(film(cond), 2, dim=1)
            fused = fused + gamma * z + beta
        return self.fc_out(fused)

    def modality_logits(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The head's response with the other modalities' features zeroed (no additive split:
        OGM-GE's main.py cannot score FiLM, its fc_out halves do not match the features)."""
        return zeroed_responses(self, features)


class GatedFusion(nn.Module):
    """Gated fusion as in OGM-GE: the gate modality g gates the projections of the others.

    logits = fc_out(sigmoid(W_g z_g) * sum_{j != g} W_j z_j), hidden size ``dim``.
    """

    def __init__(
        self, feature_dims: Sequence[int], num_classes: int, gate: int = 0, dim: int = 512
    ) -> None:
        super().__init__()
        _check_condition(feature_dims, gate, "gate")
        self.gate = gate
        self.fc = nn.ModuleList(nn.Linear(d, dim) for d in feature_dims)
        self.fc_out = nn.Linear(dim, num_classes)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        projected = [fc(z) for fc, z in zip(self.fc, features, strict=True)]
        gate = torch.sigmoid(projected[self.gate])
        rest = torch.stack([p for i, p in enumerate(projected) if i != self.gate]).sum(0)
        return self.fc_out(gate * rest)

    def modality_logits(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The head's response with the other modalities' features zeroed (no additive split:
        OGM-GE's main.py cannot score gated fusion, its fc_out halves do not match)."""
        return zeroed_responses(self, features)
