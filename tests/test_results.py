"""Collecting run directories into leaderboards."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf
from scipy import stats as sps

from mmbench.callbacks import CollectLeaderboard
from mmbench.cli import main as cli_main
from mmbench.results import MixedRunsError, load_runs, write_leaderboard


def fake_run(
    root: Path,
    strategy: str,
    seed: int,
    acc: float,
    status: str = "completed",
    dataset: str = "cgmnist_mini",
    git_rev: str | None = "abc",
    epochs: int = 5,
    config: dict[str, Any] | None = None,
    name: str | None = None,
) -> Path:
    run = root / (name or f"{dataset}_{strategy}_{seed}")
    run.mkdir(parents=True)
    data = {
        "dataset": dataset,
        "backbone": "convnet",
        "fusion": "concat",
        "strategy": strategy,
        "optim": "sgd",
        "seed": seed,
        "epochs": epochs,
        "status": status,
        "git_rev": git_rev,
        "config_hash": f"h{strategy}{seed}",
    }
    if status == "completed":
        heads = strategy != "one_joint_loss"
        data.update(
            {
                "unimodal_heads_trained": heads,
                "protocols": {
                    p: {
                        "epoch": 3,
                        "acc": acc + d,
                        "map": acc,
                        "acc_gray": 0.5 if heads else None,
                        "acc_color": 0.9 if heads else None,
                    }
                    for p, d in (("paper", 0.02), ("val", 0.0), ("last", -0.01))
                },
                "conflict": {"gray": {"mean_cos": 0.1, "conflict_rate": 0.2, "steps": 10}},
                "timing": {"ms_per_step": 10.0 + seed, "samples_per_s": 100.0, "wall_s": 1.0},
                "peak_memory_mb": 100.0,
            }
        )
    else:
        data["error"] = "ValueError: bad input" if status == "failed" else "Interrupted: stop"
    (run / "metrics.json").write_text(json.dumps(data))
    if config is not None:
        (run / ".hydra").mkdir()
        (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": seed, **config}))
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
    fake_run(root, "mgda", 2, 0.0, status="interrupted")
    return root


def test_runs_frame_is_tidy(sweep: Path) -> None:
    frame = load_runs([sweep])
    assert len(frame) == 12
    assert {
        "run_dir",
        "strategy",
        "seed",
        "epochs",
        "status",
        "error",
        "paper_acc",
        "val_acc_gray",
        "last_acc_color",
        "cos_gray",
        "conflict_rate_gray",
        "ms_per_step",
        "git_rev",
        "config_hash",
        "setup_hash",
    } <= set(frame.columns)
    failed = frame[frame["status"] == "failed"]
    assert len(failed) == 1 and failed.iloc[0]["error"] == "ValueError: bad input"
    assert all(Path(d).is_dir() for d in frame["run_dir"])


def test_leaderboard_mean_std_n(sweep: Path, tmp_path: Path) -> None:
    out = write_leaderboard([sweep], "t", tmp_path / "boards")
    board = pd.read_csv(out / "leaderboard.csv").set_index("strategy")
    assert board.loc["mmpareto", "cgmnist_mini/val_acc_mean"] == pytest.approx(0.72)
    assert board.loc["mmpareto", "cgmnist_mini/val_acc_std"] == pytest.approx(0.02)
    assert board.loc["mmpareto", "cgmnist_mini/n"] == 3
    mgda = board.loc["mgda"]
    assert mgda["cgmnist_mini/n"] == 1 and mgda["cgmnist_mini/failed"] == 1
    assert mgda["cgmnist_mini/interrupted"] == 1
    text = (out / "leaderboard.md").read_text()
    for protocol in ("paper", "val", "last"):
        assert f"## Protocol `{protocol}`" in text
        assert f"cgmnist_mini · {protocol} acc |" in text
    # best paper accuracy (74%) is bold; failed and interrupted runs are counted, not dropped
    assert "| mmpareto | 3 | **74.00 ± 2.00** |" in text
    assert "| mgda | 1 (1 failed, 1 interrupted) |" in text
    one_joint = next(line for line in text.splitlines() if line.startswith("| one_joint_loss"))
    assert "untrained" in one_joint
    assert len(pd.read_csv(out / "runs.csv")) == 12
    assert (out / "plots" / "accuracy.png").stat().st_size > 0


def test_best_cell_ties_and_lower_is_better(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    fake_run(root, "uniform", 0, 0.70)
    fake_run(root, "mmpareto", 0, 0.70)
    fake_run(root, "mgda", 0, 0.60)
    text = (
        write_leaderboard([root], "tie", tmp_path / "b", plot=False) / "leaderboard.md"
    ).read_text()
    paper = text.split("## Protocol `paper`")[1].split("##")[0]
    assert "| mmpareto | 1 | **72.00** |" in paper and "| uniform | 1 | **72.00** |" in paper
    assert "| mgda | 1 | 62.00 |" in paper
    cost = text.split("## Gradient conflict and cost")[1].split("##")[0]
    # ms/step 10.0 for every seed-0 run: all tied; cosine has no better direction
    assert cost.count("**10.0**") == 3 and "**0.100**" not in cost


def test_paired_comparison_against_uniform(sweep: Path, tmp_path: Path) -> None:
    out = write_leaderboard([sweep], "cmp", tmp_path / "b", plot=False)
    table = pd.read_csv(out / "comparison.csv")
    row = table[(table["strategy"] == "mmpareto") & (table["metric"] == "val_acc")].iloc[0]
    assert row["n_pairs"] == 3 and row["mean_diff"] == pytest.approx(0.12)
    assert row["std_diff"] == pytest.approx(0.02)
    p = sps.ttest_rel([0.70, 0.74, 0.72], [0.60, 0.62, 0.58]).pvalue
    assert row["p_value"] == pytest.approx(p)
    assert row["t_low"] < 0.12 < row["t_high"]
    mgda = table[(table["strategy"] == "mgda") & (table["metric"] == "paper_acc")].iloc[0]
    assert mgda["n_pairs"] == 1  # failed/interrupted seeds have no pair
    text = (out / "leaderboard.md").read_text()
    assert "## Paired comparison against `uniform`" in text
    assert "| cgmnist_mini | mmpareto | val acc | 3 | +12.00 ± 2.00 |" in text
    # MDD = λ* s / sqrt 3 with λ* = 5.6535 (noncentral t, 2 df, 80 % power): 6.53 points
    assert row["mdd"] == pytest.approx(5.65349 * 0.02 / 3**0.5, rel=1e-5)
    val = next(line for line in text.splitlines() if "| mmpareto | val acc |" in line)
    assert val.endswith("| 6.53 |")
    one_pair = next(line for line in text.splitlines() if "| mgda | paper acc |" in line)
    assert one_pair.endswith("| — | n < 2 |") and "MDD (points)" in text


def test_mixed_revisions_refused_unless_allowed(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    fake_run(root, "uniform", 0, 0.6, git_rev="abc")
    fake_run(root, "uniform", 1, 0.6, git_rev="abc-dirty")
    fake_run(root, "uniform", 2, 0.6, git_rev=None)
    fake_run(root, "mmpareto", 0, 0.7, git_rev="abc")
    with pytest.raises(MixedRunsError) as caught:
        write_leaderboard([root], "mix", tmp_path / "b")
    message = str(caught.value)
    assert "cell strategy=uniform, dataset=cgmnist_mini" in message
    assert "abc (1 run, seed 0); abc-dirty (1 run, seed 1); unknown (1 run, seed 2)" in message
    assert "mmpareto" not in message  # that cell is homogeneous
    assert message.rstrip().endswith("--allow-mixed") and "mmbench collect" in message
    out = write_leaderboard([root], "mix", tmp_path / "b", allow_mixed=True, plot=False)
    text = (out / "leaderboard.md").read_text()
    assert "Pooled despite differences (--allow-mixed)" in text and "abc-dirty" in text


def test_config_differences_become_axes_not_pooled(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    fake_run(root, "uniform", 0, 0.6, epochs=5)
    fake_run(root, "uniform", 1, 0.6, epochs=12)
    out = write_leaderboard([root], "ep", tmp_path / "b", plot=False)
    board = pd.read_csv(out / "leaderboard.csv")
    assert board[["strategy", "trainer.epochs", "cgmnist_mini/n"]].values.tolist() == [
        ["uniform", 5, 1],
        ["uniform", 12, 1],
    ]
    assert "| strategy | epochs | cgmnist_mini · n |" in (out / "leaderboard.md").read_text()
    hydra_root = tmp_path / "hydra"

    def config(lr: float, workers: int) -> dict[str, Any]:
        return {
            "optim": {"name": "sgd", "optimizer": {"lr": lr}},
            "trainer": {"epochs": 5, "num_workers": workers},
            "paths": {"data_dir": f"/machine{workers}"},
        }

    fake_run(hydra_root, "uniform", 0, 0.6, config=config(0.1, 0))
    fake_run(hydra_root, "uniform", 1, 0.6, config=config(0.1, 4))  # loader knob: ignored
    out = write_leaderboard([hydra_root], "ok", tmp_path / "b", plot=False)
    assert "optim.optimizer.lr" not in pd.read_csv(out / "leaderboard.csv")
    fake_run(hydra_root, "uniform", 2, 0.6, config=config(0.02, 0))
    out = write_leaderboard([hydra_root], "lr", tmp_path / "b", plot=False)
    board = pd.read_csv(out / "leaderboard.csv")
    assert board[["optim.optimizer.lr", "cgmnist_mini/n"]].values.tolist() == [[0.02, 1], [0.1, 2]]


def test_cross_sweep_merge_dedupes(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    fake_run(a, "uniform", 0, 0.6)
    fake_run(a, "mmpareto", 0, 0.7)
    fake_run(b, "uniform", 1, 0.62)
    fake_run(b, "mmpareto", 1, 0.74)
    nested = a / "cgmnist_mini_uniform_0"
    out = write_leaderboard(
        [a, b, nested, tmp_path / "a" / ".." / "a"], "x", tmp_path / "o", plot=False
    )
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 4 and runs["run_dir"].is_unique
    board = pd.read_csv(out / "leaderboard.csv").set_index("strategy")
    assert board.loc["mmpareto", "cgmnist_mini/n"] == 2


def test_same_seed_twice_in_a_cell_refused(tmp_path: Path) -> None:
    fake_run(tmp_path / "a", "uniform", 0, 0.6)
    fake_run(tmp_path / "b", "uniform", 0, 0.6)
    with pytest.raises(MixedRunsError, match="seed 0 appears in 2 runs"):
        write_leaderboard([tmp_path / "a", tmp_path / "b"], "dup", tmp_path / "o")


def test_killed_job_without_metrics_is_counted_as_missing(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    fake_run(root, "uniform", 0, 0.6)
    axes = {"dataset": "cgmnist_mini", "backbone": "convnet", "fusion": "concat"}
    axes.update(strategy="uniform", optim="sgd")
    config = {"seed": 1, "trainer": {"epochs": 5}, **{k: {"name": v} for k, v in axes.items()}}
    (root / "killed" / ".hydra").mkdir(parents=True)
    (root / "killed" / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    out = write_leaderboard([root], "k", tmp_path / "b", plot=False)
    runs = pd.read_csv(out / "runs.csv").set_index("seed")
    assert runs.loc[1, "status"] == "missing" and "killed" in runs.loc[1, "error"]
    assert "| uniform | 1 (1 missing) |" in (out / "leaderboard.md").read_text()


def test_collect_cli_and_errors(sweep: Path, tmp_path: Path, capsys) -> None:
    assert cli_main(["collect", str(sweep), "--name", "cli", "--out", str(tmp_path / "b")]) == 0
    assert "| uniform |" in capsys.readouterr().out
    assert cli_main(["collect", str(tmp_path / "missing"), "--name", "x"]) == 2
    assert "missing: no such run" in capsys.readouterr().err
    fake_run(sweep, "uniform", 9, 0.6, git_rev="other", name="rerun")
    assert cli_main(["collect", str(sweep), "--name", "m", "--out", str(tmp_path / "b")]) == 2
    assert "--allow-mixed" in capsys.readouterr().err
    args = ["collect", str(sweep), "--name", "m", "--out", str(tmp_path / "b"), "--allow-mixed"]
    assert cli_main(args) == 0


def test_corrupt_metrics_is_listed_as_unreadable_and_collect_goes_on(
    sweep: Path, tmp_path: Path, capsys
) -> None:
    broken = sweep / "uniform_broken"
    broken.mkdir()
    (broken / "metrics.json").write_text('{"status": "compl')  # truncated write
    axes = {"dataset": "cgmnist_mini", "backbone": "convnet", "fusion": "concat"}
    axes.update(strategy="uniform", optim="sgd")
    config = {"seed": 7, "trainer": {"epochs": 5}, **{k: {"name": v} for k, v in axes.items()}}
    (broken / ".hydra").mkdir()
    (broken / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    orphan = sweep / "orphan"
    orphan.mkdir()
    (orphan / "metrics.json").write_bytes(b"\xff\xfe")
    assert cli_main(["collect", str(sweep), "--name", "y", "--out", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    runs = pd.read_csv(tmp_path / "b" / "y" / "runs.csv").set_index("run_dir")
    for run in (broken, orphan):
        row = runs.loc[str(run.resolve())]
        assert row["status"] == "unreadable"
        assert str(run.resolve() / "metrics.json") in row["error"]
    assert runs.loc[str(broken.resolve()), "seed"] == 7  # identity from .hydra/config.yaml
    text = (tmp_path / "b" / "y" / "leaderboard.md").read_text()
    assert "| uniform | 3 (1 unreadable) |" in text
    assert "## Unreadable runs" in text
    assert f"- `{orphan.resolve()}`: {orphan.resolve() / 'metrics.json'}: unreadable" in text
    board = pd.read_csv(tmp_path / "b" / "y" / "leaderboard.csv").set_index("strategy")
    assert board.loc["uniform", "cgmnist_mini/n"] == 3
    assert board.loc["uniform", "cgmnist_mini/unreadable"] == 1


def test_no_val_split_is_reported_not_a_number(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    for seed in (0, 1):
        for strategy, acc in (("uniform", 0.6), ("mmpareto", 0.7)):
            run = fake_run(root, strategy, seed, acc + seed / 100, dataset="cremad")
            data = json.loads((run / "metrics.json").read_text())
            data["protocols"]["val"] = None
            if seed == 0:  # new summaries name the reason; older ones only wrote null
                data["unavailable_protocols"] = {"val": "no val split"}
            (run / "metrics.json").write_text(json.dumps(data))
    fake_run(root, "uniform", 0, 0.5)
    out = write_leaderboard([root], "nv", tmp_path / "b", plot=False)
    runs = pd.read_csv(out / "runs.csv")
    cremad = runs[runs["dataset"] == "cremad"]
    assert (cremad["unavailable_protocols"] == "val: no val split").all()
    assert cremad["val_acc"].isna().all() and cremad["paper_acc"].notna().all()
    assert runs.loc[runs["dataset"] == "cgmnist_mini", "unavailable_protocols"].isna().all()
    text = (out / "leaderboard.md").read_text()
    val = text.split("## Protocol `val`")[1].split("## ")[0]
    unavailable = " | ".join(["no val split"] * 4)  # acc, MAP, acc[gray], acc[color]
    assert f"| mmpareto | — | — | — | — | — | 2 | {unavailable} |" in val
    assert (
        f"| uniform | 1 | **50.00** | **50.00** | **50.00** | **90.00** | 2 | {unavailable} |"
        in val
    )
    assert "nan" not in text.lower()
    board = pd.read_csv(out / "leaderboard.csv").set_index("strategy")
    assert board.loc["mmpareto", "cremad/val_unavailable"] == "no val split"


def callback_config(sweep: Path, out: Path) -> Any:
    return OmegaConf.create(
        {"hydra": {"sweep": {"dir": str(sweep)}}, "leaderboard": {"name": "cb", "dir": str(out)}}
    )


def test_callback_collects_and_never_fails_the_sweep(
    sweep: Path, tmp_path: Path, capsys, caplog
) -> None:
    CollectLeaderboard().on_multirun_end(callback_config(sweep, tmp_path / "b"))
    assert "## Protocol `paper`" in capsys.readouterr().out
    assert (tmp_path / "b" / "cb" / "leaderboard.md").is_file()
    fake_run(sweep, "uniform", 9, 0.6, git_rev="other", name="rerun")
    with caplog.at_level(logging.ERROR, logger="mmbench.callbacks"):
        CollectLeaderboard().on_multirun_end(callback_config(sweep, tmp_path / "c"))
    assert "leaderboard not written: refusing to pool" in caplog.text
    assert f"mmbench collect {sweep} --name cb --out {tmp_path / 'c'} --allow-mixed" in caplog.text
    assert not (tmp_path / "c" / "cb").exists()
