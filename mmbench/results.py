"""Run directories -> a tidy frame (one row per run) -> leaderboards, comparison and plots.

Leaderboard rows are strategies plus every other axis that varies: a named axis (the
config group chosen: backbone, fusion, optim) or a setting axis (a config key, by its dotted
name, in which runs of one group choice differ: a swept ``strategy.method.gamma``, a
default ``optim.optimizer.lr`` changed between two sweeps; see :mod:`mmbench.sweep_axes`).
Columns are dataset x metric, cells mean ± std over seeds with n. Every metric column names
its evaluation protocol (paper / val / last). Runs of different settings are therefore never
pooled as seeds; a cell pools runs of one code revision, each seed once, unless
``allow_mixed`` is given (different revisions of the same settings). A run whose
``metrics.json`` cannot be read is listed as ``unreadable`` (with its path) and the others
are collected; a protocol a run cannot have (val without a val split) is shown as such
("no val split"), never as a number.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from mmbench import plots, stats, sweep_axes
from mmbench.protocols import PROTOCOL_TEXT, PROTOCOLS
from mmbench.utils import atomic

log = logging.getLogger(__name__)

AXES = ["dataset", "backbone", "fusion", "strategy", "optim"]
BASELINE = "uniform"
RUN_COLUMNS = [
    "run_dir",
    "status",
    "error",
    *AXES,
    "seed",
    "epochs",
    "epochs_done",
    "git_rev",
    "config_hash",
    "setup_hash",
    "unimodal_heads_trained",
    "device",
    "unavailable_protocols",
    "config_recorded",
]
# Trainer knobs that change neither the numbers nor their meaning (resume, loader workers).
IGNORED_SETUP_KEYS = {
    "trainer.name",
    "trainer.resume",
    "trainer.stop_after_epochs",
    "trainer.num_workers",
    "trainer.num_threads",
    "trainer.eval_batch_size",
}
UNKNOWN_REV = "unknown"
MISSING = "missing"
UNREADABLE = "unreadable"
NOT_FAILED = ["completed", "interrupted", MISSING, UNREADABLE]
NO_VAL_SPLIT = "no val split"


class MixedRunsError(ValueError):
    """Runs of different code revisions (or a seed twice) would share a leaderboard cell."""

    def __init__(self, problems: list[str], command: str) -> None:
        self.problems = problems
        self.command = command
        super().__init__(
            "refusing to pool runs of one setting that differ in code revision, repeat a "
            "seed or lack .hydra/config.yaml:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + "\nCollect those runs separately, or pool them anyway with --allow-mixed "
            "(runs of different settings are never pooled: they are separate rows):\n  " + command
        )


def collect_command(
    paths: Sequence[Path], name: str, out_root: Path, allow_mixed: bool = False
) -> str:
    """The ``mmbench collect`` command line that collects ``paths`` into ``out_root/name``."""
    words = ["mmbench", "collect", *map(str, paths), "--name", name, "--out", str(out_root)]
    return shlex.join(words + (["--allow-mixed"] if allow_mixed else []))


def find_runs(paths: Iterable[Path]) -> list[Path]:
    """Every run directory at or below the given paths.

    A run directory holds ``metrics.json``, or ``.hydra/config.yaml`` alone (a job killed
    before recording its status, or still running). Directories are resolved, so a run
    reached twice (nested or overlapping arguments, symlinks, relative and absolute
    spellings) is listed once.
    """
    runs: set[Path] = set()
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such run or multirun directory")
        runs.update(p.parent.resolve() for p in path.rglob("metrics.json") if p.is_file())
        jobs = path.rglob(".hydra/config.yaml")
        runs.update(p.parent.parent.resolve() for p in jobs if p.is_file())
    return sorted(runs)


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): node}


def run_setup(run_dir: Path, data: dict[str, Any]) -> dict[str, Any]:
    """The run's configuration without its seed, as ``{dotted key: value}``.

    From ``.hydra/config.yaml`` (the config axes and ``trainer``, unresolved so that
    machine-specific paths do not count; ``IGNORED_SETUP_KEYS`` dropped); without that file,
    only ``trainer.epochs``, from the ``epochs`` recorded in ``metrics.json``.
    """
    config = run_dir / ".hydra" / "config.yaml"
    if config.is_file():
        cfg = OmegaConf.load(config)
        node = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [*AXES, "trainer"]))
        flat = _flatten(node)
        return {k: v for k, v in flat.items() if k not in IGNORED_SETUP_KEYS}
    return {"trainer.epochs": data.get("epochs")}


def identity_from_hydra(run_dir: Path) -> dict[str, Any]:
    """The axes, seed and epochs in ``.hydra/config.yaml`` (empty without a readable one)."""
    config = run_dir / ".hydra" / "config.yaml"
    try:
        cfg = OmegaConf.load(config)
    except Exception:  # absent or itself corrupt: the run is listed by its path alone
        return {}
    data: dict[str, Any] = {axis: OmegaConf.select(cfg, f"{axis}.name") for axis in AXES}
    data.update(seed=OmegaConf.select(cfg, "seed"), epochs=OmegaConf.select(cfg, "trainer.epochs"))
    return data


def missing_run(run_dir: Path) -> dict[str, Any]:
    """What ``metrics.json`` would identify, read from ``.hydra/config.yaml``; status missing."""
    return {
        **identity_from_hydra(run_dir),
        "status": MISSING,
        "error": "no metrics.json: the job was killed before recording its status, "
        "or is still running",
    }


def read_run(run_dir: Path) -> dict[str, Any]:
    """``metrics.json`` as a dict; a missing or unreadable one as a status-only record."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        return missing_run(run_dir)
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as error:
        log.warning("%s is unreadable (%s); listed as %s", path, error, UNREADABLE)
        return {
            **identity_from_hydra(run_dir),
            "status": UNREADABLE,
            "error": f"{path}: unreadable metrics.json ({error}); delete it and rerun the job",
        }
    return data


