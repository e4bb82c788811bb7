"""Leaderboard plots (PNG, matplotlib's Agg canvas, no pyplot global state).

- ``accuracy.png``: test accuracy per strategy, one row of panels per dataset, one column
  per protocol (paper / val / last); bars = mean over seeds, error bars = sample std.
- ``cosine.png``: the per-encoder cosine between the multimodal and unimodal gradients
  over training (MMPareto's Figure 1(a) view), one panel per dataset x encoder, one line per
  strategy: each run's cosine is smoothed by a trailing moving average over ``smooth``
  logged steps, then averaged over seeds at each step; the band is mean ± std over seeds.

A bar or line is one value of the row axes: the strategy, then any other varying axis
(``mmpareto / film / gamma=1.5``: setting axes by their short name, absent ones omitted).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mmbench import sweep_axes

log = logging.getLogger(__name__)

PROTOCOLS = ("paper", "val", "last")


def save_png(figure: Figure, path: Path) -> Path:
    """Render ``figure`` with the Agg canvas and write it to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            figure.savefig(f, format="png", dpi=100)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def run_label(run: pd.Series, rows: Sequence[str]) -> str:
    """A run's row axes joined by ' / ': named axes by value, setting axes (dotted keys) as
    ``<short name>=<value>``, absent ones left out (``mmpareto / film / gamma=1.5``)."""
    names = sweep_axes.short_names([r for r in rows if "." in r])
    parts = []
    for row in rows:
        value = sweep_axes.display(run[row])
        if row not in names:
            parts.append(value)
        elif value != sweep_axes.ABSENT:
            parts.append(f"{names[row]}={value}")
    return " / ".join(parts)


def run_labels(frame: pd.DataFrame, rows: Sequence[str]) -> pd.Series:
    """Legend label of each run (:func:`run_label`)."""
    return frame.apply(lambda run: run_label(run, rows), axis=1).astype(str)


def moving_average(values: Sequence[float], width: int) -> np.ndarray:
    """Trailing moving average ``y_i = mean(x_{max(0, i-w+1)} .. x_i)`` (width 1: identity)."""
    if width < 1:
        raise ValueError(f"smoothing width must be >= 1, got {width}")
    return pd.Series(values, dtype=float).rolling(width, min_periods=1).mean().to_numpy()


def accuracy_plot(
    frame: pd.DataFrame, path: Path, rows: Sequence[str] = ("strategy",)
) -> Path | None:
    """Bars of mean test accuracy (± std over seeds) per strategy; None when nothing to plot."""
    done = frame[frame["status"] == "completed"].copy()
    protocols = [p for p in PROTOCOLS if f"{p}_acc" in done and done[f"{p}_acc"].notna().any()]
    if done.empty or not protocols:
        log.info("no completed run with a test accuracy; skipping the accuracy plot")
        return None
    done["label"] = run_labels(done, rows)
    labels = sorted(done["label"].unique())
    datasets = sorted(done["dataset"].dropna().unique())
    figure = Figure(
        figsize=(3.2 * len(protocols) + 0.4 * len(labels), 3.0 * len(datasets)),
        layout="constrained",
    )
    axes = figure.subplots(len(datasets), len(protocols), squeeze=False)
    for i, dataset in enumerate(datasets):
        part = done[done["dataset"] == dataset]
        for j, protocol in enumerate(protocols):
            values = pd.to_numeric(part[f"{protocol}_acc"], errors="coerce") * 100
            grouped = values.groupby(part["label"]).agg(["mean", "std", "count"])
            grouped = grouped.reindex(labels)
            ax = axes[i][j]
            x = np.arange(len(labels))
            colors = [f"C{k % 10}" for k in range(len(labels))]
            ax.bar(x, grouped["mean"], yerr=grouped["std"].fillna(0), capsize=3, color=colors)
            for k, count in enumerate(grouped["count"].fillna(0).astype(int)):
                ax.annotate(f"n={count}", (k, 0), ha="center", va="bottom", fontsize=7)
            ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
            ax.set_title(f"{dataset} · protocol {protocol}", fontsize=9)
            ax.set_ylabel("test accuracy (%)")
            ax.grid(axis="y", alpha=0.3)
    figure.suptitle("Test accuracy, mean ± std over seeds", fontsize=10)
    return save_png(figure, path)


