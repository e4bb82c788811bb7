"""Shared fixtures: Hydra composition and a tiny two-modality model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from mmbench.models.backbones import DigitConvNetBackbone
from mmbench.models.fusion import ConcatFusion
from mmbench.models.modality import ModalitySpec
from mmbench.models.multimodal import MultimodalClassifier
from mmbench.strategies.base import StepLosses

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@pytest.fixture
def compose_cfg() -> Callable[..., DictConfig]:
    """compose_cfg(overrides) -> the composed training config."""

    def _compose(overrides: list[str] | None = None) -> DictConfig:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return compose(config_name="train", overrides=overrides or [])

    return _compose


SPECS = (ModalitySpec("gray", "image", (1, 8, 8)), ModalitySpec("color", "image", (3, 8, 8)))


def tiny_model(seed: int = 0) -> MultimodalClassifier:
    torch.manual_seed(seed)
    return MultimodalClassifier(SPECS, DigitConvNetBackbone(feature_dim=16), ConcatFusion, 4)


def tiny_batch(seed: int = 0, size: int = 8) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    batch = {s.name: torch.randn((size, *s.shape), generator=gen) for s in SPECS}
    batch["label"] = torch.randint(0, 4, (size,), generator=gen)
    return batch


def step_losses(model: MultimodalClassifier, batch: dict[str, torch.Tensor]) -> StepLosses:
    return StepLosses.from_outputs(model(batch), batch)


def make_conflicting(model: MultimodalClassifier) -> None:
    """Fused head = minus the unimodal heads: every encoder's g_mm is close to -g_u."""
    with torch.no_grad():
        weights = [-model.heads[m].weight for m in model.modality_names]
        model.fusion.fc_out.weight.copy_(torch.cat(weights, dim=1))
        model.fusion.fc_out.bias.copy_(-sum(model.heads[m].bias for m in model.modality_names))