def unavailable_protocols(data: dict[str, Any]) -> dict[str, str]:
    """Protocols a completed run cannot have, with the reason (val without a val split).

    Read from ``unavailable_protocols``; older summaries only wrote ``val: null``.
    """
    if data.get("status") != "completed":
        return {}
    named = data.get("unavailable_protocols") or {}
    given = data.get("protocols") or {}
    found = {p: str(named[p]) for p in PROTOCOLS if p in named}
    for p in PROTOCOLS:
        if p in given and given[p] is None and p not in found:
            found[p] = NO_VAL_SPLIT if p == "val" else "not available"
    return found


def flatten_run(run_dir: Path) -> dict[str, Any]:
    """One run's ``metrics.json`` as a flat row (plus its ``setup`` as sorted JSON)."""
    data = read_run(run_dir)
    row: dict[str, Any] = {"run_dir": str(run_dir)}
    row.update({k: data.get(k) for k in RUN_COLUMNS if k not in ("run_dir", "setup_hash")})
    row["git_rev"] = data.get("git_rev") or UNKNOWN_REV
    row["overrides"] = " ".join(data.get("overrides") or [])
    unavailable = unavailable_protocols(data)
    row["unavailable_protocols"] = "; ".join(f"{p}: {r}" for p, r in unavailable.items())
    for protocol in unavailable:
        row.update({f"{protocol}_acc": None, f"{protocol}_map": None})
    row["config_recorded"] = (run_dir / ".hydra" / "config.yaml").is_file()
    setup = json.dumps(run_setup(run_dir, data), sort_keys=True, default=str)
    row["setup"] = setup
    row["setup_hash"] = hashlib.sha1(setup.encode()).hexdigest()[:12]
    for protocol, values in (data.get("protocols") or {}).items():
        for key, value in (values or {}).items():
            row[f"{protocol}_{key}"] = value
    for encoder, values in (data.get("conflict") or {}).items():
        row[f"cos_{encoder}"] = values.get("mean_cos")
        row[f"conflict_rate_{encoder}"] = values.get("conflict_rate")
        row[f"conflict_steps_{encoder}"] = values.get("steps")
    for key, value in (data.get("timing") or {}).items():
        row[key] = value
    data_counts = data.get("data") or {}
    for split, count in (data_counts.get("samples") or {}).items():
        row[f"n_{split}"] = count
    for split, count in (data_counts.get("skipped") or {}).items():
        row[f"skipped_{split}"] = count
    row["peak_memory_mb"] = data.get("peak_memory_mb")
    row["peak_memory_kind"] = data.get("peak_memory_kind")
    return row


