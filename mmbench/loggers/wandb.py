"""``logger=wandb``: a Weights & Biases run, offline by default, under ``run_dir/wandb/``.

Offline mode (``mode: offline``) needs no account or network; ``wandb sync
<run_dir>/wandb/offline-run-*`` uploads a run later. Metrics go to ``run.log`` at the
optimiser step, the config to ``run.config``, artifacts are saved into the run's files.

``close`` ends the run and then ``wandb.teardown()``: ``run.finish()`` can return before
wandb's core process has flushed the ``.wandb`` file (a loaded CI machine read it with
no history records), and wandb's own atexit flush is not reliable in worker processes
of a parallel launcher. Teardown waits for the flush; the next run starts a new service.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmbench.loggers.base import import_backend


class WandbLogger:
    """One ``wandb.init(dir=run_dir, mode=mode)`` run (needs the ``wandb`` package)."""

    def __init__(
        self,
        run_dir: Path,
        project: str = "mmbench",
        mode: str = "offline",
        name: str | None = None,
        group: str | None = None,
        tags: list[str] | None = None,
        console: str = "off",
    ) -> None:
        wandb = import_backend("wandb", "wandb", "wandb")
        self.wandb = wandb
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            dir=str(self.run_dir),
            project=project,
            mode=mode,
            name=name or self.run_dir.name,
            group=group,
            tags=list(tags or []),
            settings=wandb.Settings(console=console),
            reinit="create_new",
        )

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.run.config.update(dict(params), allow_val_change=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.run.log({key: float(value) for key, value in metrics.items()}, step=step)

    def log_artifact(self, path: Path) -> None:
        path = Path(path).resolve()
        self.run.save(str(path), base_path=str(path.parent), policy="now")

    def close(self, status: str) -> None:
        self.run.summary["status"] = status
        self.run.finish(exit_code=0 if status == "completed" else 1)
        self.wandb.teardown()
