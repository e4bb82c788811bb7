"""Hydra callbacks: a multirun collects its own leaderboard when it ends."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mmbench.results import write_leaderboard

log = logging.getLogger(__name__)


class CollectLeaderboard(Callback):
    """On multirun end: collect the sweep directory into ``leaderboard.dir/<name>/``."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        name = config.leaderboard.name or sweep_dir.name
        out = write_leaderboard([sweep_dir], name, Path(config.leaderboard.dir))
        print((out / "leaderboard.md").read_text(), flush=True)
        log.info("leaderboard written to %s", out)
