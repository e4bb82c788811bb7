"""Paired comparison of strategies against a baseline over matched seeds (pure functions).

For one metric, a strategy S and the baseline B are paired on every run identity but the
strategy (dataset, the other config axes, seed): ``d_i = S_i - B_i`` for the n matched seeds.
From the differences:

- mean ``d̄ = Σ d_i / n``, sample std ``s = sqrt(Σ (d_i - d̄)² / (n - 1))``;
- paired t interval ``d̄ ± t_{1-α/2, n-1} · s / sqrt(n)``;
- paired t-test ``t = d̄ / (s / sqrt(n))``, two-sided ``p = 2 · P(T_{n-1} > |t|)``
  (identical to ``scipy.stats.ttest_rel(S, B)``);
- percentile bootstrap interval: resample the n differences with replacement
  ``resamples`` times (seeded), take the α/2 and 1-α/2 quantiles of the resampled means;
- minimum detectable difference (MDD): the smallest true mean difference that this paired
  t-test (two-sided, level α) would detect with probability ``power`` (0.8) given the
  observed s and n, from the noncentral t distribution (see
  :func:`minimum_detectable_difference`). A non-significant Δ with an MDD larger than the
  differences one cares about means "too few seeds", not "equal".

A strategy may come in variants (``variant`` columns, e.g. ``strategy.method.gamma``): each
variant is paired with the same baseline runs; if the baseline has variants of its own,
each is a separate baseline (its values in ``baseline[<column>]``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps
from scipy.optimize import brentq

SUMMARY_FIELDS = [
    "n_pairs",
    "mean_diff",
    "std_diff",
    "t_low",
    "t_high",
    "boot_low",
    "boot_high",
    "p_value",
    "mdd",
]
MDD_POWER = 0.8


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


def paired_t_power(shift: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test of level α with n pairs at a standardised shift.

    ``shift`` is λ = δ / (σ / sqrt(n)), the true mean difference δ in standard errors. Under
    it ``t = d̄ / (s / sqrt(n))`` follows the noncentral t with n-1 degrees of freedom and
    noncentrality λ, so ``power = 1 - F(t_c; n-1, λ) + F(-t_c; n-1, λ)`` with
    ``t_c = t_{1-α/2, n-1}`` (``scipy.stats.nct``); the lower tail is taken as
    ``1 - F(t_c; n-1, -λ)`` (the same by symmetry, and finite where scipy's far-tail cdf is
    not). NaN when n < 2.
    """
    if n < 2:
        return math.nan
    critical = float(sps.t.ppf(1 - alpha / 2, df=n - 1))
    upper = sps.nct.sf(critical, df=n - 1, nc=shift)
    lower = sps.nct.sf(critical, df=n - 1, nc=-shift)
    return float(upper + lower)


def minimum_detectable_difference(
    std: float, n: int, alpha: float = 0.05, power: float = MDD_POWER
) -> float:
    """MDD = λ* · s / sqrt(n), λ* solving ``paired_t_power(λ*, n, α) = power`` (exact).

    The normal approximation is ``(z_{1-α/2} + z_{power}) · s / sqrt(n)`` (2.80 s / sqrt(n)
    at α 0.05, power 0.8; :func:`mdd_normal`); the exact value is larger, much so for few
    pairs (λ* = 5.65 at n = 3, 3.76 at n = 5, 3.15 at n = 10, against 2.80). NaN when
    n < 2 or s is NaN; 0 when s = 0.
    """
    if not 0 < alpha < power < 1:
        raise ValueError(f"MDD needs 0 < alpha < power < 1, got alpha={alpha}, power={power}")
    if n < 2 or math.isnan(std):
        return math.nan
    if std == 0:
        return 0.0
    high = float(sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)) + 1.0
    while paired_t_power(high, n, alpha) < power:
        high *= 2
    shift = brentq(lambda lam: paired_t_power(lam, n, alpha) - power, 0.0, high, xtol=1e-10)
    return float(shift * std / math.sqrt(n))


