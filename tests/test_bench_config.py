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
    assert cfg.optim.optimizer.lr == 0.01 and cfg.trainer.epochs == 15


def test_bench_decays_the_lr_after_epoch_12_and_bench_all_keeps_its_protocol() -> None:
    """The lr decay that cut the paired std (docs/variance.md section 8) is on, stepped per
    epoch, and bench-all runs every strategy on the same optimiser and schedule."""
    import torch

    from mmbench.train import build_optimizer

    def composed(experiment: str):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(
                config_name="train",
                overrides=[f"experiment={experiment}"],
                return_hydra_config=True,
            )

    bench, bench_all = composed("bench"), composed("bench_all")
    assert bench.optim == bench_all.optim and bench.trainer == bench_all.trainer
    assert bench.hydra.sweeper.params == {
        "strategy": "one_joint_loss,uniform,mmpareto",
        "seed": "0,1,2,3,4,5",
    }
    assert "mgda," in bench_all.hydra.sweeper.params.strategy
    optimizer, scheduler = build_optimizer(bench, [torch.nn.Parameter(torch.zeros(1))])
    lrs = []
    for _ in range(15):
        lrs.append(optimizer.param_groups[0]["lr"])
        scheduler.step()
    assert lrs[:12] == [0.01] * 12
    assert lrs[12:] == pytest.approx([0.001] * 3)
