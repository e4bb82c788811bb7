"""The grid-union sweeper: the jobs of several grids, each once, through the real CLI."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from hydra_plugins.mmbench_sweepers.grid_union import union_of_grids
from tests.test_sweeps import sweep

PARSER = OverridesParser.create()
GRIDS = [
    {"strategy": "uniform,mmpareto", "seed": "0,1,2"},
    {"strategy": "one_joint_loss", "seed": "0,1"},
]


def test_union_expands_each_grid_in_order() -> None:
    jobs = union_of_grids(GRIDS, {}, [], PARSER)
    assert jobs == [
        ["strategy=uniform", "seed=0"],
        ["strategy=uniform", "seed=1"],
        ["strategy=uniform", "seed=2"],
        ["strategy=mmpareto", "seed=0"],
        ["strategy=mmpareto", "seed=1"],
        ["strategy=mmpareto", "seed=2"],
        ["strategy=one_joint_loss", "seed=0"],
        ["strategy=one_joint_loss", "seed=1"],
    ]


def test_command_line_replaces_a_key_in_every_grid_and_repeats_run_once() -> None:
    jobs = union_of_grids(GRIDS, {}, ["strategy=mgda", "trainer.epochs=2"], PARSER)
    assert jobs == [["strategy=mgda", f"seed={s}", "trainer.epochs=2"] for s in (0, 1, 2)]


def test_common_params_apply_to_every_grid_and_a_grid_overrides_them() -> None:
    jobs = union_of_grids(
        [{"seed": "0,1"}, {"seed": "5", "fusion": "film"}], {"fusion": "sum"}, [], PARSER
    )
    assert jobs == [
        ["fusion=sum", "seed=0"],
        ["fusion=sum", "seed=1"],
        ["fusion=film", "seed=5"],
    ]


def test_without_grids_it_is_the_basic_sweepers_product() -> None:
    # the classes as Hydra would instantiate them now: its plugin scan re-executes
    # hydra._internal.core_plugins.basic_sweeper and this module in place whenever a test
    # initialises Hydra in this process, so classes imported at collection may be stale
    basic = importlib.import_module("hydra._internal.core_plugins.basic_sweeper").BasicSweeper
    union = importlib.import_module("hydra_plugins.mmbench_sweepers.grid_union").GridUnionSweeper
    overrides = PARSER.parse_overrides(["strategy=uniform,mmpareto", "seed=0,1"])
    sweeper = union(max_batch_size=3)
    assert sweeper.split_arguments(overrides, 3) == basic.split_arguments(overrides, 3)
    assert [len(batch) for batch in sweeper.split_arguments(overrides, 3)] == [3, 1]


@pytest.mark.parametrize("grid", [{}, "strategy=uniform", None])
def test_a_grid_that_is_not_a_mapping_is_refused_with_its_index(grid) -> None:
    with pytest.raises(HydraException, match=r"hydra.sweeper.grids\[1\]"):
        union_of_grids([GRIDS[0], grid], {}, [], PARSER)


def test_sweep_runs_the_union_as_one_batch_and_collects(tmp_path: Path) -> None:
    sweep(
        tmp_path,
        "hydra/sweeper=grid_union",
        "hydra/launcher=parallel",
        "hydra.launcher.n_jobs=2",
        "+hydra.sweeper.grids=[{strategy: 'uniform,one_joint_loss', seed: '0,1'},"
        "{strategy: mmpareto, seed: '0'}]",
    )
    runs = [json.loads(p.read_text()) for p in (tmp_path / "outputs").rglob("metrics.json")]
    assert sorted((r["strategy"], r["seed"]) for r in runs) == [
        ("mmpareto", 0),
        ("one_joint_loss", 0),
        ("one_joint_loss", 1),
        ("uniform", 0),
        ("uniform", 1),
    ]
    assert all(r["status"] == "completed" for r in runs)
    board = tmp_path / "outputs" / "leaderboards" / "t" / "runs.csv"
    assert len(board.read_text().strip().splitlines()) == 1 + 5
