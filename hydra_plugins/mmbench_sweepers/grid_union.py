"""A Hydra sweeper whose parameter space is a union of grids.

Hydra's basic sweeper runs one Cartesian product. A benchmark often wants different seed
counts per strategy (e.g. six seeds where a difference is small, three where it is large),
which no single product expresses. ``grids`` lists several products; each one is expanded
like the basic sweeper's ``params`` (``params`` is common to all grids, then the grid's own
keys, then the command line, a later value of a key replacing an earlier one), and the jobs
of all grids run as one batch of the launcher. A job that two grids produce (same overrides)
runs once, at its first position. With ``grids`` empty it is Hydra's basic sweeper.

    hydra:
      sweeper:
        grids:
          - {strategy: "uniform,mmpareto", seed: "0,1,2,3,4,5"}
          - {strategy: one_joint_loss, seed: "0,1,2"}

gives 15 jobs; ``strategy=mgda`` on the command line replaces the strategy of every grid
(6 jobs, seeds 0-5, after removing the repeats).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf


def union_of_grids(
    grids: Sequence[Mapping[str, Any]],
    common: Mapping[str, Any],
    arguments: Sequence[str],
    parser: OverridesParser,
) -> list[list[str]]:
    """The jobs (lists of overrides) of every grid, in grid order, each job once."""
    jobs: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()
    for index, grid in enumerate(grids):
        if not isinstance(grid, Mapping) or not grid:
            raise HydraException(
                f"hydra.sweeper.grids[{index}]: each grid is a mapping of key: values "
                f'(e.g. {{strategy: "uniform,mmpareto", seed: "0,1,2"}}), got {grid!r}'
            )
        lines = [f"{k}={v}" for k, v in {**common, **grid}.items()] + list(arguments)
        overrides = parser.parse_overrides(lines)
        for job in BasicSweeper.split_arguments(overrides, None)[0]:
            key = tuple(job)
            if key not in seen:
                seen.add(key)
                jobs.append(job)
    return jobs


class GridUnionSweeper(BasicSweeper):
    """Hydra's basic sweeper over a union of grids (module docstring)."""

    def __init__(
        self,
        max_batch_size: int | None = None,
        params: Mapping[str, str] | None = None,
        grids: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(max_batch_size, dict(params or {}))
        self.grids = list(grids or [])

    def sweep(self, arguments: list[str]) -> Any:
        if not self.grids:
            return super().sweep(arguments)
        assert self.config is not None and self.launcher is not None
        assert self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        jobs = union_of_grids(self.grids, self.params, arguments, parser)
        self.overrides = list(self.split_overrides_to_chunks(jobs, self.max_batch_size))
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        returns, first = [], 0
        while not self.is_done():
            batch = self.get_job_batch()
            self.validate_batch_is_legal(batch)
            results = self.launcher.launch(batch, initial_job_idx=first)
            for result in results:
                _ = result.return_value  # raises if the job failed
            first += len(batch)
            returns.append(results)
        return returns