def load_runs(paths: Iterable[Path]) -> pd.DataFrame:
    """The tidy frame of all runs found under ``paths`` (one row per run directory)."""
    paths = list(map(Path, paths))
    runs = find_runs(paths)
    if not runs:
        raise FileNotFoundError(
            f"no run directories (with metrics.json) under {[str(p) for p in paths]}"
        )
    frame = pd.DataFrame([flatten_run(r) for r in runs])
    keys = setting_axes(frame)
    columns = sweep_axes.axis_columns([json.loads(x) for x in frame["setup"]], keys)
    frame = pd.concat([frame, columns.set_axis(frame.index)], axis=1)
    return frame.sort_values(
        ["dataset", "strategy", "seed", "run_dir"], na_position="last", ignore_index=True
    )


def identified(frame: pd.DataFrame) -> pd.DataFrame:
    """Runs whose dataset is known (an unreadable run without ``.hydra/`` has no identity;
    it is listed in runs.csv and leaderboard.md by its path, in no cell)."""
    return frame[frame["dataset"].notna()]


def setting_axes(frame: pd.DataFrame) -> list[str]:
    """The config keys in which identified runs of one group choice differ (any status)."""
    known = identified(frame)
    if known.empty or "setup" not in known:
        return []
    recorded = known["config_recorded"] if "config_recorded" in known else [True] * len(known)
    return sweep_axes.setting_axes(
        [json.loads(x) for x in known["setup"]],
        known[[a for a in AXES if a in known]],
        [bool(r) for r in recorded],
        order=[*AXES, "trainer"],
        revisions=[str(r) for r in known["git_rev"]] if "git_rev" in known else None,
    )


def row_axes(frame: pd.DataFrame) -> list[str]:
    """Strategy, every other named axis (but dataset) that takes several values, then every
    setting axis (dotted config key)."""
    known = identified(frame)
    varying = [
        a
        for a in AXES
        if a not in ("dataset", "strategy") and a in known and known[a].nunique(dropna=False) > 1
    ]
    return ["strategy", *varying, *[k for k in setting_axes(frame) if k in frame]]


def headers(frame: pd.DataFrame) -> dict[str, str]:
    """Markdown header of every row axis: named axes as they are, setting axes by their
    shortest unambiguous dotted suffix (``strategy.method.gamma`` -> ``gamma``)."""
    rows = row_axes(frame)
    dotted = [r for r in rows if "." in r]
    reserved = {*AXES, "seed", "n", "metric", "baseline", "n pairs"}
    return {r: r for r in rows if r not in dotted} | sweep_axes.short_names(dotted, reserved)


def strategy_axes(frame: pd.DataFrame) -> list[str]:
    """Setting axes of the strategy group: a strategy's own knobs (e.g. its gamma)."""
    return [r for r in row_axes(frame) if r.startswith("strategy.")]


def cell_keys(frame: pd.DataFrame) -> list[str]:
    """The columns that identify a leaderboard cell: the row axes and the dataset."""
    return [*row_axes(frame), "dataset"]


def modalities(frame: pd.DataFrame) -> list[str]:
    """Modality names of the per-protocol unimodal accuracy columns, in first-seen order."""
    found = [c.split("_acc_", 1)[1] for c in frame for p in PROTOCOLS if c.startswith(f"{p}_acc_")]
    return list(dict.fromkeys(found))


def encoders(frame: pd.DataFrame) -> list[str]:
    """Encoder names of the conflict columns, in first-seen order."""
    return [c.removeprefix("cos_") for c in frame if c.startswith("cos_")]


def protocol_metrics(frame: pd.DataFrame, protocol: str) -> list[str]:
    """The metrics of one protocol present in the frame: acc, MAP, unimodal-head accuracies."""
    wanted = [f"{protocol}_acc", f"{protocol}_map"]
    wanted += [f"{protocol}_acc_{m}" for m in modalities(frame)]
    return [c for c in wanted if c in frame]


