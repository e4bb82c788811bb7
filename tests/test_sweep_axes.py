"""Every swept (or otherwise differing) config key is a leaderboard axis, never pooled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from mmbench.plots import run_labels
from mmbench.results import MixedRunsError, load_runs, write_leaderboard
from mmbench.stats import minimum_detectable_difference
from mmbench.sweep_axes import setting_axes, short_names

STRATEGY_KNOBS = {
    "uniform": {"w_mm": 1.0, "w_u": 1.0},
    "mmpareto": {"gamma": 1.5, "rescale": "tensor"},
}


def hydra_run(
    root: Path,
    strategy: str,
    seed: int,
    acc: float,
    knobs: dict[str, Any] | None = None,
    lr: float = 0.002,
    git_rev: str = "abc",
    overrides: list[str] | None = None,
    name: str | None = None,
) -> Path:
    """A finished run dir: .hydra/config.yaml + overrides.yaml + metrics.json."""
    run = root / (name or f"{strategy}_{seed}_{json.dumps(knobs or {}, sort_keys=True)}")
    (run / ".hydra").mkdir(parents=True)
    method = {**STRATEGY_KNOBS[strategy], **(knobs or {})}
    config = {
        "seed": seed,
        "dataset": {"name": "cgmnist_mini"},
        "backbone": {"name": "convnet"},
        "fusion": {"name": "concat"},
        "strategy": {"name": strategy, "method": method},
        "optim": {"name": "sgd", "optimizer": {"lr": lr}},
        "trainer": {"epochs": 5},
    }
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides or []))
    data = {
        "dataset": "cgmnist_mini",
        "backbone": "convnet",
        "fusion": "concat",
        "strategy": strategy,
        "optim": "sgd",
        "seed": seed,
        "epochs": 5,
        "status": "completed",
        "git_rev": git_rev,
        "unimodal_heads_trained": True,
        "overrides": overrides or [],
        "protocols": {p: {"epoch": 3, "acc": acc, "map": acc} for p in ("paper", "last")},
    }
    (run / "metrics.json").write_text(json.dumps(data))
    return run


UNIFORM = {0: 0.60, 1: 0.64}
MMPARETO = {(1.0, 0): 0.62, (1.0, 1): 0.70, (1.5, 0): 0.66, (1.5, 1): 0.68}


@pytest.fixture
def gamma_sweep(tmp_path: Path) -> Path:
    """``-m strategy=mmpareto strategy.method.gamma=1.0,1.5 seed=0,1`` plus uniform seeds."""
    root = tmp_path / "multirun"
    for (gamma, seed), acc in MMPARETO.items():
        overrides = ["strategy=mmpareto", f"strategy.method.gamma={gamma}", f"seed={seed}"]
        hydra_run(root, "mmpareto", seed, acc, {"gamma": gamma}, overrides=overrides)
    for seed, acc in UNIFORM.items():
        hydra_run(root, "uniform", seed, acc, overrides=["strategy=uniform", f"seed={seed}"])
    return root


def test_gamma_by_seed_sweep_gives_a_leaderboard_with_gamma_axis(
    gamma_sweep: Path, tmp_path: Path
) -> None:
    out = write_leaderboard([gamma_sweep], "g", tmp_path / "b", plot=False)
    board = pd.read_csv(out / "leaderboard.csv")
    rows = board[["strategy", "strategy.method.gamma", "cgmnist_mini/n"]]
    assert rows.astype(object).fillna("absent").values.tolist() == [
        ["mmpareto", 1.0, 2],
        ["mmpareto", 1.5, 2],
        ["uniform", "absent", 2],
    ]
    mean = board.set_index("strategy.method.gamma")["cgmnist_mini/paper_acc_mean"]
    assert mean[1.0] == pytest.approx(0.66) and mean[1.5] == pytest.approx(0.67)
    text = (out / "leaderboard.md").read_text()
    assert "| strategy | gamma | cgmnist_mini · n | cgmnist_mini · paper acc |" in text
    assert "| mmpareto | 1.0 | 2 | 66.00 ± 5.66 |" in text
    assert "| uniform | — | 2 | 62.00 ± 2.83 |" in text
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(runs["strategy.method.gamma"].dropna()) == [1.0, 1.0, 1.5, 1.5]


def test_each_gamma_is_paired_with_the_same_uniform_runs(gamma_sweep: Path, tmp_path: Path) -> None:
    out = write_leaderboard([gamma_sweep], "g", tmp_path / "b", plot=False)
    table = pd.read_csv(out / "comparison.csv")
    paper = table[table["metric"] == "paper_acc"].set_index("strategy.method.gamma")
    assert list(paper.index) == [1.0, 1.5] and (paper["baseline"] == "uniform").all()
    assert (paper["n_pairs"] == 2).all()
    # gamma 1.0: 0.62-0.60, 0.70-0.64 -> 0.02, 0.06; gamma 1.5: 0.06, 0.04
    assert paper.loc[1.0, "mean_diff"] == pytest.approx(0.04)
    assert paper.loc[1.5, "mean_diff"] == pytest.approx(0.05)
    assert "baseline[strategy.method.gamma]" not in table  # uniform has no gamma
    # MDD from the observed std (0.02*sqrt 2 for gamma 1.0, 0.01*sqrt 2 for 1.5) and n = 2
    assert paper.loc[1.0, "mdd"] == pytest.approx(minimum_detectable_difference(0.02 * 2**0.5, 2))
    text = (out / "leaderboard.md").read_text()
    assert "| dataset | strategy | gamma | metric | n pairs |" in text
    assert "| cgmnist_mini | mmpareto | 1.5 | paper acc | 2 | +5.00 ± 1.41 |" in text
    assert "every value is compared with the same `uniform` runs" in text


def test_allow_mixed_pools_revisions_never_settings(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    hydra_run(root, "mmpareto", 0, 0.60, {"gamma": 1.0}, git_rev="abc")
    hydra_run(root, "mmpareto", 0, 0.70, {"gamma": 1.5}, git_rev="abc")  # same seed, other gamma
    hydra_run(root, "mmpareto", 1, 0.72, {"gamma": 1.5}, git_rev="def")  # other revision
    with pytest.raises(MixedRunsError) as caught:
        write_leaderboard([root], "m", tmp_path / "b", plot=False)
    message = str(caught.value)
    assert "strategy.method.gamma=1.5" in message and "abc (1 run, seed 0); def" in message
    assert "gamma=1.0" not in message and "seed 0 appears" not in message
    out = write_leaderboard([root], "m", tmp_path / "b", allow_mixed=True, plot=False)
    board = pd.read_csv(out / "leaderboard.csv").set_index("strategy.method.gamma")
    assert board["cgmnist_mini/n"].to_dict() == {1.0: 1, 1.5: 2}


def test_differing_defaults_of_two_sweeps_are_axes_and_never_paired(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"  # two sweeps, the default lr changed in between
    for seed in (0, 1):
        hydra_run(a, "uniform", seed, 0.60 + seed / 100, lr=0.01)
        hydra_run(b, "uniform", seed, 0.50 + seed / 100, lr=0.002)
        hydra_run(b, "mmpareto", seed, 0.55 + seed / 50, lr=0.002)
    out = write_leaderboard([a, b], "lr", tmp_path / "o", plot=False)
    board = pd.read_csv(out / "leaderboard.csv")
    assert board[["strategy", "optim.optimizer.lr"]].values.tolist() == [
        ["mmpareto", 0.002],
        ["uniform", 0.002],
        ["uniform", 0.01],
    ]
    assert "| strategy | lr | cgmnist_mini · n |" in (out / "leaderboard.md").read_text()
    table = pd.read_csv(out / "comparison.csv")
    paper = table[table["metric"] == "paper_acc"]
    assert paper["optim.optimizer.lr"].tolist() == [0.002]  # paired only with lr 0.002
    assert paper["mean_diff"].tolist() == pytest.approx([0.055])


def test_swept_baseline_knob_makes_separate_baselines(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for seed in (0, 1):
        hydra_run(root, "uniform", seed, 0.60, {"w_u": 1.0})
        hydra_run(root, "uniform", seed, 0.50, {"w_u": 0.5})
        hydra_run(root, "mmpareto", seed, 0.65 + seed / 100)
    out = write_leaderboard([root], "w", tmp_path / "o", plot=False)
    table = pd.read_csv(out / "comparison.csv")
    paper = table[table["metric"] == "paper_acc"].set_index("baseline[strategy.method.w_u]")
    assert paper["mean_diff"].to_dict() == pytest.approx({0.5: 0.155, 1.0: 0.055})
    text = (out / "leaderboard.md").read_text()
    assert "| cgmnist_mini | mmpareto | — | uniform (w_u=0.5) | paper acc | 2 |" in text


def test_short_headers_and_plot_labels(gamma_sweep: Path) -> None:
    names = short_names(["strategy.method.gamma", "optim.scheduler.gamma", "trainer.epochs"])
    assert names == {
        "strategy.method.gamma": "method.gamma",
        "optim.scheduler.gamma": "scheduler.gamma",
        "trainer.epochs": "epochs",
    }
    assert short_names(["strategy.name.x"], reserved={"x"}) == {"strategy.name.x": "name.x"}
    frame = load_runs([gamma_sweep])
    labels = set(run_labels(frame, ["strategy", "strategy.method.gamma"]))
    assert labels == {"mmpareto / gamma=1.0", "mmpareto / gamma=1.5", "uniform"}


def test_keys_fixed_by_the_group_choice_or_unrecorded_are_not_axes() -> None:
    setups = [
        {"strategy.name": "uniform", "strategy.method.w_u": 1.0, "trainer.epochs": 5},
        {"strategy.name": "mgda", "strategy.method.rtol": None, "trainer.epochs": 5},
        {"trainer.epochs": 5},  # no .hydra/config.yaml: other keys unknown, not different
    ]
    groups = pd.DataFrame({"strategy": ["uniform", "mgda", "uniform"]})
    assert setting_axes(setups, groups, [True, True, False]) == []
    assert setting_axes(setups, groups, [True, True, True]) == [
        "strategy.method.w_u",
        "strategy.name",
    ]
    setups[2]["trainer.epochs"] = 9
    assert setting_axes(setups, groups, [True, True, False]) == ["trainer.epochs"]


def test_a_knob_added_by_a_code_change_is_not_a_setting_axis() -> None:
    """Runs of an older revision lack a key the newer one added: unknown, not different;
    within one revision a run without the key still differs."""
    setups = [
        {"dataset.name": "cgmnist_mini", "trainer.epochs": 9},
        {"dataset.name": "cgmnist_mini", "dataset.sgd_lr": 0.02, "trainer.epochs": 9},
        {"dataset.name": "cgmnist_mini", "dataset.sgd_lr": 0.02, "trainer.epochs": 9},
    ]
    groups = pd.DataFrame({"dataset": ["cgmnist_mini"] * 3})
    assert setting_axes(setups, groups, [True] * 3, revisions=["old", "new", "new"]) == []
    assert setting_axes(setups, groups, [True] * 3, revisions=["new", "new", "new"]) == [
        "dataset.sgd_lr"
    ]
    setups[2]["dataset.sgd_lr"] = 0.05  # two values within the revision that has the key
    assert setting_axes(setups, groups, [True] * 3, revisions=["old", "new", "new"]) == [
        "dataset.sgd_lr"
    ]
