"""Run directories -> a tidy frame (one row per run) -> leaderboards (CSV and Markdown).

Leaderboard rows are strategies (plus any other config axis that varies), columns are
dataset x metric, cells mean ± std over seeds with n. Every metric column names its
evaluation protocol (paper / val / last).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmbench.utils import atomic

AXES = ["dataset", "backbone", "fusion", "strategy", "optim", "epochs"]
PROTOCOLS = ["paper", "val", "last"]
RUN_COLUMNS = [
    "run_dir",
    "status",
    "error",
    *AXES,
    "seed",
    "epochs_done",
    "git_rev",
    "config_hash",
    "unimodal_heads_trained",
    "device",
]


def find_runs(paths: Iterable[Path]) -> list[Path]:
    """Every run directory (one holding ``metrics.json``) at or below the given paths."""
    runs: set[Path] = set()
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such run or multirun directory")
        if (path / "metrics.json").is_file():
            runs.add(path)
        runs.update(p.parent for p in path.rglob("metrics.json"))
    return sorted(runs)


def flatten_run(run_dir: Path) -> dict[str, Any]:
    """One run's ``metrics.json`` as a flat row."""
    path = run_dir / "metrics.json"
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error}); delete or re-run that job") from None
    row: dict[str, Any] = {"run_dir": str(run_dir)}
    row.update({k: data.get(k) for k in RUN_COLUMNS if k != "run_dir"})
    for protocol, values in (data.get("protocols") or {}).items():
        for key, value in (values or {}).items():
            row[f"{protocol}_{key}"] = value
    for encoder, values in (data.get("conflict") or {}).items():
        row[f"cos_{encoder}"] = values.get("mean_cos")
        row[f"conflict_rate_{encoder}"] = values.get("conflict_rate")
    for key, value in (data.get("timing") or {}).items():
        row[key] = value
    row["peak_memory_mb"] = data.get("peak_memory_mb")
    return row


def load_runs(paths: Iterable[Path]) -> pd.DataFrame:
    """The tidy frame of all runs found under ``paths``."""
    runs = find_runs(paths)
    if not runs:
        raise FileNotFoundError(
            f"no run directories (with metrics.json) under {[str(p) for p in paths]}"
        )
    return pd.DataFrame([flatten_run(r) for r in runs]).sort_values(
        ["dataset", "strategy", "seed"], na_position="last", ignore_index=True
    )


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """Leaderboard metrics present in the frame, in display order."""
    wanted = [f"{p}_{m}" for p in PROTOCOLS for m in ("acc", "map")]
    wanted += sorted(c for c in frame if c.startswith("val_acc_"))
    wanted += sorted(c for c in frame if c.startswith("cos_"))
    wanted += ["ms_per_step"]
    return [c for c in wanted if c in frame]


def row_axes(frame: pd.DataFrame) -> list[str]:
    """Strategy plus every other axis (but dataset) that takes several values."""
    varying = [
        a
        for a in AXES
        if a not in ("dataset", "strategy") and a in frame and frame[a].nunique(dropna=False) > 1
    ]
    return ["strategy", *varying]


