"""Leaderboard plots: their numbers (hand-made frames), their matplotlib content (chance
line, bands and "± std" only where n > 1, shared y range, epoch marks, distinct line styles,
axes of a one-step sweep) and valid PNG files, skipped (with a log line) without data."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mmbench.plots import (
    accuracy_figure,
    chance_levels,
    cosine_curves,
    cosine_figure,
    curves_figure,
    epoch_curves,
    line_styles,
    load_history,
    load_telemetry,
    marks,
    moving_average,
    write_plots,
)
from mmbench.results import load_runs, write_leaderboard

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def fake_run(
    root: Path,
    strategy: str,
    seed: int,
    acc: float,
    status: str = "completed",
    steps: int = 60,
    epochs: int = 2,
    num_classes: int | None = 10,
) -> Path:
    """A run directory: metrics.json (``steps`` optimizer steps over ``epochs`` epochs) and,
    unless ``num_classes`` is None, a .hydra/config.yaml recording that many classes."""
    run = root / f"{strategy}_{seed}"
    run.mkdir(parents=True)
    data = {
        "dataset": "cgmnist_mini",
        "backbone": "convnet",
        "fusion": "concat",
        "strategy": strategy,
        "optim": "sgd",
        "seed": seed,
        "epochs": epochs,
        "epochs_done": epochs,
        "status": status,
        "git_rev": "abc",
        "unimodal_heads_trained": True,
        "timing": {"steps": steps},
    }
    if status == "completed":
        data["protocols"] = {p: {"epoch": 1, "acc": acc, "map": acc} for p in ("paper", "last")}
    (run / "metrics.json").write_text(json.dumps(data))
    if num_classes is not None:
        (run / ".hydra").mkdir()
        (run / ".hydra" / "config.yaml").write_text(
            f"seed: {seed}\ndataset:\n  name: cgmnist_mini\n  num_classes: {num_classes}\n"
            f"strategy:\n  name: {strategy}\ntrainer:\n  epochs: {epochs}\n"
        )
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


def write_history(run: Path, final_acc: float, epochs: int = 2) -> None:
    """test_acc rises by 0.1 per epoch to ``final_acc`` at the last epoch."""
    rows = [
        {"epoch": e, "train_loss": 1.0, "test_acc": final_acc - 0.1 * (epochs - 1 - e)}
        for e in range(epochs)
    ]
    pd.DataFrame(rows).to_csv(run / "history.csv", index=False)


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """uniform and mmpareto over seeds 0, 1 (n = 2), mgda seed 0 only (n = 1), a failed run."""
    root = tmp_path / "sweep"
    for seed in range(2):
        for strategy, acc, shift in (("uniform", 0.6, -0.2), ("mmpareto", 0.7, 0.1)):
            run = fake_run(root, strategy, seed, acc + seed / 100)
            write_telemetry(run, shift + seed / 10)
            write_history(run, acc + seed / 100)
    run = fake_run(root, "mgda", 0, 0.5)
    write_telemetry(run, 0.0)
    write_history(run, 0.5)
    fake_run(root, "mgda", 1, 0.0, status="failed")
    return root


def chance_lines(ax: Axes) -> list[float]:
    """The y of every line labelled as a chance line in ``ax``."""
    return [
        float(line.get_ydata()[0])
        for line in ax.get_lines()
        if str(line.get_label()).startswith("chance")
    ]


def legend_texts(figure: Figure) -> list[str]:
    return [t.get_text() for legend in figure.legends for t in legend.get_texts()]


def is_png(path: Path) -> bool:
    return path.stat().st_size > len(PNG_SIGNATURE) and path.read_bytes()[:8] == PNG_SIGNATURE


def test_moving_average_by_hand() -> None:
    assert moving_average([1, 2, 3, 4], 2).tolist() == [1.0, 1.5, 2.5, 3.5]
    assert moving_average([1, 2, 3], 1).tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="width"):
        moving_average([1.0], 0)


def test_cosine_curves_mean_and_std_over_seeds(sweep: Path) -> None:
    telemetry = load_telemetry(load_runs([sweep]))
    assert set(telemetry["label"]) == {"uniform", "mmpareto", "mgda"}  # not the failed run
    curves = cosine_curves(telemetry, smooth=1)
    first = curves[(curves["label"] == "uniform") & (curves["encoder"] == "gray")].iloc[0]
    # seeds start at -0.2 and -0.1: mean -0.15, sample std 0.1 / sqrt 2
    assert first["step"] == 0 and first["count"] == 2
    assert first["mean"] == pytest.approx(-0.15) and first["std"] == pytest.approx(0.1 / np.sqrt(2))
    smoothed = cosine_curves(telemetry, smooth=3)
    last = smoothed[(smoothed["label"] == "uniform") & (smoothed["step"] == 50)].iloc[0]
    assert last["mean"] == pytest.approx(-0.15 + 0.04)  # mean of steps 30, 40, 50


def test_epoch_curves_by_hand() -> None:
    history = pd.DataFrame(
        {
            "dataset": ["d"] * 5,
            "label": ["a", "a", "a", "a", "b"],
            "run_dir": ["r0", "r0", "r1", "r1", "r2"],
            "epoch": [0, 1, 0, 1, 0],
            "test_acc": [0.2, 0.4, 0.4, 0.8, 0.5],
        }
    )
    curves = epoch_curves(history).set_index(["label", "epoch"])
    assert curves.loc[("a", 0), "mean"] == pytest.approx(0.3)
    assert curves.loc[("a", 1), "mean"] == pytest.approx(0.6)
    assert curves.loc[("a", 1), "std"] == pytest.approx(0.4 / np.sqrt(2))  # sample std
    assert curves.loc[("a", 0), "count"] == 2 and curves.loc[("b", 0), "count"] == 1
    assert np.isnan(curves.loc[("b", 0), "std"])


def test_load_history_reads_completed_runs_only(sweep: Path) -> None:
    history = load_history(load_runs([sweep]))
    assert sorted(history.columns) == ["dataset", "epoch", "label", "run_dir", "test_acc"]
    assert history.groupby("label")["run_dir"].nunique().to_dict() == {
        "mgda": 1,
        "mmpareto": 2,
        "uniform": 2,
    }
    last = history[(history["label"] == "uniform") & (history["epoch"] == 1)]["test_acc"]
    assert sorted(last) == pytest.approx([0.6, 0.61])


def test_chance_level_is_one_over_num_classes_of_the_config(tmp_path: Path) -> None:
    fake_run(tmp_path / "ten", "uniform", 0, 0.5, num_classes=10)
    assert chance_levels(load_runs([tmp_path / "ten"])) == {"cgmnist_mini": pytest.approx(0.1)}
    fake_run(tmp_path / "bare", "uniform", 0, 0.5, num_classes=None)  # no .hydra/config.yaml
    assert chance_levels(load_runs([tmp_path / "bare"])) == {}
    fake_run(tmp_path / "mixed", "uniform", 0, 0.5, num_classes=10)
    fake_run(tmp_path / "mixed", "uniform", 1, 0.5, num_classes=6)
    assert chance_levels(load_runs([tmp_path / "mixed"])) == {}


def test_accuracy_bars_chance_line_and_error_bars_only_where_n_above_one(sweep: Path) -> None:
    figure = accuracy_figure(load_runs([sweep]))
    assert figure is not None
    axes = [ax for ax in figure.axes if ax.get_visible()]
    assert len(axes) == 2  # protocols paper and last
    for ax in axes:
        assert chance_lines(ax) == [pytest.approx(10.0)]
        bars = [p.get_height() for p in ax.patches]
        assert bars == pytest.approx([50.0, 70.5, 60.5])  # mgda, mmpareto, uniform
        (errors,) = [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
        segments = errors.lines[2][0].get_segments()
        assert len(segments) == 2  # mgda (n = 1) has no error bar
        assert sorted(float(s[0][0]) for s in segments) == [1.0, 2.0]
    assert axes[0].get_ylim() == axes[1].get_ylim()
    assert "± std over seeds (where n > 1)" in figure.get_suptitle()


def test_curves_mean_band_chance_and_legend(sweep: Path) -> None:
    figure = curves_figure(load_runs([sweep]))
    assert figure is not None
    (ax,) = [ax for ax in figure.axes if ax.get_visible()]
    lines = {str(line.get_label()): line for line in ax.get_lines()}
    uniform = lines["uniform (n=2)"]
    assert list(uniform.get_xdata()) == [1, 2]  # epochs trained = history epoch + 1
    assert list(uniform.get_ydata()) == pytest.approx([50.5, 60.5])
    assert chance_lines(ax) == [pytest.approx(10.0)]
    assert len(ax.collections) == 2  # bands of uniform and mmpareto, none for mgda (n = 1)
    assert legend_texts(figure) == [
        "mgda (n=1)",
        "mmpareto (n=2)",
        "uniform (n=2)",
        "chance (1/10)",
    ]
    assert "band = ± std over seeds (where n > 1)" in figure.get_suptitle()


def test_cosine_shared_y_epoch_marks_and_distinct_styles(sweep: Path) -> None:
    figure = cosine_figure(load_runs([sweep]), smooth=1)
    assert figure is not None
    axes = [ax for ax in figure.axes if ax.get_visible() and ax.get_title()]
    assert sorted(ax.get_title() for ax in axes) == [
        "cgmnist_mini · encoder color",
        "cgmnist_mini · encoder gray",
    ]
    assert axes[0].get_shared_y_axes().joined(axes[0], axes[1])
    assert axes[0].get_ylim() == axes[1].get_ylim()
    for ax in axes:
        (top,) = ax.child_axes  # 60 steps over 2 epochs: S = 30
        assert list(top.get_xticks()) == [0, 1, 2]
        verticals = [
            float(line.get_xdata()[0]) for line in ax.get_lines() if line.get_linestyle() == ":"
        ]
        assert verticals == [0.0, 30.0, 60.0]
        left, right = ax.get_xlim()
        assert left < 0 and right > 60
        looks = {
            (line.get_color(), line.get_linestyle(), line.get_marker()): line.get_linewidth()
            for line in ax.get_lines()
            if str(line.get_label()).split(" (")[0] in ("mgda", "mmpareto", "uniform")
        }
        assert len(looks) == 3
        widths = list(looks.values())
        assert widths == sorted(widths, reverse=True)  # later lines thinner, drawn on top
    assert "± std over seeds (where n > 1)" in figure.get_suptitle()


def test_single_seed_shows_no_band_and_no_std(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    for strategy, acc in (("uniform", 0.6), ("mmpareto", 0.7)):
        run = fake_run(root, strategy, 0, acc)
        write_telemetry(run, acc - 0.5)
        write_history(run, acc)
    frame = load_runs([root])
    for figure in (accuracy_figure(frame), curves_figure(frame), cosine_figure(frame)):
        assert figure is not None
        assert "std" not in figure.get_suptitle() and "n = 1" in figure.get_suptitle()
        for ax in figure.axes:
            assert not ax.collections  # no band, no error bar


def test_one_step_sweep_has_integer_axes_around_the_step(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    for strategy in ("uniform", "mmpareto"):
        run = fake_run(root, strategy, 0, 0.2, steps=1, epochs=1)
        write_telemetry(run, 0.3, steps=1)  # one logged step: step 0
        write_history(run, 0.2, epochs=1)
    frame = load_runs([root])
    cosine = cosine_figure(frame)
    assert cosine is not None
    for ax in (ax for ax in cosine.axes if ax.get_title()):
        left, right = ax.get_xlim()
        assert left <= -0.5 and right >= 1.5  # the step and the epoch end, not a 0-wide axis
        ticks = [t for t in ax.get_xticks() if left <= t <= right]
        assert ticks == [0, 1]
        assert list(ax.child_axes[0].get_xticks()) == [0, 1]
    curves = curves_figure(frame)
    assert curves is not None
    (ax,) = [ax for ax in curves.axes if ax.get_visible()]
    assert ax.get_xlim() == (0.5, 1.5)
    assert [t for t in ax.get_xticks() if 0.5 <= t <= 1.5] == [1]


def test_line_styles_distinct_and_markers_staggered() -> None:
    labels = [f"s{k}" for k in range(40)]
    styles = line_styles(labels)
    assert len({tuple(s.values()) for s in styles.values()}) == 40
    assert len({(s["color"], s["marker"]) for s in styles.values()}) == 40
    assert marks(80, 0) == (0, 10) and marks(80, 3) == (3, 10) and marks(5, 3) == (0, 1)


def test_plots_are_valid_pngs(sweep: Path, tmp_path: Path) -> None:
    out = write_leaderboard([sweep], "plots", tmp_path / "boards", smooth=2)
    files = sorted(p.name for p in (out / "plots").iterdir())
    assert files == ["accuracy.png", "cosine.png", "curves.png"]
    assert all(is_png(out / "plots" / f) for f in files)


def test_no_history_skips_curves_plot_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "sweep"
    write_telemetry(fake_run(root, "uniform", 0, 0.6), 0.1)
    with caplog.at_level(logging.INFO, logger="mmbench.plots"):
        written = write_plots(load_runs([root]), tmp_path / "plots")
    assert [p.name for p in written] == ["accuracy.png", "cosine.png"]
    assert "skipping the curves plot" in caplog.text


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
