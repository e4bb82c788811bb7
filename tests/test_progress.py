"""Visible progress: start-up lines, a bar or periodic lines per epoch, job tags."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from mmbench.config_checks import ConfigValueError
from mmbench.progress import EpochProgress, resolve_mode
from mmbench.train import config_hash, fit
from mmbench.utils.job_tag import install_job_tag

TINY = [
    "trainer.limit_train_batches=3",
    "trainer.epochs=2",
    "trainer.batch_size=16",
    "dataset.build.val_per_class=5",
    "dataset.build.test_per_class=5",
]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_a_bar_on_a_terminal_outside_a_multirun_only() -> None:
    assert resolve_mode("auto", multirun=False, stream=Terminal()) == "bar"
    assert resolve_mode("auto", multirun=True, stream=Terminal()) == "log"
    assert resolve_mode("auto", multirun=False, stream=io.StringIO()) == "log"
    assert resolve_mode("off", multirun=False, stream=Terminal()) == "off"
    assert resolve_mode("bar", multirun=True, stream=io.StringIO()) == "bar"


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def test_log_mode_says_what_start_up_does_and_logs_steps(
    compose_cfg, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = compose_cfg([*TINY, "trainer.progress=log", "trainer.log_every_n_steps=1"])
    with caplog.at_level(logging.INFO):
        fit(cfg, tmp_path)
    lines = messages(caplog)
    assert "building dataset cgmnist_mini ..." in lines
    assert any(
        line.startswith("building model (convnet backbone, concat fusion)") for line in lines
    )
    assert any(
        line.startswith("loaded ") and " train / 50 val / 50 test samples in " in line
        for line in lines
    )
    assert any(
        line.startswith("training on ") and ": epochs 1-2 of 2, 3 steps each" in line
        for line in lines
    )
    steps = [line for line in lines if " steps/s" in line]
    # steps 1 and 2 of each epoch; step 3 is followed at once by the epoch line
    assert [line.split("  loss")[0] for line in steps] == [
        "epoch 1/2  step 1/3",
        "epoch 1/2  step 2/3",
        "epoch 2/2  step 1/3",
        "epoch 2/2  step 2/3",
    ]
    order = [i for i, line in enumerate(lines) if "building" in line or "steps/s" in line]
    assert order == sorted(order)


def test_log_mode_time_based_lines_only_after_log_every_s(
    compose_cfg, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = compose_cfg([*TINY, "trainer.progress=log", "trainer.log_every_s=3600"])
    with caplog.at_level(logging.INFO):
        fit(cfg, tmp_path)
    steps = [line for line in messages(caplog) if " steps/s" in line]
    assert [line.split("  loss")[0] for line in steps] == ["epoch 1/2  step 1/3"]


def test_bar_mode_draws_a_tqdm_bar_with_loss_and_steps_per_s(
    compose_cfg, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    fit(compose_cfg([*TINY, "trainer.progress=bar"]), tmp_path)
    err = capsys.readouterr().err
    assert "epoch 1/2" in err and "epoch 2/2" in err
    assert "3/3" in err and "step/s" in err and "loss=" in err


def test_off_mode_is_silent_during_epochs(
    compose_cfg, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        fit(compose_cfg([*TINY, "trainer.progress=off"]), tmp_path)
    assert not [line for line in messages(caplog) if " steps/s" in line]
    assert "step/s" not in capsys.readouterr().err


def test_mean_loss_is_sample_weighted() -> None:
    progress = EpochProgress("off", 0, 1, 2, 30.0, None)
    progress.update(1.0, 3)
    progress.update(3.0, 1)
    assert progress.mean_loss == pytest.approx((1.0 * 3 + 3.0 * 1) / 4)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("trainer.progress=fancy", "trainer.progress"),
        ("trainer.log_every_s=0", "trainer.log_every_s"),
        ("trainer.log_every_n_steps=0", "trainer.log_every_n_steps"),
    ],
)
def test_bad_progress_knob_refused_before_building(
    compose_cfg, tmp_path: Path, override: str, key: str
) -> None:
    with pytest.raises(ConfigValueError, match=rf"{key}=.*conf/trainer/default.yaml"):
        fit(compose_cfg([*TINY, override]), tmp_path)
    assert not any(tmp_path.iterdir())


def test_progress_knobs_do_not_change_the_run_identity(compose_cfg) -> None:
    base = config_hash(compose_cfg(TINY))
    changed = compose_cfg(
        [*TINY, "trainer.progress=off", "trainer.log_every_s=5", "trainer.log_every_n_steps=7"]
    )
    assert config_hash(changed) == base
    assert config_hash(compose_cfg([*TINY, "trainer.epochs=3"])) != base


def test_job_tag_prefixes_each_line_once_on_every_handler() -> None:
    parent = logging.getLogger("track_test_tag")
    parent.propagate = False
    streams = [io.StringIO(), io.StringIO()]
    handlers = [logging.StreamHandler(s) for s in streams]
    for handler in handlers:
        parent.addHandler(handler)
    try:
        install_job_tag("3_cgmnist_mini_mmpareto_s0", parent)
        install_job_tag("3_cgmnist_mini_mmpareto_s0", parent)  # a second job: replaced
        logging.getLogger("track_test_tag.child").warning("epoch %d/%d", 1, 2)
    finally:
        for handler in handlers:
            parent.removeHandler(handler)
    for stream in streams:
        assert stream.getvalue() == "[3_cgmnist_mini_mmpareto_s0] epoch 1/2\n"
