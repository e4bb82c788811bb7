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
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException


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
    """Hydra's basic sweeper over a union of grids (module docstring): its ``sweep`` runs as
    Hydra's, with the union's jobs in place of the one product it would build."""

    def __init__(
        self,
        max_batch_size: int | None = None,
        params: Mapping[str, str] | None = None,
        grids: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(max_batch_size, dict(params or {}))
        self.grids = list(grids or [])
        self.jobs: list[list[str]] = []

    def sweep(self, arguments: list[str]) -> Any:
        if self.grids:
            assert self.hydra_context is not None
            parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
            self.jobs = union_of_grids(self.grids, self.params, arguments, parser)
        return super().sweep(arguments)

    def split_arguments(  # type: ignore[override]  # BasicSweeper.sweep calls it on self
        self, overrides: list[Override], max_batch_size: int | None
    ) -> list[list[list[str]]]:
        """The batches of jobs: the union's, or the basic sweeper's one product."""
        if not self.grids:
            return BasicSweeper.split_arguments(overrides, max_batch_size)
        return list(self.split_overrides_to_chunks(self.jobs, max_batch_size))
