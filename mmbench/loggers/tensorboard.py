"""``logger=tensorboard``: scalars in TensorBoard event files under ``run_dir/<subdir>``.

View with ``tensorboard --logdir outputs``. Each metric is a scalar tag plotted against
the optimiser step; the composed config is one text summary (tag ``config``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmbench.loggers.base import import_backend


class TensorBoardLogger:
    """Writes with ``torch.utils.tensorboard.SummaryWriter`` (needs ``tensorboard``)."""

    def __init__(self, run_dir: Path, subdir: str = "tensorboard", flush_secs: int = 30) -> None:
        module = import_backend("torch.utils.tensorboard", "tensorboard", "tensorboard")
        self.log_dir = Path(run_dir) / subdir
        self.writer = module.SummaryWriter(log_dir=str(self.log_dir), flush_secs=flush_secs)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """The config as a two-column markdown table (TensorBoard's Text tab)."""
        rows = "\n".join(f"| {key} | {value} |" for key, value in params.items())
        self.writer.add_text("config", f"| key | value |\n|---|---|\n{rows}")

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, float(value), global_step=step)

    def log_artifact(self, path: Path) -> None:
        """TensorBoard has no artifact store: the file stays beside the event files."""

    def close(self, status: str) -> None:
        self.writer.add_text("status", status)
        self.writer.close()