def mdd_normal(std: float, n: int, alpha: float = 0.05, power: float = MDD_POWER) -> float:
    """The normal approximation ``(z_{1-α/2} + z_{power}) · s / sqrt(n)`` (NaN when n < 2)."""
    if n < 2 or math.isnan(std):
        return math.nan
    z = float(sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power))
    return z * std / math.sqrt(n)


def summarize(
    values: Sequence[float],
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
    power: float = MDD_POWER,
) -> dict[str, float]:
    """Every statistic of ``SUMMARY_FIELDS`` for one set of paired differences
    (the MDD at level α = 1 - ``confidence`` and the given ``power``)."""
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
        "mdd": minimum_detectable_difference(std, len(values), 1 - confidence, power),
    }


def baseline_column(column: str) -> str:
    """The name under which a baseline run's ``variant`` column is reported."""
    return f"baseline[{column}]"


def paired_differences(
    frame: pd.DataFrame,
    metric: str,
    match: Sequence[str],
    baseline: str = "uniform",
    variant: Sequence[str] = (),
) -> pd.DataFrame:
    """One row per (strategy variant, baseline variant, matched identity): strategy - baseline.

    ``frame`` holds one row per completed run with a ``strategy`` column, the ``match``
    columns (e.g. dataset, the other axes and ``seed``), the ``variant`` columns (a
    strategy's own knobs, e.g. ``strategy.method.gamma``; NaN where a strategy has no such
    knob) and ``metric``. Runs repeated with the same identity are averaged first. Every
    variant of a strategy is paired with every variant of the baseline on equal ``match``
    values. Returns the ``match`` columns, ``strategy``, the ``variant`` columns, their
    baseline values (:func:`baseline_column`), ``value``, ``baseline_value`` and ``diff``;
    strategies other than the baseline only.
    """
    keys, knobs = list(match), list(variant)
    theirs = [baseline_column(c) for c in knobs]
    columns = [*keys, "strategy", *knobs, *theirs, "value", "baseline_value", "diff"]
    data = frame[[*keys, "strategy", *knobs, metric]].copy()
    data[metric] = pd.to_numeric(data[metric], errors="coerce")
    data = data.dropna(subset=[metric])
    if data.empty:
        return pd.DataFrame(columns=columns)
    means = data.groupby([*keys, "strategy", *knobs], dropna=False, as_index=False)[metric].mean()
    base = means[means["strategy"] == baseline].drop(columns="strategy")
    base = base.rename(columns={metric: "baseline_value", **dict(zip(knobs, theirs, strict=True))})
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
    variant: Sequence[str] = (),
    power: float = MDD_POWER,
) -> pd.DataFrame:
    """The paired comparison table: per ``group`` (e.g. dataset + other axes), strategy
    variant, baseline variant and metric.

    Pairs are matched on ``group`` and ``seed_key`` (see :func:`paired_differences` for
    ``variant``); each row carries ``SUMMARY_FIELDS`` computed by :func:`summarize` on the
    differences (strategy - baseline).
    """
    knobs = list(variant)
    theirs = [baseline_column(c) for c in knobs]
    keys = [*group, "strategy", *knobs, *theirs]
    records = []
    for metric in metrics:
        if metric not in frame:
            continue
        pairs = paired_differences(frame, metric, [*group, seed_key], baseline, knobs)
        for key, chunk in pairs.groupby(keys, dropna=False, sort=True):
            record = dict(zip(keys, key, strict=True))
            record.update({"baseline": baseline, "metric": metric})
            diffs = chunk["diff"].tolist()
            record.update(summarize(diffs, confidence, resamples, seed, power))
            records.append(record)
    return pd.DataFrame(
        records,
        columns=[*group, "strategy", *knobs, "baseline", *theirs, "metric", *SUMMARY_FIELDS],
    )
