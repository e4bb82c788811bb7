"""Multirun sweeps through the real CLI: launchers, failures, resume, leaderboards."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd

TINY = ["trainer=debug", "dataset.build.val_per_class=10", "dataset.build.test_per_class=20"]


def sweep(tmp_path: Path, *overrides: str, name: str = "t") -> subprocess.CompletedProcess:
    """Run ``mmbench train -m`` in a subprocess, outputs under tmp_path."""
    cmd = [
        sys.executable,
        "-m",
        "mmbench.cli",
        "train",
        "-m",
        *TINY,
        f"paths.output_dir={tmp_path / 'outputs'}",
        f"leaderboard.name={name}",
        *overrides,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def metrics(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("metrics.json"))]


def test_parallel_sweep_two_strategies_two_seeds(tmp_path: Path) -> None:
    result = sweep(
        tmp_path,
        "hydra/launcher=parallel",
        "hydra.launcher.n_jobs=2",
        "strategy=uniform,mmpareto",
        "seed=0,1",
    )
    runs = metrics(tmp_path / "outputs" / "multirun")
    assert len(runs) == 4 and all(r["status"] == "completed" for r in runs)
    assert {(r["strategy"], r["seed"]) for r in runs} == {
        (s, k) for s in ("uniform", "mmpareto") for k in (0, 1)
    }
    board = pd.read_csv(tmp_path / "outputs" / "leaderboards" / "t" / "runs.csv")
    assert len(board) == 4
    assert "| mmpareto |" in result.stdout  # the callback printed the leaderboard


def test_failing_job_is_recorded_and_marked(tmp_path: Path) -> None:
    sweep(tmp_path, "strategy=mmpareto", "dataset.build.val_per_class=10,600")
    runs = metrics(tmp_path / "outputs" / "multirun")
    failed = [r for r in runs if r["status"] == "failed"]
    assert len(runs) == 2 and len(failed) == 1
    assert "too few" in failed[0]["error"] and failed[0]["strategy"] == "mmpareto"
    text = (tmp_path / "outputs" / "leaderboards" / "t" / "leaderboard.md").read_text()
    assert "failed" in text


def test_interrupted_sweep_resumes_and_skips_finished_jobs(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "outputs" / "multirun" / "resumable"
    common = ["strategy=mmpareto", "seed=0,1", "trainer.epochs=2", f"hydra.sweep.dir={sweep_dir}"]
    sweep(tmp_path, *common, "trainer.stop_after_epochs=1")
    first = metrics(sweep_dir)
    assert [r["status"] for r in first] == ["interrupted", "interrupted"]
    sweep(tmp_path, *common)
    resumed = metrics(sweep_dir)
    assert [r["status"] for r in resumed] == ["completed", "completed"]
    for run in sweep_dir.glob("*_s*"):
        assert list(pd.read_csv(run / "history.csv")["epoch"]) == [0, 1]
        assert "resumed from" in (run / "train.log").read_text()
    sweep(tmp_path, *common)
    assert metrics(sweep_dir) == resumed  # finished jobs are skipped, not redone


def test_gpu_pool_gives_each_job_its_own_gpu(tmp_path: Path) -> None:
    sweep(
        tmp_path,
        "hydra/launcher=gpus",
        "hydra.launcher.gpus=[0,1]",
        "trainer.device=cpu",
        "strategy=uniform,mmpareto",
        "seed=0,1",
    )
    runs = metrics(tmp_path / "outputs" / "multirun")
    assert len(runs) == 4 and all(r["status"] == "completed" for r in runs)
    assert {r["cuda_visible_devices"] for r in runs} <= {"0", "1"}
    spans = [
        (datetime.fromisoformat(r["started_at"]), datetime.fromisoformat(r["finished_at"]))
        for r in runs
    ]
    for start, _ in spans:  # never more jobs at once than GPU slots
        assert sum(s <= start < e for s, e in spans) <= 2
