"""``logger=mlflow``: a run in a local MLflow tracking store (SQLite by default).

The default store is ``sqlite:///<paths.output_dir>/mlflow.db`` with artifacts under
``<paths.output_dir>/mlartifacts`` (MLflow 3 keeps its ``file:`` store in maintenance
mode and refuses new ones, hence SQLite). View with
``mlflow ui --backend-store-uri sqlite:///outputs/mlflow.db``. A relative SQLite path is
made absolute (the store does not depend on the working directory), and the store's
first creation is serialised with a file lock so parallel jobs of a sweep can share it.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mmbench.loggers.base import import_backend

SQLITE = "sqlite:///"
END_STATUS = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
# MLflow's limits (mlflow/utils/validation.py in mlflow-skinny 3.17.2): a param value is at
# most MAX_PARAM_VAL_LENGTH = 6000 characters, a log_batch call holds at most
# MAX_PARAMS_TAGS_PER_BATCH = 100 params.
PARAM_VALUE_MAX = 6000
BATCH = 100


def absolute_uri(tracking_uri: str) -> tuple[str, Path | None]:
    """``sqlite:///rel/x.db`` -> ``sqlite:////abs/rel/x.db`` and the database path."""
    if not tracking_uri.startswith(SQLITE):
        return tracking_uri, None
    path = Path(tracking_uri[len(SQLITE) :]).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"{SQLITE}{path}", path


@contextmanager
def store_lock(db: Path | None) -> Iterator[None]:
    """An exclusive lock on ``<db>.lock`` (nothing for non-SQLite stores)."""
    if db is None:
        yield
        return
    with open(db.with_name(db.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class MlflowLogger:
    """Talks to the store with ``MlflowClient`` only (no global active run)."""

    def __init__(
        self,
        run_dir: Path,
        tracking_uri: str,
        experiment_name: str = "mmbench",
        artifact_location: str | None = None,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        tracking = import_backend("mlflow.tracking", "mlflow-skinny", "mlflow")
        self.entities = import_backend("mlflow.entities", "mlflow-skinny", "mlflow")
        self.tracking_uri, db = absolute_uri(str(tracking_uri))
        artifacts = None
        if artifact_location:
            artifacts = Path(artifact_location).expanduser().resolve().as_uri()
        with store_lock(db):
            self.client = tracking.MlflowClient(tracking_uri=self.tracking_uri)
            experiment = self.client.get_experiment_by_name(experiment_name)
            experiment_id = (
                experiment.experiment_id
                if experiment is not None
                else self.client.create_experiment(experiment_name, artifact_location=artifacts)
            )
        self.run_id = self.client.create_run(
            experiment_id,
            run_name=run_name or Path(run_dir).name,
            tags={"mmbench.run_dir": str(Path(run_dir).resolve()), **dict(tags or {})},
        ).info.run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        items = [
            self.entities.Param(key, str(value)[:PARAM_VALUE_MAX]) for key, value in params.items()
        ]
        for start in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, params=items[start : start + BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        items = [
            self.entities.Metric(key, float(value), now, step) for key, value in metrics.items()
        ]
        for start in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, metrics=items[start : start + BATCH])

    def log_artifact(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, END_STATUS.get(status, "FAILED"))
