"""Hydra callbacks: a multirun collects its own leaderboard when it ends."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mmbench.results import collect_command, write_leaderboard

log = logging.getLogger(__name__)


class CollectLeaderboard(Callback):
    """On multirun end: collect the sweep directory into ``leaderboard.dir/<name>/``.

    Collection never fails the sweep: on any error it logs the reason and the
    ``mmbench collect`` command to run by hand.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        name = config.leaderboard.name or sweep_dir.name
        out_root = Path(config.leaderboard.dir)
        smooth = int(config.leaderboard.get("smooth", 5) or 5)
        try:
            out = write_leaderboard([sweep_dir], name, out_root, smooth=smooth)
        except Exception as error:  # the sweep's runs are done; a collector bug must not fail it
            log.error(
                "leaderboard not written: %s\nCollect by hand (after checking the reason):\n  %s",
                error,
                collect_command([sweep_dir], name, out_root, allow_mixed=True),
            )
            return
        print((out / "leaderboard.md").read_text(), flush=True)
        log.info("leaderboard written to %s", out)
