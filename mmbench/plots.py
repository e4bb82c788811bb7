"""Leaderboard plots (PNG, matplotlib's Agg canvas, no pyplot global state).

- ``accuracy.png``: test accuracy per row, one row of panels per dataset, one column per
  protocol (paper / val / last); bar = mean over seeds, error bar = ± sample std (only where
  n > 1); dashed line = chance, ``100 / C`` % for C = ``dataset.num_classes`` of the runs.
- ``curves.png``: test accuracy after each epoch (``history.csv``'s ``test_acc``), one panel
  per dataset, one line per row: the mean over seeds at each epoch, band = mean ± std (only
  where n > 1); x = epochs trained (history ``epoch`` + 1); dashed line = chance.
- ``cosine.png``: the per-encoder cosine between the multimodal and unimodal gradients
  over training (MMPareto's Figure 1(a) view), one panel per dataset x encoder, all panels on
  one y range, one line per row: each run's cosine is smoothed by a trailing moving average
  over ``smooth`` logged steps, then averaged over seeds at each step; band = mean ± std
  (only where n > 1). Epoch ends (``S = steps / epochs_done`` steps per epoch, from
  ``metrics.json``) are dotted verticals, numbered on the top axis.

A row is one value of the row axes: the strategy, then any other varying axis
(``mmpareto / film / gamma=1.5``: setting axes by their short name, absent ones omitted).
Each row keeps one colour, line style and marker in every figure (markers staggered along
the line) so that coinciding curves stay visible; one legend below the panels.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mmbench import sweep_axes
from mmbench.protocols import PROTOCOLS

log = logging.getLogger(__name__)

LINESTYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">", "*", "h")
MARKS_PER_LINE = 8  # markers drawn on a line with many points (every k-th point)
LEGEND_CHAR_INCHES = 0.055  # width of a legend character at font size 7
LEGEND_ROW_INCHES = 0.16  # height of a legend row at font size 7, added to the figure


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


def completed_labels(frame: pd.DataFrame, rows: Sequence[str]) -> list[str]:
    """The sorted labels of the completed runs: every figure styles them in this order."""
    done = frame[frame["status"] == "completed"]
    return sorted(run_labels(done, rows).unique()) if not done.empty else []


def line_styles(labels: Sequence[str]) -> dict[str, dict[str, str]]:
    """Label k's colour ``C{k mod 10}``, line style ``k // 10`` (of 4) and marker
    ``k mod 11``: (colour, marker) differ for any two of the first 110 labels."""
    return {
        name: {
            "color": f"C{k % 10}",
            "linestyle": LINESTYLES[(k // 10) % len(LINESTYLES)],
            "marker": MARKERS[k % len(MARKERS)],
        }
        for k, name in enumerate(labels)
    }


def marks(points: int, k: int) -> tuple[int, int]:
    """``markevery`` of label k's line of ``points`` points: every ``e = ceil(points / 8)``-th
    point, starting at ``k mod e`` so the markers of coinciding lines do not overlap."""
    every = max(1, math.ceil(points / MARKS_PER_LINE))
    return (k % every, every)


def count_text(counts: Iterable[int]) -> str:
    """``n=3``, or ``n=1–3`` when a label has different run counts in different panels."""
    found = sorted(set(counts))
    return f"n={found[0]}" if len(found) == 1 else f"n={found[0]}–{found[-1]}"


def spread_note(counts: Iterable[int], center: str, spread: str) -> str:
    """The caption's clause: ``<center> = mean over seeds, <spread> = ± std over seeds``,
    the spread named only where some n > 1 (``<center> = one run each`` when none)."""
    counts = list(counts)
    if max(counts, default=0) <= 1:
        return f"{center} = one run each (n = 1, no spread shown)"
    where = " (where n > 1)" if min(counts) <= 1 else ""
    return f"{center} = mean over seeds, {spread} = ± std over seeds{where}"


def chance_levels(frame: pd.DataFrame) -> dict[str, float]:
    """Chance accuracy ``1 / C`` per dataset, C = ``dataset.num_classes`` of its runs'
    recorded config (the ``setup`` column); a dataset whose runs record none, or disagree,
    has no chance level (logged)."""
    levels: dict[str, float] = {}
    if "setup" not in frame:
        return levels
    for dataset, part in frame[frame["dataset"].notna()].groupby("dataset"):
        found = {json.loads(setup).get("dataset.num_classes") for setup in part["setup"]}
        classes = next(iter(found)) if len(found) == 1 else None
        if isinstance(classes, int) and not isinstance(classes, bool) and classes >= 1:
            levels[str(dataset)] = 1.0 / classes
        else:
            log.info(
                "%s: dataset.num_classes recorded as %s in the runs' .hydra/config.yaml; "
                "no chance line",
                dataset,
                sorted(map(str, found)),
            )
    return levels


def draw_chance(ax: Axes, level: float | None, scale: float = 100.0, zorder: float = 1.5) -> None:
    """A dashed grey horizontal line at ``scale * level``, labelled ``chance (1/C)``
    (``zorder`` 3 draws it over bars, 1.5 under lines)."""
    if level is None:
        return
    classes = round(1.0 / level)
    ax.axhline(
        scale * level,
        color="grey",
        linestyle="--",
        linewidth=1.0,
        label=f"chance (1/{classes})",
        zorder=zorder,
    )


def add_legend(figure: Figure, ax_list: Sequence[Axes]) -> None:
    """One legend below the panels with every labelled artist (each label once), in as many
    columns as the figure's width holds; the figure grows by the legend's height."""
    entries: dict[str, object] = {}
    for ax in ax_list:
        handles, labels = ax.get_legend_handles_labels()
        for handle, name in zip(handles, labels, strict=True):
            entries.setdefault(name, handle)
    if entries:
        longest = max(len(name) for name in entries)
        columns = max(1, int(figure.get_figwidth() // (0.5 + LEGEND_CHAR_INCHES * longest)))
        columns = min(len(entries), columns)
        figure.set_figheight(
            figure.get_figheight() + LEGEND_ROW_INCHES * (math.ceil(len(entries) / columns) + 1)
        )
        figure.legend(
            list(entries.values()),
            list(entries),
            loc="outside lower center",
            fontsize=7,
            ncols=columns,
        )


def moving_average(values: Sequence[float], width: int) -> np.ndarray:
    """Trailing moving average ``y_i = mean(x_{max(0, i-w+1)} .. x_i)`` (width 1: identity)."""
    if width < 1:
        raise ValueError(f"smoothing width must be >= 1, got {width}")
    return pd.Series(values, dtype=float).rolling(width, min_periods=1).mean().to_numpy()


def accuracy_figure(frame: pd.DataFrame, rows: Sequence[str] = ("strategy",)) -> Figure | None:
    """Bars of mean test accuracy (± std over seeds where n > 1) per row and protocol, with
    the chance line; None when no completed run has a test accuracy."""
    done = frame[frame["status"] == "completed"].copy()
    protocols = [p for p in PROTOCOLS if f"{p}_acc" in done and done[f"{p}_acc"].notna().any()]
    if done.empty or not protocols:
        log.info("no completed run with a test accuracy; skipping the accuracy plot")
        return None
    done["label"] = run_labels(done, rows)
    labels = sorted(done["label"].unique())
    styles = line_styles(completed_labels(frame, rows))
    datasets = sorted(done["dataset"].dropna().unique())
    chance = chance_levels(frame)
    figure = Figure(
        figsize=(3.2 * len(protocols) + 0.4 * len(labels), 3.0 * len(datasets)),
        layout="constrained",
    )
    axes = figure.subplots(len(datasets), len(protocols), squeeze=False, sharey="row")
    counts: list[int] = []
    for i, dataset in enumerate(datasets):
        part = done[done["dataset"] == dataset]
        for j, protocol in enumerate(protocols):
            values = pd.to_numeric(part[f"{protocol}_acc"], errors="coerce") * 100
            grouped = values.groupby(part["label"]).agg(["mean", "std", "count"])
            grouped = grouped.reindex(labels)
            n = grouped["count"].fillna(0).astype(int)
            counts += [int(c) for c in n if c > 0]
            ax = axes[i][j]
            x = np.arange(len(labels))
            ax.bar(x, grouped["mean"], color=[styles[name]["color"] for name in labels])
            spread = (n > 1).to_numpy()
            if spread.any():
                ax.errorbar(
                    x[spread],
                    grouped["mean"].to_numpy()[spread],
                    yerr=grouped["std"].to_numpy()[spread],
                    fmt="none",
                    ecolor="black",
                    capsize=3,
                )
            for k, count in enumerate(n):
                ax.annotate(f"n={count}", (k, 0), ha="center", va="bottom", fontsize=7)
            draw_chance(ax, chance.get(str(dataset)), zorder=3)
            ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
            ax.set_title(f"{dataset} · protocol {protocol}", fontsize=9)
            ax.set_ylabel("test accuracy (%)")
            ax.grid(axis="y", alpha=0.3)
    add_legend(figure, axes.ravel())
    figure.suptitle(f"Test accuracy: {spread_note(counts, 'bar', 'error bar')}", fontsize=10)
    return figure


def accuracy_plot(
    frame: pd.DataFrame, path: Path, rows: Sequence[str] = ("strategy",)
) -> Path | None:
    """Write :func:`accuracy_figure` to ``path``; None when there is nothing to plot."""
    figure = accuracy_figure(frame, rows)
    return None if figure is None else save_png(figure, path)


def read_run_csvs(
    frame: pd.DataFrame, name: str, columns: Sequence[str], rows: Sequence[str]
) -> pd.DataFrame:
    """``columns`` of every completed run's ``name`` (rows with NaN in them dropped), with
    its dataset, label and run_dir attached; empty or unreadable files are skipped."""
    parts = []
    for _, run in frame[frame["status"] == "completed"].iterrows():
        path = Path(run["run_dir"]) / name
        if not path.is_file() or path.stat().st_size == 0:
            continue
        try:
            part = pd.read_csv(path, usecols=list(columns))
        except (ValueError, pd.errors.EmptyDataError):
            log.warning("%s: unreadable (no %s columns); skipped", path, "/".join(columns))
            continue
        part = part.dropna(subset=list(columns))
        if part.empty:
            continue
        part["dataset"] = run["dataset"]
        part["label"] = run_label(run, rows)
        part["run_dir"] = run["run_dir"]
        parts.append(part)
    every = [*columns, "dataset", "label", "run_dir"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=every)


def load_history(frame: pd.DataFrame, rows: Sequence[str] = ("strategy",)) -> pd.DataFrame:
    """Every completed run's per-epoch ``test_acc`` (``history.csv``) with its dataset,
    label and run_dir attached."""
    return read_run_csvs(frame, "history.csv", ["epoch", "test_acc"], rows)


def epoch_curves(history: pd.DataFrame, column: str = "test_acc") -> pd.DataFrame:
    """Per (dataset, label, epoch): mean, sample std and n over runs of ``column``."""
    curves = history.groupby(["dataset", "label", "epoch"])[column].agg(["mean", "std", "count"])
    return curves.reset_index()


def panel_grid(figure: Figure, panels: int, sharey: bool) -> np.ndarray:
    """Up to 3 panels per row; the spare axes of the last row hidden."""
    columns = min(panels, 3)
    nrows = -(-panels // columns)
    axes = figure.subplots(nrows, columns, squeeze=False, sharey="all" if sharey else "none")
    for ax in axes.ravel()[panels:]:
        ax.set_visible(False)
    return axes.ravel()[:panels]


def draw_lines(
    ax: Axes, panel: pd.DataFrame, x: str, styles: dict[str, dict[str, str]], scale: float = 1.0
) -> dict[str, int]:
    """One line per label (mean), a band of ± std where n > 1; returns each label's n.

    Later labels are drawn thinner, with smaller hollow markers, on top of earlier ones, so
    that lines or points that coincide all stay visible."""
    counts = {}
    order = list(styles)
    for name, line in panel.groupby("label", sort=True):
        runs = int(line["count"].max())
        counts[str(name)] = runs
        style = styles[str(name)]
        k = order.index(str(name))
        depth = k / max(1, len(order) - 1)  # 0 for the first label, 1 for the last
        mean = line["mean"].to_numpy() * scale
        ax.plot(
            line[x],
            mean,
            **style,
            linewidth=2.4 - 1.4 * depth,
            markersize=8 - 5 * depth,
            markerfacecolor="none",
            markevery=marks(len(line), k),
            zorder=2 + depth,
            label=str(name),
        )
        if runs > 1:
            std = line["std"].fillna(0).to_numpy() * scale
            ax.fill_between(line[x], mean - std, mean + std, color=style["color"], alpha=0.15)
    return counts


def relabel_legend(figure: Figure, ax_list: Sequence[Axes], counts: dict[str, list[int]]) -> None:
    """The figure legend with each line's run count: ``uniform (n=3)``."""
    for ax in ax_list:
        for line in ax.get_lines():
            name = line.get_label()
            if name in counts:
                line.set_label(f"{name} ({count_text(counts[name])})")
    add_legend(figure, ax_list)


