"""Leaderboard plots: valid PNG files, skipped (with a log line) when there is no data."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmbench.plots import cosine_curves, load_telemetry, moving_average, write_plots
from mmbench.results import load_runs, write_leaderboard

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def fake_run(root: Path, strategy: str, seed: int, acc: float, status: str = "completed") -> Path:
    run = root / f"{strategy}_{seed}"
    run.mkdir(parents=True)
    data = {
        "dataset": "cgmnist_mini",
        "backbone": "convnet",
        "fusion": "concat",
        "strategy": strategy,
        "optim": "sgd",
        "seed": seed,
        "epochs": 5,
        "status": status,
        "git_rev": "abc",
        "unimodal_heads_trained": True,
    }
    if status == "completed":
        data["protocols"] = {p: {"epoch": 1, "acc": acc, "map": acc} for p in ("paper", "last")}
    (run / "metrics.json").write_text(json.dumps(data))
    return run


def write_telemetry(run: Path, cos_shift: float, steps: int = 6) -> None:
    rows = [
        {
            "epoch": 0,
            "step": 10 * s,
            "encoder": enc,
            "cos": cos_shift + 0.01 * s,
            "norm_mm": 1.0,
            "norm_u": 1.0,
            "w_mm": 0.5,
            "w_u": 0.5,
        }
        for s in range(steps)
        for enc in ("gray", "color")
    ]
    pd.DataFrame(rows).to_csv(run / "telemetry.csv", index=False)


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    for seed in range(2):
        write_telemetry(fake_run(root, "uniform", seed, 0.6 + seed / 100), -0.2 + seed / 10)
        write_telemetry(fake_run(root, "mmpareto", seed, 0.7 + seed / 100), 0.1 + seed / 10)
    fake_run(root, "mgda", 0, 0.0, status="failed")
    return root


def is_png(path: Path) -> bool:
    return path.stat().st_size > len(PNG_SIGNATURE) and path.read_bytes()[:8] == PNG_SIGNATURE


def test_moving_average_by_hand() -> None:
    assert moving_average([1, 2, 3, 4], 2).tolist() == [1.0, 1.5, 2.5, 3.5]
    assert moving_average([1, 2, 3], 1).tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="width"):
        moving_average([1.0], 0)


def test_cosine_curves_mean_and_std_over_seeds(sweep: Path) -> None:
    telemetry = load_telemetry(load_runs([sweep]))
    assert set(telemetry["label"]) == {"uniform", "mmpareto"}  # the failed run has none
    curves = cosine_curves(telemetry, smooth=1)
    first = curves[(curves["label"] == "uniform") & (curves["encoder"] == "gray")].iloc[0]
    # seeds start at -0.2 and -0.1: mean -0.15, sample std 0.1 / sqrt 2
    assert first["step"] == 0 and first["count"] == 2
    assert first["mean"] == pytest.approx(-0.15) and first["std"] == pytest.approx(0.1 / np.sqrt(2))
    smoothed = cosine_curves(telemetry, smooth=3)
    last = smoothed[(smoothed["label"] == "uniform") & (smoothed["step"] == 50)].iloc[0]
    assert last["mean"] == pytest.approx(-0.15 + 0.04)  # mean of steps 30, 40, 50


def test_plots_are_valid_pngs(sweep: Path, tmp_path: Path) -> None:
    out = write_leaderboard([sweep], "plots", tmp_path / "boards", smooth=2)
    files = sorted(p.name for p in (out / "plots").iterdir())
    assert files == ["accuracy.png", "cosine.png"]
    assert all(is_png(out / "plots" / f) for f in files)


def test_no_telemetry_skips_cosine_plot_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "sweep"
    fake_run(root, "uniform", 0, 0.6)
    (fake_run(root, "mmpareto", 0, 0.7) / "telemetry.csv").write_text("")
    with caplog.at_level(logging.INFO, logger="mmbench.plots"):
        written = write_plots(load_runs([root]), tmp_path / "plots")
    assert [p.name for p in written] == ["accuracy.png"] and is_png(written[0])
    assert not (tmp_path / "plots" / "cosine.png").exists()
    assert "skipping the gradient-cosine plot" in caplog.text


def test_only_failed_runs_skip_every_plot(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fake_run(tmp_path / "sweep", "uniform", 0, 0.0, status="failed")
    with caplog.at_level(logging.INFO, logger="mmbench.plots"):
        assert write_plots(load_runs([tmp_path / "sweep"]), tmp_path / "plots") == []
    assert "skipping the accuracy plot" in caplog.text
