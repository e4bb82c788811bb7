"""In-memory multimodal datasets indexed a whole batch at a time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset


class TensorMultimodalDataset(Dataset):
    """Samples ``{modality: tensor[i], "label": labels[i]}`` from tensors held in memory.

    ``batched_indexing``: indexing with a list of indices returns the collated batch
    directly (one gather per modality instead of per-sample Python work).
    """

    batched_indexing = True

    def __init__(self, tensors: Mapping[str, torch.Tensor], labels: torch.Tensor) -> None:
        for name, t in tensors.items():
            if len(t) != len(labels):
                raise ValueError(f"modality '{name}' has {len(t)} samples, labels {len(labels)}")
        self.tensors = dict(tensors)
        self.labels = labels.long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int | Sequence[int]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(index)
        sample = {name: t[idx] for name, t in self.tensors.items()}
        sample["label"] = self.labels[idx]
        return sample


@dataclass
class DatasetSplits:
    """What a dataset builder returns: the three splits (val may be None), class names, and
    how many listed samples of each source split the loader had to skip (missing or broken
    files: ``{"train": n, "test": m}``; val is carved from what train kept)."""

    train: Dataset
    val: Dataset | None
    test: Dataset
    class_names: list[str]
    skipped: dict[str, int] = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        """Samples per split that training and evaluation see (val 0 when there is none)."""
        val = 0 if self.val is None else len(self.val)
        return {"train": len(self.train), "val": val, "test": len(self.test)}
