"""A synthetic, learnable multimodal dataset of any modality shapes (tests, speed runs).

Each sample of class y is N(0, 1) noise plus ``signal`` times a fixed random pattern of
class y (one pattern per modality and class), so every modality is informative.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from mmbench.data.tensor_dataset import DatasetSplits, TensorMultimodalDataset


def build_synthetic(
    modalities: Sequence[Mapping[str, Any]],
    num_classes: int,
    train_size: int = 64,
    val_size: int = 32,
    test_size: int = 32,
    signal: float = 0.5,
    seed: int = 0,
) -> DatasetSplits:
    """Three splits of class-pattern + noise tensors with the given modality shapes."""
    gen = torch.Generator().manual_seed(seed)
    patterns = {
        m["name"]: torch.randn((num_classes, *m["shape"]), generator=gen) for m in modalities
    }

    def split(size: int) -> TensorMultimodalDataset:
        labels = torch.randint(0, num_classes, (size,), generator=gen)
        tensors = {
            name: torch.randn((size, *p.shape[1:]), generator=gen) + signal * p[labels]
            for name, p in patterns.items()
        }
        return TensorMultimodalDataset(tensors, labels)

    return DatasetSplits(
        split(train_size),
        split(val_size) if val_size else None,
        split(test_size),
        [f"class_{c}" for c in range(num_classes)],
    )
