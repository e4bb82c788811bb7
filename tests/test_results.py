"""Collecting run directories into leaderboards."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mmbench.cli import main as cli_main
from mmbench.results import load_runs, write_leaderboard


def fake_run(root: Path, strategy: str, seed: int, acc: float, status: str = "completed",
             dataset: str = "cgmnist_mini") -> Path:
    run = root / f"{dataset}_{strategy}_{seed}"
    run.mkdir(parents=True)
    data = {"dataset": dataset, "backbone": "convnet", "fusion": "concat", "strategy": strategy,
            "optim": "sgd", "seed": seed, "epochs": 5, "status": status, "git_rev": "abc",
            "config_hash": f"h{strategy}{seed}"}
    if status == "completed":
        heads = strategy != "one_joint_loss"
        data.update({
            "unimodal_heads_trained": heads,
            "protocols": {p: {"epoch": 3, "acc": acc + d, "map": acc, "acc_gray": 0.5 if heads
                              else None, "acc_color": 0.9 if heads else None}
                          for p, d in (("paper", 0.02), ("val", 0.0), ("last", -0.01))},
            "conflict": {"gray": {"mean_cos": 0.1, "conflict_rate": 0.2, "steps": 10}},
            "timing": {"ms_per_step": 10.0 + seed, "samples_per_s": 100.0, "wall_s": 1.0},
            "peak_memory_mb": 100.0,
        })
    else:
        data["error"] = "ValueError: bad input"
    (run / "metrics.json").write_text(json.dumps(data))
    return run


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    for seed, (u, m) in enumerate([(0.60, 0.70), (0.62, 0.74), (0.58, 0.72)]):
        fake_run(root, "uniform", seed, u)
        fake_run(root, "mmpareto", seed, m)
        fake_run(root, "one_joint_loss", seed, 0.5)
    fake_run(root, "mgda", 0, 0.0, status="failed")
    fake_run(root, "mgda", 1, 0.65)
    return root


def test_runs_frame_is_tidy(sweep: Path) -> None:
    frame = load_runs([sweep])
    assert len(frame) == 11
    assert {"strategy", "seed", "status", "paper_acc", "val_acc_gray", "cos_gray",
            "ms_per_step", "git_rev", "config_hash"} <= set(frame.columns)
    failed = frame[frame["status"] == "failed"]
    assert len(failed) == 1 and failed.iloc[0]["error"] == "ValueError: bad input"


def test_leaderboard_mean_std_n(sweep: Path, tmp_path: Path) -> None:
    out = write_leaderboard([sweep], "t", tmp_path / "boards")
    board = pd.read_csv(out / "leaderboard.csv").set_index("strategy")
    assert board.loc["mmpareto", "cgmnist_mini/val_acc_mean"] == pytest.approx(0.72)
    assert board.loc["mmpareto", "cgmnist_mini/val_acc_std"] == pytest.approx(0.02)
    assert board.loc["mmpareto", "cgmnist_mini/n"] == 3
    assert board.loc["mgda", "cgmnist_mini/n"] == 1 and board.loc["mgda", "cgmnist_mini/failed"] == 1
    text = (out / "leaderboard.md").read_text()
    assert "| mmpareto | 3 | 74.00 ± 2.00 |" in text
    assert "1 (1 failed)" in text
    one_joint = next(line for line in text.splitlines() if line.startswith("| one_joint_loss"))
    assert "untrained" in one_joint
    assert len(pd.read_csv(out / "runs.csv")) == 11


def test_collect_cli_and_errors(sweep: Path, tmp_path: Path, capsys) -> None:
    assert cli_main(["collect", str(sweep), "--name", "cli", "--out", str(tmp_path / "b")]) == 0
    assert "| uniform |" in capsys.readouterr().out
    assert cli_main(["collect", str(tmp_path / "missing"), "--name", "x"]) == 2
    assert "missing: no such run" in capsys.readouterr().err
    (sweep / "uniform_broken").mkdir()
    (sweep / "uniform_broken" / "metrics.json").write_text("{not json")
    assert cli_main(["collect", str(sweep), "--name", "y", "--out", str(tmp_path / "b")]) == 2
    assert "not valid JSON" in capsys.readouterr().err