def load_telemetry(frame: pd.DataFrame, rows: Sequence[str] = ("strategy",)) -> pd.DataFrame:
    """Every completed run's ``telemetry.csv`` with its dataset, label and run_dir attached."""
    parts = []
    for _, run in frame[frame["status"] == "completed"].iterrows():
        path = Path(run["run_dir"]) / "telemetry.csv"
        if not path.is_file() or path.stat().st_size == 0:
            continue
        try:
            tele = pd.read_csv(path, usecols=["step", "encoder", "cos"])
        except (ValueError, pd.errors.EmptyDataError):
            log.warning("%s: unreadable telemetry (no step/encoder/cos columns); skipped", path)
            continue
        tele = tele.dropna(subset=["cos"])
        if tele.empty:
            continue
        tele["dataset"] = run["dataset"]
        tele["label"] = run_label(run, rows)
        tele["run_dir"] = run["run_dir"]
        parts.append(tele)
    columns = ["step", "encoder", "cos", "dataset", "label", "run_dir"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def cosine_curves(telemetry: pd.DataFrame, smooth: int) -> pd.DataFrame:
    """Per (dataset, encoder, label, step): mean, std and n over runs of the smoothed cosine."""
    smoothed = []
    for _, run in telemetry.groupby(["run_dir", "encoder"], sort=False):
        run = run.sort_values("step").copy()
        run["cos"] = moving_average(run["cos"].to_numpy(), smooth)
        smoothed.append(run)
    data = pd.concat(smoothed, ignore_index=True)
    curves = data.groupby(["dataset", "encoder", "label", "step"])["cos"].agg(
        ["mean", "std", "count"]
    )
    return curves.reset_index()


def cosine_plot(
    frame: pd.DataFrame, path: Path, rows: Sequence[str] = ("strategy",), smooth: int = 5
) -> Path | None:
    """The gradient-cosine-over-training figure; None (logged) when no run has telemetry."""
    telemetry = load_telemetry(frame, rows)
    if telemetry.empty:
        log.info(
            "no completed run has a non-empty telemetry.csv (trainer.telemetry_every=0?); "
            "skipping the gradient-cosine plot %s",
            path,
        )
        return None
    curves = cosine_curves(telemetry, smooth)
    panels = list(curves[["dataset", "encoder"]].drop_duplicates().itertuples(index=False))
    columns = min(len(panels), 3)
    nrows = -(-len(panels) // columns)
    figure = Figure(figsize=(4.5 * columns, 3.2 * nrows), layout="constrained")
    axes = figure.subplots(nrows, columns, squeeze=False).ravel()
    labels = sorted(curves["label"].unique())
    colors = {name: f"C{k % 10}" for k, name in enumerate(labels)}
    for ax, (dataset, encoder) in zip(axes, panels, strict=False):
        panel = curves[(curves["dataset"] == dataset) & (curves["encoder"] == encoder)]
        for name, line in panel.groupby("label", sort=True):
            std = line["std"].fillna(0)
            runs = int(line["count"].max())
            ax.plot(
                line["step"],
                line["mean"],
                color=colors[name],
                marker="." if len(line) < 20 else None,
                label=f"{name} (n={runs})",
            )
            ax.fill_between(
                line["step"], line["mean"] - std, line["mean"] + std, color=colors[name], alpha=0.2
            )
        ax.axhline(0.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_title(f"{dataset} · encoder {encoder}", fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylabel("cos(g_multimodal, g_unimodal)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    figure.suptitle(
        f"Gradient cosine per encoder (moving average over {smooth} logged steps; "
        "band: ± std over seeds)",
        fontsize=10,
    )
    return save_png(figure, path)


def write_plots(
    frame: pd.DataFrame, out_dir: Path, rows: Sequence[str] = ("strategy",), smooth: int = 5
) -> list[Path]:
    """Write every plot that has data under ``out_dir``; returns the files written."""
    written = [
        accuracy_plot(frame, Path(out_dir) / "accuracy.png", rows),
        cosine_plot(frame, Path(out_dir) / "cosine.png", rows, smooth),
    ]
    return [p for p in written if p is not None]
