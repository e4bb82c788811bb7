"""Config values are checked before anything is built; each error names key, value, range."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mmbench.train import fit

BAD = [
    ("trainer.epochs=0", "trainer.epochs=0: must be an integer >= 1"),
    ("trainer.batch_size=0", "trainer.batch_size=0: must be an integer >= 1"),
    ("trainer.eval_batch_size=-1", "trainer.eval_batch_size=-1: must be an integer >= 1"),
    ("trainer.num_workers=-1", "trainer.num_workers=-1: must be an integer >= 0"),
    ("trainer.telemetry_every=-1", "trainer.telemetry_every=-1: must be an integer >= 0"),
    ("trainer.epochs=2.5", "trainer.epochs=2.5: must be an integer >= 1"),
    ("optim.optimizer.lr=0", "optim.optimizer.lr=0: must be a number > 0"),
    ("optim.optimizer.lr=-0.1", "optim.optimizer.lr=-0.1: must be a number > 0"),
    ("optim.optimizer.weight_decay=-1", "optim.optimizer.weight_decay=-1: must be a number >= 0"),
    ("dataset.build.val_per_class=-1", "dataset.build.val_per_class=-1: must be an integer >= 0"),
    ("seed=-3", "seed=-3: must be an integer >= 0"),
    ("strategy.method.gamma=-1", "strategy.method.gamma=-1: must be a number >= 0"),
    ("optimized_metric=best", "optimized_metric='best': must be <protocol>.<metric>"),
]


def no_building(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("something was built before the config was checked")

    monkeypatch.setattr("mmbench.train.instantiate", refuse)


@pytest.mark.parametrize(("override", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_value_fails_before_building_and_names_the_key(
    compose_cfg: Callable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, override, message
) -> None:
    cfg = compose_cfg([override])
    no_building(monkeypatch)
    with pytest.raises(ValueError) as error:
        fit(cfg, tmp_path)
    assert message in str(error.value)
    assert not any(tmp_path.iterdir())  # nothing written either


def test_every_problem_is_listed_at_once(compose_cfg: Callable, tmp_path: Path) -> None:
    from mmbench.config_checks import ConfigValueError, check_config

    with pytest.raises(ConfigValueError) as error:
        check_config(compose_cfg(["trainer.epochs=0", "trainer.batch_size=0"]))
    assert "trainer.epochs=0" in str(error.value) and "trainer.batch_size=0" in str(error.value)


@pytest.mark.parametrize(
    "overrides",
    [[], ["experiment=paper_cremad"], ["experiment=paper_cgmnist"], ["strategy=uniform"]],
)
def test_shipped_configs_pass(compose_cfg: Callable, overrides: list[str]) -> None:
    from mmbench.config_checks import check_config, check_optimized_metric

    cfg = compose_cfg(overrides)
    check_config(cfg)
    check_optimized_metric(cfg)  # the paper presets optimise a protocol that exists


def test_val_metric_needs_a_val_split(compose_cfg: Callable) -> None:
    from mmbench.config_checks import ConfigValueError, check_optimized_metric

    with pytest.raises(ConfigValueError) as error:
        check_optimized_metric(compose_cfg(["dataset.build.val_per_class=0"]))
    message = str(error.value)
    assert "optimized_metric=val.val_acc" in message
    assert "dataset.build.val_per_class=0" in message and "paper.acc" in message
    check_optimized_metric(
        compose_cfg(["dataset.build.val_per_class=0", "optimized_metric=last.acc"])
    )
    with pytest.raises(ConfigValueError, match="dataset.build.val_size=0"):
        check_optimized_metric(compose_cfg(["dataset=synthetic_av", "dataset.build.val_size=0"]))