def curves_figure(frame: pd.DataFrame, rows: Sequence[str] = ("strategy",)) -> Figure | None:
    """Test accuracy after each epoch per row (mean, ± std band where n > 1), one panel per
    dataset, with the chance line; None (logged) when no run has a ``history.csv``."""
    history = load_history(frame, rows)
    if history.empty:
        log.info("no completed run has a history.csv with test_acc; skipping the curves plot")
        return None
    curves = epoch_curves(history)
    curves["epochs trained"] = curves["epoch"] + 1
    datasets = sorted(curves["dataset"].unique())
    styles = line_styles(completed_labels(frame, rows))
    chance = chance_levels(frame)
    columns = min(len(datasets), 3)
    figure = Figure(
        figsize=(4.5 * columns + 2.5, 3.2 * -(-len(datasets) // columns)), layout="constrained"
    )
    axes = panel_grid(figure, len(datasets), sharey=False)
    counts: dict[str, list[int]] = {}
    for ax, dataset in zip(axes, datasets, strict=True):
        panel = curves[curves["dataset"] == dataset]
        for name, n in draw_lines(ax, panel, "epochs trained", styles, scale=100).items():
            counts.setdefault(name, []).append(n)
        draw_chance(ax, chance.get(str(dataset)))
        last = int(panel["epochs trained"].max())
        ax.set_xlim(0.5, last + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_title(str(dataset), fontsize=9)
        ax.set_xlabel("epochs trained")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    relabel_legend(figure, axes, counts)
    note = spread_note([n for ns in counts.values() for n in ns], "line", "band")
    figure.suptitle(f"Test accuracy after each epoch: {note}", fontsize=10)
    return figure


def curves_plot(
    frame: pd.DataFrame, path: Path, rows: Sequence[str] = ("strategy",)
) -> Path | None:
    """Write :func:`curves_figure` to ``path``; None when there is nothing to plot."""
    figure = curves_figure(frame, rows)
    return None if figure is None else save_png(figure, path)


def load_telemetry(frame: pd.DataFrame, rows: Sequence[str] = ("strategy",)) -> pd.DataFrame:
    """Every completed run's ``telemetry.csv`` with its dataset, label and run_dir attached."""
    return read_run_csvs(frame, "telemetry.csv", ["step", "encoder", "cos"], rows)


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


def epoch_length(frame: pd.DataFrame, run_dirs: Iterable[str]) -> tuple[int, int] | None:
    """(steps per epoch S, epochs E) shared by the given runs, from ``metrics.json``'s
    ``timing.steps / epochs_done``; None when unrecorded or when the runs differ."""
    if "steps" not in frame or "epochs_done" not in frame:
        return None
    runs = frame[frame["run_dir"].isin(set(run_dirs))]
    steps = pd.to_numeric(runs["steps"], errors="coerce")
    epochs = pd.to_numeric(runs["epochs_done"], errors="coerce")
    valid = (epochs > 0) & steps.notna()
    per_epoch = set((steps[valid] / epochs[valid]).tolist())
    if not valid.all() or len(per_epoch) != 1:
        return None
    length = per_epoch.pop()
    if length < 1 or length != int(length):
        return None
    return int(length), int(epochs.max())


def draw_epochs(ax: Axes, length: int, epochs: int) -> None:
    """Epoch ends ``e * S`` as dotted verticals, numbered on a top axis (integer ticks)."""
    ticks = [int(e) for e in MaxNLocator(nbins=10, integer=True).tick_values(0, epochs)]
    ticks = [e for e in ticks if 0 <= e <= epochs]
    for e in ticks:
        ax.axvline(e * length, color="grey", linestyle=":", linewidth=0.8, zorder=0)
    top = ax.secondary_xaxis("top", functions=(lambda s: s / length, lambda e: e * length))
    top.set_xticks(ticks)
    top.set_xlabel("epochs trained", fontsize=8)
    top.tick_params(labelsize=7)


def cosine_figure(
    frame: pd.DataFrame, rows: Sequence[str] = ("strategy",), smooth: int = 5
) -> Figure | None:
    """The gradient-cosine-over-training figure; None (logged) when no run has telemetry."""
    telemetry = load_telemetry(frame, rows)
    if telemetry.empty:
        log.info(
            "no completed run has a non-empty telemetry.csv (trainer.telemetry_every=0?); "
            "skipping the gradient-cosine plot"
        )
        return None
    curves = cosine_curves(telemetry, smooth)
    panels = list(curves[["dataset", "encoder"]].drop_duplicates().itertuples(index=False))
    columns = min(len(panels), 3)
    figure = Figure(
        figsize=(4.5 * columns + 2.5, 3.4 * -(-len(panels) // columns)), layout="constrained"
    )
    axes = panel_grid(figure, len(panels), sharey=True)
    styles = line_styles(completed_labels(frame, rows))
    counts: dict[str, list[int]] = {}
    for ax, (dataset, encoder) in zip(axes, panels, strict=True):
        panel = curves[(curves["dataset"] == dataset) & (curves["encoder"] == encoder)]
        for name, n in draw_lines(ax, panel, "step", styles).items():
            counts.setdefault(name, []).append(n)
        ax.axhline(0.0, color="black", linewidth=0.8, linestyle="--")
        ax.margins(y=0.1)
        shown = telemetry[(telemetry["dataset"] == dataset) & (telemetry["encoder"] == encoder)]
        known = epoch_length(frame, shown["run_dir"].unique())
        end = known[0] * known[1] if known else int(panel["step"].max())
        end = max(end, 1)
        pad = max(0.03 * end, 0.5)
        ax.set_xlim(-pad, end + pad)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        if known:
            draw_epochs(ax, *known)
        ax.set_title(f"{dataset} · encoder {encoder}", fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylabel("cos(g_multimodal, g_unimodal)")
        ax.grid(alpha=0.3)
    relabel_legend(figure, axes, counts)
    note = spread_note([n for ns in counts.values() for n in ns], "line", "band")
    figure.suptitle(
        f"Gradient cosine per encoder, moving average over {smooth} logged steps: {note}",
        fontsize=10,
    )
    return figure


def cosine_plot(
    frame: pd.DataFrame, path: Path, rows: Sequence[str] = ("strategy",), smooth: int = 5
) -> Path | None:
    """Write :func:`cosine_figure` to ``path``; None when no run has telemetry."""
    figure = cosine_figure(frame, rows, smooth)
    return None if figure is None else save_png(figure, path)


def write_plots(
    frame: pd.DataFrame, out_dir: Path, rows: Sequence[str] = ("strategy",), smooth: int = 5
) -> list[Path]:
    """Write every plot that has data under ``out_dir``; returns the files written."""
    written = [
        accuracy_plot(frame, Path(out_dir) / "accuracy.png", rows),
        curves_plot(frame, Path(out_dir) / "curves.png", rows),
        cosine_plot(frame, Path(out_dir) / "cosine.png", rows, smooth),
    ]
    return [p for p in written if p is not None]
