"""Clear errors for a missing or incomplete prepared dataset root."""

from __future__ import annotations

from pathlib import Path


class PreparedDataMissingError(FileNotFoundError):
    """The prepared layout of a dataset is absent or incomplete (message says how to fix)."""


def prepare_hint(dataset: str) -> str:
    return (
        f"Prepare it once with:  mmbench prepare {dataset} --raw RAW --out PREPARED  "
        f"(RAW: the downloaded dataset; see README 'Datasets'), then train with "
        f"paths.data_dir=PREPARED (the data is read from PREPARED/{dataset})."
    )


def require_path(path: Path, dataset: str, what: str) -> Path:
    """Return ``path`` if it exists, else raise naming it and the prepare command."""
    if not path.exists():
        raise PreparedDataMissingError(
            f"{dataset}: {what} not found at {path}. {prepare_hint(dataset)}"
        )
    return path