def cost_metrics(frame: pd.DataFrame) -> list[str]:
    """Protocol-free metrics with data: gradient conflict per encoder, step time, peak memory."""
    wanted = [f"{k}_{e}" for e in encoders(frame) for k in ("cos", "conflict_rate")]
    wanted += ["ms_per_step", "peak_memory_mb"]
    return [c for c in wanted if c in frame and frame[c].notna().any()]


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """Every leaderboard metric present in the frame, in display order."""
    return [m for p in PROTOCOLS for m in protocol_metrics(frame, p)] + cost_metrics(frame)


def _describe_cell(key: Sequence[Any], names: Sequence[str]) -> str:
    return ", ".join(f"{n}={sweep_axes.display(k)}" for n, k in zip(names, key, strict=True))


def _seeds(group: pd.DataFrame) -> str:
    seeds = sorted(group["seed"].dropna().astype(int).tolist())
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(map(str, seeds))


def mixing_problems(frame: pd.DataFrame) -> list[str]:
    """Why completed runs sharing a leaderboard cell should not be pooled (empty: they may).

    A cell must hold one code revision (``<sha>``, ``<sha>-dirty`` and ``unknown`` are all
    distinct), each seed once, and runs whose settings are all known (a run without
    ``.hydra/config.yaml`` records only its epochs). Runs of different settings never share
    a cell (every differing config key is an axis), so ``allow_mixed`` can only pool these.
    Failed and interrupted runs are only counted, never pooled, so they are not checked.
    """
    keys = cell_keys(frame)
    done = frame[frame["status"] == "completed"]
    problems = []
    for key, group in done.groupby(keys, dropna=False, sort=True):
        cell = f"cell {_describe_cell(key, keys)}"
        if group["git_rev"].nunique(dropna=False) > 1:
            revs = "; ".join(
                f"{rev} ({len(g)} run{'s' * (len(g) > 1)}, {_seeds(g)})"
                for rev, g in group.groupby("git_rev", sort=True)
            )
            problems.append(f"{cell}: runs of different code revisions (git_rev): {revs}")
        unknown = group[~group["config_recorded"].astype(bool)]
        if 0 < len(unknown) < len(group):
            problems.append(
                f"{cell}: settings unknown (no .hydra/config.yaml, only epochs compared) for "
                f"{_seeds(unknown)}: {', '.join(unknown['run_dir'])}"
            )
        repeated = group[group.duplicated("seed", keep=False)]
        for seed, g in repeated.groupby("seed"):
            dirs = ", ".join(g["run_dir"])
            problems.append(f"{cell}: seed {seed} appears in {len(g)} runs ({dirs})")
    return problems


def cell_unavailable(finished: pd.DataFrame) -> dict[str, str]:
    """Protocols that no completed run of a cell has, with the reason(s)."""
    found: dict[str, str] = {}
    listed = finished["unavailable_protocols"].fillna("") if len(finished) else []
    for protocol in PROTOCOLS:
        reasons = [
            part.split(": ", 1)[1]
            for text in listed
            for part in text.split("; ")
            if part.startswith(f"{protocol}: ")
        ]
        if reasons and len(reasons) == len(finished):
            found[protocol] = "; ".join(sorted(set(reasons)))
    return found


