"""experiment=bench and its launcher: one job per usable CPU, and out of the way of others.

Kept apart from test_compose.py, whose module-scoped fixture holds a Hydra initialisation.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parent.parent / "conf"


@pytest.mark.parametrize("launcher", ["slurm", "gpus", "local"])
def test_bench_yields_to_a_launcher_given_on_the_command_line(launcher: str) -> None:
    """experiment=bench picks the parallel launcher without setting its keys, so another
    launcher replaces it whole (an n_jobs set by the experiment broke hydra/launcher=slurm)."""
    import mmbench.resolvers  # noqa: F401  (registers mmbench.usable_cpus)

    def launcher_node(overrides: list[str]) -> dict:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
        return OmegaConf.to_container(cfg.hydra.launcher, resolve=False)  # uid differs

    chosen = launcher_node([f"hydra/launcher={launcher}"])
    assert launcher_node(["experiment=bench", f"hydra/launcher={launcher}"]) == chosen


def test_bench_runs_one_job_per_usable_cpu() -> None:
    import mmbench.resolvers  # noqa: F401
    from mmbench.utils.cpus import usable_cpus

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=bench"], return_hydra_config=True)
    assert "JoblibLauncher" in cfg.hydra.launcher._target_
    assert cfg.hydra.launcher.n_jobs == usable_cpus()
    assert cfg.optim.optimizer.lr == 0.01 and cfg.trainer.epochs == 8
    assert cfg.trainer.batch_size == 32 and cfg.trainer.eval_from_epoch == 6


def test_bench_decays_the_lr_after_epoch_6_and_bench_all_keeps_its_protocol() -> None:
    """The lr decay that cut the paired std (docs/variance.md sections 8 and 10) is on,
    stepped per epoch; bench-all runs every strategy on the same optimiser, schedule and
    trainer, and bench_full keeps the 15-epoch protocol of earlier leaderboards."""
    import torch

    from mmbench.train import build_optimizer

    def composed(experiment: str):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(
                config_name="train",
                overrides=[f"experiment={experiment}"],
                return_hydra_config=True,
            )

    bench, bench_all, full = composed("bench"), composed("bench_all"), composed("bench_full")
    assert bench.optim == bench_all.optim and bench.trainer == bench_all.trainer
    assert "GridUnionSweeper" in bench.hydra.sweeper._target_
    assert bench.hydra.sweeper.grids == [
        {"strategy": "mmpareto,uniform", "seed": "0,1,2,3,4,5"},
        {"strategy": "one_joint_loss", "seed": "0,1,2,3"},
    ]
    (catalogue,) = bench_all.hydra.sweeper.grids
    listed = {s.strip() for s in catalogue.strategy.split(",")}
    assert listed == {p.stem for p in (CONF / "strategy").glob("*.yaml")}
    assert catalogue.seed == "0,1,2"

    def lrs(cfg, epochs: int) -> list[float]:
        optimizer, scheduler = build_optimizer(cfg, [torch.nn.Parameter(torch.zeros(1))])
        out = []
        for _ in range(epochs):
            out.append(optimizer.param_groups[0]["lr"])
            scheduler.step()
        return out

    assert lrs(bench, 8) == pytest.approx([0.01] * 6 + [0.001] * 2)
    assert (full.trainer.epochs, full.trainer.batch_size, full.trainer.eval_from_epoch) == (
        15,
        64,
        1,
    )
    assert lrs(full, 15) == pytest.approx([0.01] * 12 + [0.001] * 3)
    assert full.hydra.sweeper.grids == [
        {"strategy": "one_joint_loss,uniform,mmpareto", "seed": "0,1,2,3,4,5"}
    ]
