"""The model contract: one encoder per modality, a fusion head, separate unimodal heads."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch
from torch import nn

from mmbench.models.backbones import BackboneFactory
from mmbench.models.modality import ModalitySpec


class ModelOutput(NamedTuple):
    """Fused logits, per-modality logits of the unimodal heads, per-modality features."""

    fused: torch.Tensor
    unimodal: dict[str, torch.Tensor]
    features: dict[str, torch.Tensor]


class MultimodalClassifier(nn.Module):
    """Encoders E_m, fusion F and separate linear heads H_m (as the official MMPareto code).

    fused logits = F(E_1(x_1), ..., E_k(x_k)); unimodal logits_m = H_m(E_m(x_m)).
    """

    def __init__(
        self,
        modalities: Sequence[ModalitySpec],
        backbone: BackboneFactory,
        fusion: Callable[..., nn.Module],
        num_classes: int,
    ) -> None:
        super().__init__()
        self.modalities = list(modalities)
        self.encoders = nn.ModuleDict({m.name: backbone.build(m) for m in self.modalities})
        dims = [backbone.feature_dim] * len(self.modalities)
        self.fusion = fusion(feature_dims=dims, num_classes=num_classes)
        self.heads = nn.ModuleDict(
            {m.name: nn.Linear(backbone.feature_dim, num_classes) for m in self.modalities}
        )

    @property
    def modality_names(self) -> list[str]:
        return [m.name for m in self.modalities]

    def forward(self, batch: Mapping[str, torch.Tensor]) -> ModelOutput:
        features = {name: self.encoders[name](batch[name]) for name in self.modality_names}
        fused = self.fusion([features[name] for name in self.modality_names])
        unimodal = {name: self.heads[name](features[name]) for name in self.modality_names}
        return ModelOutput(fused, unimodal, features)

    def encoder_parameters(self) -> dict[str, list[nn.Parameter]]:
        """The trainable parameters of each encoder, the blocks strategies act on."""
        return {
            name: [p for p in self.encoders[name].parameters() if p.requires_grad]
            for name in self.modality_names
        }
