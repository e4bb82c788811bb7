"""What the model needs to know about one input modality."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MODALITY_KINDS = ("image", "frames", "audio")


class IncompatibleConfigError(ValueError):
    """A configuration combination that cannot work (raised at start, before training)."""


@dataclass(frozen=True)
class ModalitySpec:
    """One modality of a dataset.

    kind: ``image`` (C, H, W), ``frames`` (T, 3, H, W) or ``audio`` (1, F, T spectrogram).
    shape: the per-sample tensor shape the dataset yields.
    """

    name: str
    kind: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.kind not in MODALITY_KINDS:
            raise IncompatibleConfigError(
                f"modality '{self.name}': kind '{self.kind}' is unknown; "
                f"use one of {list(MODALITY_KINDS)} in the dataset config's `modalities` list"
            )
        expected_rank = {"image": 3, "frames": 4, "audio": 3}[self.kind]
        if len(self.shape) != expected_rank:
            raise IncompatibleConfigError(
                f"modality '{self.name}' of kind '{self.kind}' needs a shape of rank "
                f"{expected_rank}, got {list(self.shape)}"
            )


def modality_specs(entries: Iterable[Mapping[str, Any]]) -> list[ModalitySpec]:
    """Build specs from the dataset config's ``modalities`` list."""
    specs = [
        ModalitySpec(str(e["name"]), str(e["kind"]), tuple(int(s) for s in e["shape"]))
        for e in entries
    ]
    names = [s.name for s in specs]
    if len(specs) < 2:
        raise IncompatibleConfigError(
            f"a multimodal dataset needs at least 2 modalities, the config lists {names}"
        )
    if len(set(names)) != len(names):
        raise IncompatibleConfigError(f"modality names must be unique, got {names}")
    return specs