def leaderboard(frame: pd.DataFrame) -> pd.DataFrame:
    """mean, std (ddof 1) and n per cell over completed runs; the others counted by status.

    ``failed`` counts every status but completed, interrupted, missing and unreadable;
    ``<protocol>_unavailable`` gives the reason when no completed run of the cell has it.
    """
    keys = cell_keys(frame)
    records = []
    for key, group in identified(frame).groupby(keys, dropna=False, sort=False):
        finished = group[group["status"] == "completed"]
        record = dict(zip(keys, key, strict=True))
        record["n"] = len(finished)
        record["failed"] = int((~group["status"].isin(NOT_FAILED)).sum())
        record["interrupted"] = int((group["status"] == "interrupted").sum())
        record[MISSING] = int((group["status"] == MISSING).sum())
        record[UNREADABLE] = int((group["status"] == UNREADABLE).sum())
        for protocol, reason in cell_unavailable(finished).items():
            record[f"{protocol}_unavailable"] = reason
        heads = finished["unimodal_heads_trained"].dropna()
        record["unimodal_heads_trained"] = bool(heads.all()) if len(heads) else np.nan
        for metric in metric_columns(frame):
            values = pd.to_numeric(finished[metric], errors="coerce").dropna()
            record[f"{metric}_mean"] = values.mean() if len(values) else np.nan
            record[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else np.nan
        records.append(record)
    return sweep_axes.sort_rows(pd.DataFrame(records), keys) if records else pd.DataFrame()


def wide(board: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """Rows: strategy (+ varying axes); columns: ``<dataset>/<protocol>_<metric>_<mean|std>``.

    Per dataset also ``n``, ``failed``, ``interrupted``, ``missing`` and
    ``unimodal_heads_trained``.
    """
    rows = row_axes(frame)
    values = [c for c in board if c not in (*rows, "dataset")]
    datasets = sorted(board["dataset"].dropna().unique()) if len(board) else []
    records = []
    for key, group in board.groupby(rows, dropna=False, sort=False):
        record = dict(zip(rows, key if isinstance(key, tuple) else (key,), strict=True))
        for dataset in datasets:
            hit = group[group["dataset"] == dataset]
            if len(hit):
                record.update({f"{dataset}/{v}": hit.iloc[0][v] for v in values})
        records.append(record)
    columns = rows + [f"{d}/{v}" for d in datasets for v in values]
    return pd.DataFrame(records).reindex(columns=columns)


LABELS = {"acc": "acc", "map": "MAP"}


def label(metric: str) -> str:
    """Column header of a metric; protocol metrics name their protocol."""
    for prefix, name in (("cos_", "cos"), ("conflict_rate_", "conflict rate")):
        if metric.startswith(prefix):
            return f"{name}[{metric.removeprefix(prefix)}]"
    if metric == "ms_per_step":
        return "ms/step"
    if metric == "peak_memory_mb":
        return "peak MB"
    protocol, name = metric.split("_", 1)
    if name.startswith("acc_"):
        return f"{protocol} acc[{name.removeprefix('acc_')}]"
    return f"{protocol} {LABELS.get(name, name)}"


def is_percent(metric: str) -> bool:
    """Accuracy, MAP and conflict rate are shown in %."""
    return metric.startswith("conflict_rate_") or any(
        metric == f"{p}_{m}" or metric.startswith(f"{p}_acc_")
        for p in PROTOCOLS
        for m in ("acc", "map")
    )


def better(metric: str) -> str | None:
    """``'high'`` or ``'low'`` when the metric has a better direction, else None (cosine...)."""
    if metric == "ms_per_step":
        return "low"
    if any(metric.startswith(f"{p}_") for p in PROTOCOLS):
        return "high"
    return None


def _format(value: float, metric: str) -> str:
    scale = 100.0 if is_percent(metric) else 1.0
    digits = 3 if metric.startswith("cos_") else (2 if is_percent(metric) else 1)
    return f"{value * scale:.{digits}f}"


def _cell(mean: float, std: float, metric: str) -> str:
    if pd.isna(mean):
        return "—"
    text = _format(mean, metric)
    return text if pd.isna(std) else f"{text} ± {_format(std, metric)}"


def _unavailable(rec: pd.Series, metric: str) -> str | None:
    """Why the cell has no value for ``metric``'s protocol (None: it may have one)."""
    protocol = metric.split("_", 1)[0]
    reason = rec.get(f"{protocol}_unavailable") if protocol in PROTOCOLS else None
    return None if pd.isna(reason) else str(reason)


def _is_untrained(rec: pd.Series, metric: str) -> bool:
    unimodal = any(metric.startswith(f"{p}_acc_") for p in PROTOCOLS)
    trained = rec["unimodal_heads_trained"]
    return unimodal and not pd.isna(trained) and not bool(trained)


def _best_mask(board: pd.DataFrame, metric: str) -> pd.Series:
    """Cells holding the best displayed mean of a column (ties all marked)."""
    direction = better(metric)
    column = f"{metric}_mean"
    if direction is None or column not in board:
        return pd.Series(False, index=board.index)
    shown = board[column].map(lambda v: np.nan if pd.isna(v) else float(_format(v, metric)))
    untrained = board.apply(lambda rec: _is_untrained(rec, metric), axis=1)
    shown = shown.where(~untrained)
    if shown.isna().all():
        return pd.Series(False, index=board.index)
    target = shown.max() if direction == "high" else shown.min()
    return shown == target


def _count(rec: pd.Series) -> str:
    kinds = ("failed", "interrupted", MISSING, UNREADABLE)
    extra = [f"{int(rec[k])} {k}" for k in kinds if rec.get(k)]
    return f"{int(rec['n'])}" + (f" ({', '.join(extra)})" if extra else "")


def _table(board: pd.DataFrame, frame: pd.DataFrame, metrics: Sequence[str]) -> list[str]:
    """One Markdown table: rows = row axes, columns = dataset x (n, metrics)."""
    rows = row_axes(frame)
    names = headers(frame)
    datasets = sorted(board["dataset"].dropna().unique())
    best: dict[tuple[str, str], pd.Series] = {}
    for d in datasets:
        part = board[board["dataset"] == d]
        for m in metrics:
            best[(d, m)] = _best_mask(part, m)
    header = [names[r] for r in rows]
    for d in datasets:
        header += [f"{d} · n"] + [f"{d} · {label(m)}" for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, group in board.groupby(rows, dropna=False, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        cells = [sweep_axes.display(k) for k in key]
        for d in datasets:
            hit = group[group["dataset"] == d]
            if hit.empty:
                cells += ["—"] * (len(metrics) + 1)
                continue
            index, rec = hit.index[0], hit.iloc[0]
            cells.append(_count(rec))
            for m in metrics:
                if _is_untrained(rec, m):
                    cells.append("untrained")
                    continue
                if (reason := _unavailable(rec, m)) is not None:
                    cells.append(reason)
                    continue
                text = _cell(rec[f"{m}_mean"], rec[f"{m}_std"], m)
                cells.append(f"**{text}**" if best[(d, m)].get(index, False) else text)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _interval(low: float, high: float) -> str:
    if pd.isna(low):
        return "—"
    return f"[{low * 100:+.2f}, {high * 100:+.2f}]"


def _mdd(rec: pd.Series) -> str:
    if int(rec["n_pairs"]) < 2:
        return "n < 2"
    return "—" if pd.isna(rec["mdd"]) else f"{rec['mdd'] * 100:.2f}"


def comparison_markdown(comparison: pd.DataFrame, frame: pd.DataFrame) -> list[str]:
    """The paired-comparison section (accuracy of each protocol), differences in points."""
    lines = [f"## Paired comparison against `{BASELINE}` (matched seeds)", ""]
    shown = comparison[comparison["metric"].isin([f"{p}_acc" for p in PROTOCOLS])]
    if shown.empty:
        lines.append(
            f"No strategy shares a dataset, axes and seed with a completed `{BASELINE}` run; "
            "nothing to compare."
        )
        return lines
    names = headers(frame)
    knobs = strategy_axes(frame)
    group = [c for c in cell_keys(frame) if c != "strategy" and c not in knobs]
    theirs = [stats.baseline_column(k) for k in knobs if stats.baseline_column(k) in shown]
    header = [names.get(c, c) for c in group] + ["strategy"] + [names[k] for k in knobs]
    header += ["baseline"] * bool(theirs)
    header += [
        "metric",
        "n pairs",
        "Δ mean ± std (points)",
        "95% t CI",
        "95% bootstrap CI",
        "p (paired t)",
        "MDD (points)",
    ]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, rec in shown.iterrows():
        mean = "—" if pd.isna(rec["mean_diff"]) else f"{rec['mean_diff'] * 100:+.2f}"
        if not pd.isna(rec["std_diff"]):
            mean += f" ± {rec['std_diff'] * 100:.2f}"
        p = "—" if pd.isna(rec["p_value"]) else f"{rec['p_value']:.3g}"
        cells = [sweep_axes.display(rec[c]) for c in group] + [rec["strategy"]]
        cells += [sweep_axes.display(rec[k]) for k in knobs]
        if theirs:
            variant = sweep_axes.describe({k: rec[stats.baseline_column(k)] for k in knobs}, names)
            cells.append(f"{BASELINE} ({variant})" if variant else BASELINE)
        cells.append(label(rec["metric"]))
        cells += [str(int(rec["n_pairs"])), mean, _interval(rec["t_low"], rec["t_high"])]
        cells += [_interval(rec["boot_low"], rec["boot_high"]), p, _mdd(rec)]
        lines.append("| " + " | ".join(cells) + " |")
    knob_text = (
        f" The strategy's own knobs ({', '.join(names[k] for k in knobs)}) are not matched: "
        f"every value is compared with the same `{BASELINE}` runs."
        if knobs
        else ""
    )
    lines += [
        "",
        f"Δ = strategy − {BASELINE} on the same dataset, seed and values of every other axis, "
        f"in accuracy points.{knob_text} t CI: paired t interval; bootstrap CI: percentile "
        "bootstrap of the mean difference (10,000 resamples, seed 0); p: two-sided paired "
        f"t-test; MDD: the smallest true Δ this test (α 0.05, two-sided) detects with "
        f"{stats.MDD_POWER:.0%} power at the observed std and n pairs (noncentral t): a "
        "non-significant Δ with an MDD above the difference that matters means too few "
        "seeds, not equal ('n < 2': undefined). All pairs and MAP are in comparison.csv.",
    ]
    return lines


def skipped_samples_markdown(frame: pd.DataFrame) -> list[str]:
    """A section listing runs whose loader skipped samples (missing or broken files), so a
    shrunken test set is never silent; empty when none did."""
    columns = [c for c in frame.columns if c.startswith("skipped_")]
    if not columns:
        return []
    counts = frame[columns].fillna(0).astype(int)
    shrunk = frame[(counts > 0).any(axis=1)]
    if shrunk.empty:
        return []
    lines = ["## Samples skipped by the loaders (missing or broken files; see runs.csv)", ""]
    for index, rec in shrunk.iterrows():
        parts = ", ".join(
            f"{int(counts.at[index, c])} {c.removeprefix('skipped_')}"
            for c in columns
            if counts.at[index, c] > 0
        )
        lines.append(f"- `{rec['run_dir']}`: {parts}")
    return lines + [""]


def markdown(
    board: pd.DataFrame,
    frame: pd.DataFrame,
    comparison: pd.DataFrame | None = None,
    warnings: Sequence[str] = (),
) -> str:
    """The leaderboard as Markdown: one table per protocol, one for cost, the comparison."""
    done = frame[frame["status"] == "completed"]
    revs = ", ".join(sorted(done["git_rev"].astype(str).unique())) or "none"
    lines = [
        f"{len(frame)} runs ({len(done)} completed); code revision(s) of completed runs: {revs}.",
        "",
    ]
    if warnings:
        lines += ["**Pooled despite differences (--allow-mixed):**", ""]
        lines += [f"- {w}" for w in warnings] + [""]
    for protocol in PROTOCOLS:
        metrics = protocol_metrics(frame, protocol)
        if not metrics:
            continue
        lines += [f"## Protocol `{protocol}`: {PROTOCOL_TEXT[protocol]}", ""]
        lines += _table(board, frame, metrics) + [""]
    costs = cost_metrics(frame)
    if costs:
        lines += ["## Gradient conflict and cost (whole run, protocol-free)", ""]
        lines += _table(board, frame, costs) + [""]
    if comparison is not None:
        lines += comparison_markdown(comparison, frame) + [""]
    unreadable = frame[frame["status"] == UNREADABLE]
    if len(unreadable):
        lines += ["## Unreadable runs (not pooled; delete the file and rerun the job)", ""]
        lines += [f"- `{rec['run_dir']}`: {rec['error']}" for _, rec in unreadable.iterrows()]
        lines += [""]
    lines += skipped_samples_markdown(frame)
    lines += [
        "## Notes",
        "",
        "Rows: strategy and every other axis that varies (named axes, and config keys in "
        "which runs of one group choice differ, headed by their last dotted component; '—': "
        "the run has no such key, e.g. gamma of uniform); runs of different settings are "
        "never pooled. "
        "Accuracy, MAP and conflict rate in %, mean ± std (sample std) over seeds; n = "
        "completed runs; failed, interrupted, missing (no metrics.json: killed or still "
        "running) and unreadable (corrupt metrics.json) runs are counted beside n and never "
        "pooled. 'no val split': the dataset has no validation split "
        "(dataset.build.val_per_class: 0), so the val protocol does not exist for that cell. "
        "Bold: the best mean of its column (higher accuracy/MAP, lower ms/step; ties all "
        "bold). MAP: macro average precision of the fused softmax scores. acc[m]: the jointly "
        "trained unimodal head of modality m at the protocol's epoch ('untrained' when its "
        "loss is never back-propagated). cos[m]: mean cosine between the fused and unimodal "
        "gradients of encoder m; conflict rate[m]: share of logged steps with negative cosine.",
    ]
    return "\n".join(lines) + "\n"


def comparison_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Paired comparison of every strategy against ``BASELINE`` (acc and MAP, each protocol).

    Pairs match on the seed and on the values of every axis but the strategy's own: dataset,
    the other named axes and every setting axis outside ``strategy.*``. A strategy's own
    knobs (``strategy.*`` setting axes, e.g. ``strategy.method.gamma``) are not matched:
    each of their values is a row, compared with the same baseline runs (which have no such
    key). A baseline knob that varies makes each baseline value a separate baseline
    (``baseline[<key>]`` columns). Since every differing config key is an axis, runs of
    different settings outside the strategy (e.g. other epochs or lr) are never paired.
    """
    done = identified(frame[frame["status"] == "completed"])
    knobs = strategy_axes(frame)
    group = [c for c in cell_keys(frame) if c != "strategy" and c not in knobs]
    metrics = [f"{p}_{m}" for p in PROTOCOLS for m in ("acc", "map")]
    comparison = stats.compare_to_baseline(
        done, metrics, group, seed_key="seed", baseline=BASELINE, variant=knobs
    )
    unused = [stats.baseline_column(k) for k in knobs]
    unused = [c for c in unused if comparison[c].isna().all()]
    comparison = comparison.drop(columns=unused)
    if comparison.empty:
        return comparison
    comparison["order"] = comparison["metric"].map(metrics.index)
    keys = ["order", *group, "strategy", *knobs]
    return sweep_axes.sort_rows(comparison, keys).drop(columns="order")


def write_leaderboard(
    paths: Iterable[Path],
    name: str,
    out_root: Path = Path("outputs/leaderboards"),
    allow_mixed: bool = False,
    smooth: int = 5,
    plot: bool = True,
) -> Path:
    """Collect the runs under ``paths`` into ``out_root/name/``; returns that folder.

    Writes runs.csv, leaderboard.csv, comparison.csv, leaderboard.md and (``plot``)
    plots/*.png, the cosine curves smoothed over ``smooth`` logged steps.
    Every config key in which runs differ is a row axis, so runs of different settings are
    never pooled. Raises :class:`MixedRunsError` when a cell would pool different code
    revisions, a seed twice or runs without a recorded config, unless ``allow_mixed``.
    """
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"leaderboard name {name!r}: use a plain folder name like 'bench'")
    paths = list(map(Path, paths))
    frame = load_runs(paths)
    problems = mixing_problems(frame)
    if problems and not allow_mixed:
        raise MixedRunsError(problems, collect_command(paths, name, out_root, allow_mixed=True))
    board = leaderboard(frame)
    comparison = comparison_frame(frame)
    out = Path(out_root) / name
    atomic.write_text(out / "runs.csv", frame.drop(columns="setup").to_csv(index=False))
    atomic.write_text(out / "leaderboard.csv", wide(board, frame).to_csv(index=False))
    atomic.write_text(out / "comparison.csv", comparison.to_csv(index=False))
    text = markdown(board, frame, comparison, problems)
    atomic.write_text(out / "leaderboard.md", f"# Leaderboard: {name}\n\n" + text)
    if plot:
        plots.write_plots(frame, out / "plots", row_axes(frame), smooth=smooth)
    return out
