"""``logger=csv`` (the default): today's run directory files, nothing more.

history.csv (one row per epoch), telemetry.csv (one row per logged step and encoder) and
metrics.json are written by :class:`mmbench.engine.Engine` and :func:`mmbench.train.train`
whatever logger runs; they are the source of truth. This logger therefore writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


class CsvLogger:
    """A no-op: the engine already writes the CSV/JSON files into ``run_dir``."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """The config is already in ``run_dir/.hydra/config.yaml``."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Already in history.csv / telemetry.csv."""

    def log_artifact(self, path: Path) -> None:
        """The file already lies in ``run_dir``."""

    def close(self, status: str) -> None:
        """metrics.json carries the status."""