def leaderboard(frame: pd.DataFrame) -> pd.DataFrame:
    """mean, std and n per (row axes, dataset, metric) over completed runs."""
    done = frame[frame["status"] == "completed"]
    rows = row_axes(frame)
    records = []
    for key, group in frame.groupby([*rows, "dataset"], dropna=False, sort=True):
        finished = done.loc[done.index.intersection(group.index)]
        record = dict(zip([*rows, "dataset"], key, strict=True))
        record["n"] = len(finished)
        record["failed"] = len(group) - len(finished)
        for metric in metric_columns(frame):
            values = pd.to_numeric(finished[metric], errors="coerce").dropna()
            record[f"{metric}_mean"] = values.mean() if len(values) else np.nan
            record[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else np.nan
        records.append(record)
    return pd.DataFrame(records)


def wide(board: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """Rows: strategy (+ varying axes); columns: ``<dataset>/<metric>/<mean|std>`` and n."""
    rows = row_axes(frame)
    values = [c for c in board if c not in (*rows, "dataset")]
    table = board.pivot_table(
        index=rows, columns="dataset", values=values, aggfunc="first", dropna=False
    )
    table.columns = [f"{dataset}/{stat}" for stat, dataset in table.columns]
    ordered = sorted(table.columns, key=lambda c: (c.split("/")[0], values.index(c.split("/")[1])))
    return table[ordered].reset_index()


LABELS = {"acc": "acc", "map": "MAP", "ms_per_step": "ms/step"}


def _label(metric: str) -> str:
    if metric.startswith("val_acc_"):
        return f"val acc[{metric.removeprefix('val_acc_')}]"
    if metric.startswith("cos_"):
        return f"cos[{metric.removeprefix('cos_')}]"
    if metric == "ms_per_step":
        return "ms/step"
    protocol, name = metric.split("_", 1)
    return f"{protocol} {LABELS.get(name, name)}"


def _cell(mean: float, std: float, metric: str, untrained: bool) -> str:
    if untrained:
        return "untrained"
    if pd.isna(mean):
        return "—"
    percent = metric.endswith(("_acc", "_map")) or metric.startswith("val_acc_")
    scale, digits = (100.0, 2) if percent else (1.0, 3 if metric.startswith("cos_") else 1)
    text = f"{mean * scale:.{digits}f}"
    return text if pd.isna(std) else f"{text} ± {std * scale:.{digits}f}"


def markdown(board: pd.DataFrame, frame: pd.DataFrame) -> str:
    """The leaderboard as a Markdown table (accuracy and MAP in %, mean ± std over seeds)."""
    rows = row_axes(frame)
    metrics = metric_columns(frame)
    datasets = sorted(board["dataset"].dropna().unique())
    untrained = set(frame.loc[frame["unimodal_heads_trained"] == False, "strategy"])  # noqa: E712
    header = [*rows]
    for d in datasets:
        header += [f"{d} · n"] + [f"{d} · {_label(m)}" for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, group in board.groupby(rows, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        cells = [str(k) for k in key]
        strategy = key[0]
        for d in datasets:
            hit = group[group["dataset"] == d]
            if hit.empty:
                cells += ["—"] * (len(metrics) + 1)
                continue
            rec = hit.iloc[0]
            n = f"{int(rec['n'])}" + (f" ({int(rec['failed'])} failed)" if rec["failed"] else "")
            cells.append(n)
            for m in metrics:
                is_untrained = m.startswith("val_acc_") and strategy in untrained
                cells.append(_cell(rec[f"{m}_mean"], rec[f"{m}_std"], m, is_untrained))
        lines.append("| " + " | ".join(cells) + " |")
    notes = [
        "",
        "Accuracy and MAP in %, mean ± std (sample std) over seeds; n = completed runs.",
        "paper: test accuracy at the best test epoch (the official protocol); val: test "
        "accuracy at the best validation epoch; last: at the final epoch. MAP: macro average "
        "precision of the fused softmax scores. val acc[m]: the jointly trained unimodal head "
        "of modality m at the val epoch ('untrained' when its loss is never back-propagated). "
        "cos[m]: mean cosine between the fused and unimodal gradients of encoder m.",
    ]
    return "\n".join(lines + notes) + "\n"


def write_leaderboard(
    paths: Iterable[Path], name: str, out_root: Path = Path("outputs/leaderboards")
) -> Path:
    """Collect the runs under ``paths`` into ``out_root/name/``; returns that folder."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"leaderboard name {name!r}: use a plain folder name like 'bench'")
    paths = list(map(Path, paths))
    frame = load_runs(paths)
    board = leaderboard(frame)
    out = Path(out_root) / name
    atomic.write_text(out / "runs.csv", frame.to_csv(index=False))
    atomic.write_text(out / "leaderboard.csv", wide(board, frame).to_csv(index=False))
    atomic.write_text(out / "leaderboard.md", f"# Leaderboard: {name}\n\n" + markdown(board, frame))
    return out
