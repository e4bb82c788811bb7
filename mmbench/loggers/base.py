"""The logger protocol the engine talks to, and helpers shared by the backends."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

STATUSES = ("completed", "failed", "interrupted")


class MissingBackendError(ImportError):
    """A chosen logger backend whose library is not installed."""


class ExperimentLogger(Protocol):
    """What a run reports: its config once, metrics at global steps, files, an end status."""

    def log_params(self, params: Mapping[str, Any]) -> None:
        """The composed config, flattened to ``{"dotted.key": value}``."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Scalars at optimiser step ``step`` (monotone over the run)."""

    def log_artifact(self, path: Path) -> None:
        """A file of the run directory (metrics.json, history.csv, ...)."""

    def close(self, status: str) -> None:
        """End the run with ``status`` in :data:`STATUSES`."""


def import_backend(module: str, package: str, logger_name: str) -> ModuleType:
    """``import module`` or fail naming the pip package and the ``logger=`` choice."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingBackendError(
            f"logger={logger_name} needs the '{package}' package, which is not installed: "
            f"pip install {package} (or choose another logger, e.g. logger=csv)"
        ) from error


def flatten(node: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and scalars are kept as leaves."""
    flat: dict[str, Any] = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
