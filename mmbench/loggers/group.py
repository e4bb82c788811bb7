"""Several loggers as one, built from the ``logger`` config group."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mmbench.loggers.base import ExperimentLogger, MissingBackendError


class LoggerGroup:
    """Fans every call out to each logger in order; closes all even if one fails."""

    def __init__(self, loggers: list[ExperimentLogger]) -> None:
        self.loggers = loggers

    def log_params(self, params: Mapping[str, Any]) -> None:
        for logger in self.loggers:
            logger.log_params(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for logger in self.loggers:
            logger.log_metrics(metrics, step)

    def log_artifact(self, path: Path) -> None:
        for logger in self.loggers:
            logger.log_artifact(path)

    def close(self, status: str) -> None:
        errors = []
        for logger in self.loggers:
            try:
                logger.close(status)
            except Exception as error:  # close the others before reporting it
                errors.append(error)
        if errors:
            raise errors[0]


def build_logger(node: DictConfig | None, run_dir: Path) -> LoggerGroup:
    """``logger`` config (``{name: {_target_: ...}}`` or null) -> one :class:`LoggerGroup`.

    Each backend receives ``run_dir``; a missing backend library raises
    :class:`~mmbench.loggers.base.MissingBackendError` naming its pip package.
    """
    if node is None:
        return LoggerGroup([])
    if not isinstance(node, DictConfig) or any(
        not isinstance(entry, DictConfig) or "_target_" not in entry for entry in node.values()
    ):
        raise ValueError(
            f"logger: expected a mapping name -> {{_target_: ...}} (conf/logger/*.yaml), got "
            f"{OmegaConf.to_container(node) if isinstance(node, DictConfig) else node!r}; "
            "choose a preset such as logger=csv, logger=tensorboard or logger=many_loggers"
        )
    loggers = []
    try:
        for entry in node.values():
            loggers.append(instantiate(entry, run_dir=run_dir))
    except BaseException as error:
        LoggerGroup(loggers).close("failed")
        if isinstance(error, InstantiationException) and isinstance(
            error.__cause__, MissingBackendError
        ):
            raise error.__cause__ from None
        raise
    return LoggerGroup(loggers)
