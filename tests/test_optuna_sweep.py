"""``hparams_search=mmpareto_optuna``: an Optuna sweep (hydra-optuna-sweeper) on the
validation accuracy (val.val_acc), never on test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")

TINY = ["trainer=debug", "dataset.build.val_per_class=5", "dataset.build.test_per_class=5"]


def test_two_trial_optuna_sweep_returns_validation_acc_and_collects(tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    cmd = [
        sys.executable,
        "-m",
        "mmbench.cli",
        "train",
        "-m",
        "hparams_search=mmpareto_optuna",
        "hydra.sweeper.n_trials=2",
        *TINY,
        f"paths.output_dir={out}",
        "leaderboard.name=optuna",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (sweep_dir,) = (out / "multirun").iterdir()
    trials = sorted(p for p in sweep_dir.iterdir() if p.is_dir())
    assert [p.name for p in trials] == ["0_cgmnist_mini_mmpareto_s0", "1_cgmnist_mini_mmpareto_s0"]
    values = []
    for trial in trials:
        overrides = dict(
            o.split("=", 1) for o in yaml.safe_load((trial / ".hydra/overrides.yaml").read_text())
        )
        assert 1.0 <= float(overrides["strategy.method.gamma"]) <= 2.5
        assert 0.0005 <= float(overrides["optim.optimizer.lr"]) <= 0.02
        summary = json.loads((trial / "metrics.json").read_text())
        assert summary["status"] == "completed" and summary["strategy"] == "mmpareto"
        values.append(summary["protocols"]["val"]["val_acc"])
        # every line of a job carries its tag; a multirun gets log lines, not a bar
        assert f"[{trial.name}] building dataset cgmnist_mini ..." in result.stdout
        assert f"[{trial.name}] epoch 1/1  step 1/3  loss " in result.stdout
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert best["name"] == "optuna" and best["best_value"] == pytest.approx(max(values))
    assert set(best["best_params"]) == {"strategy.method.gamma", "optim.optimizer.lr"}
    runs = out / "leaderboards" / "optuna" / "runs.csv"
    if runs.is_file():  # the multirun-end callback collected the trials
        assert len(pd.read_csv(runs)) == 2
    else:  # collection is attempted and its failure reported with the command to run
        assert "leaderboard not written" in result.stdout + result.stderr
