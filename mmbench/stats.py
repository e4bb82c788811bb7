"""Paired comparison of strategies against a baseline over matched seeds (pure functions).

For one metric, a strategy S and the baseline B are paired on every run identity but the
strategy (dataset, the other config axes, seed): ``d_i = S_i - B_i`` for the n matched seeds.
From the differences:

- mean ``d̄ = Σ d_i / n``, sample std ``s = sqrt(Σ (d_i - d̄)² / (n - 1))``;
- paired t interval ``d̄ ± t_{1-α/2, n-1} · s / sqrt(n)``;
- paired t-test ``t = d̄ / (s / sqrt(n))``, two-sided ``p = 2 · P(T_{n-1} > |t|)``
  (identical to ``scipy.stats.ttest_rel(S, B)``);
- percentile bootstrap interval: resample the n differences with replacement
  ``resamples`` times (seeded), take the α/2 and 1-α/2 quantiles of the resampled means.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

SUMMARY_FIELDS = [
    "n_pairs",
    "mean_diff",
    "std_diff",
    "t_low",
    "t_high",
    "boot_low",
    "boot_high",
    "p_value",
]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """``(d̄, s)``: the mean and the sample standard deviation (ddof 1; NaN when n < 2)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return math.nan, math.nan
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else math.nan


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Paired t interval ``d̄ ± t_{1-α/2, n-1} · s / sqrt(n)`` (NaN bounds when n < 2)."""
    mean, std = mean_std(values)
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    half = float(sps.t.ppf(0.5 + confidence / 2, df=n - 1)) * std / math.sqrt(n)
    return mean - half, mean + half


def paired_t_pvalue(values: Sequence[float]) -> float:
    """Two-sided p of ``t = d̄ / (s / sqrt(n))`` with n-1 degrees of freedom.

    NaN when n < 2 or when every difference is 0; 0 when the differences are equal and
    non-zero (s = 0) — the same conventions as ``scipy.stats.ttest_rel``.
    """
    mean, std = mean_std(values)
    n = len(values)
    if n < 2:
        return math.nan
    if std == 0:
        return math.nan if mean == 0 else 0.0
    t = mean / (std / math.sqrt(n))
    return float(2 * sps.t.sf(abs(t), df=n - 1))


def bootstrap_interval(
    values: Sequence[float], confidence: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (seeded; NaN bounds when n < 2)."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    alpha = 1 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def summarize(
    values: Sequence[float], confidence: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> dict[str, float]:
    """Every statistic of ``SUMMARY_FIELDS`` for one set of paired differences."""
    mean, std = mean_std(values)
    t_low, t_high = t_interval(values, confidence)
    boot_low, boot_high = bootstrap_interval(values, confidence, resamples, seed)
    return {
        "n_pairs": len(values),
        "mean_diff": mean,
        "std_diff": std,
        "t_low": t_low,
        "t_high": t_high,
        "boot_low": boot_low,
        "boot_high": boot_high,
        "p_value": paired_t_pvalue(values),
    }


def paired_differences(
    frame: pd.DataFrame,
    metric: str,
    match: Sequence[str],
    baseline: str = "uniform",
) -> pd.DataFrame:
    """One row per (strategy, matched run identity): the strategy's value minus the baseline's.

    ``frame`` holds one row per completed run with a ``strategy`` column, the ``match``
    columns (e.g. dataset, the other axes and ``seed``) and ``metric``. Runs repeated with the
    same identity are averaged first. Returns the ``match`` columns, ``strategy``,
    ``value``, ``baseline_value`` and ``diff``; strategies other than the baseline only.
    """
    keys = list(match)
    columns = [*keys, "strategy", "value", "baseline_value", "diff"]
    data = frame[[*keys, "strategy", metric]].copy()
    data[metric] = pd.to_numeric(data[metric], errors="coerce")
    data = data.dropna(subset=[metric])
    if data.empty:
        return pd.DataFrame(columns=columns)
    means = data.groupby([*keys, "strategy"], dropna=False, as_index=False)[metric].mean()
    base = means[means["strategy"] == baseline].drop(columns="strategy")
    base = base.rename(columns={metric: "baseline_value"})
    other = means[means["strategy"] != baseline].rename(columns={metric: "value"})
    pairs = other.merge(base, on=keys, how="inner")
    pairs["diff"] = pairs["value"] - pairs["baseline_value"]
    return pairs[columns].reset_index(drop=True)


def compare_to_baseline(
    frame: pd.DataFrame,
    metrics: Sequence[str],
    group: Sequence[str],
    seed_key: str = "seed",
    baseline: str = "uniform",
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> pd.DataFrame:
    """The paired comparison table: per ``group`` (e.g. dataset + other axes), strategy, metric.

    Pairs are matched on ``group`` and ``seed_key``; each row carries ``SUMMARY_FIELDS``
    computed by :func:`summarize` on the differences (strategy - baseline).
    """
    records = []
    for metric in metrics:
        if metric not in frame:
            continue
        pairs = paired_differences(frame, metric, [*group, seed_key], baseline)
        for key, chunk in pairs.groupby([*group, "strategy"], dropna=False, sort=True):
            record = dict(zip([*group, "strategy"], key, strict=True))
            record.update({"baseline": baseline, "metric": metric})
            record.update(summarize(chunk["diff"].tolist(), confidence, resamples, seed))
            records.append(record)
    return pd.DataFrame(
        records, columns=[*group, "strategy", "baseline", "metric", *SUMMARY_FIELDS]
    )
