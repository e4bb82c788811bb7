"""Paired statistics against hand-computed values and scipy."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from mmbench.stats import (
    bootstrap_interval,
    compare_to_baseline,
    mean_std,
    paired_differences,
    paired_t_pvalue,
    summarize,
    t_interval,
)

# uniform 60/62/58 vs mmpareto 70/74/72 -> differences 0.10, 0.12, 0.14
UNIFORM = [0.60, 0.62, 0.58]
MMPARETO = [0.70, 0.74, 0.72]
DIFFS = [0.10, 0.12, 0.14]


def hand_frame() -> pd.DataFrame:
    rows = []
    for seed, (u, m) in enumerate(zip(UNIFORM, MMPARETO, strict=True)):
        rows += [
            {"dataset": "a", "strategy": "uniform", "seed": seed, "acc": u},
            {"dataset": "a", "strategy": "mmpareto", "seed": seed, "acc": m},
        ]
    rows += [
        {"dataset": "a", "strategy": "mmpareto", "seed": 7, "acc": 0.99},  # no uniform seed 7
        {"dataset": "a", "strategy": "mgda", "seed": 0, "acc": 0.50},  # one pair only
        {"dataset": "b", "strategy": "uniform", "seed": 0, "acc": 0.30},
        {"dataset": "b", "strategy": "mmpareto", "seed": 0, "acc": 0.40},
        {"dataset": "b", "strategy": "uniform", "seed": 1, "acc": 0.30},
        {"dataset": "b", "strategy": "mmpareto", "seed": 1, "acc": None},  # missing metric
    ]
    return pd.DataFrame(rows)


def test_mean_std_and_t_interval_by_hand() -> None:
    mean, std = mean_std(DIFFS)
    assert mean == pytest.approx(0.12)
    # s = sqrt((0.02² + 0 + 0.02²) / 2) = 0.02
    assert std == pytest.approx(0.02)
    # half width = t_{0.975, 2} * 0.02 / sqrt(3), t_{0.975, 2} = 4.302652729911275
    half = 4.302652729911275 * 0.02 / math.sqrt(3)
    low, high = t_interval(DIFFS)
    assert (low, high) == pytest.approx((0.12 - half, 0.12 + half))
    assert (low, high) == pytest.approx(
        sps.t.interval(0.95, df=2, loc=0.12, scale=0.02 / math.sqrt(3))
    )


def test_paired_t_pvalue_by_hand_and_against_scipy() -> None:
    # t = 0.12 / (0.02 / sqrt 3) = 6 sqrt 3; with 2 df, p = 1 - t / sqrt(t² + 2) = 1 - sqrt(108/110)
    assert paired_t_pvalue(DIFFS) == pytest.approx(1 - math.sqrt(108 / 110))
    assert paired_t_pvalue(DIFFS) == pytest.approx(sps.ttest_rel(MMPARETO, UNIFORM).pvalue)
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=8), rng.normal(size=8)
    assert paired_t_pvalue(list(a - b)) == pytest.approx(sps.ttest_rel(a, b).pvalue)


def test_degenerate_cases() -> None:
    assert math.isnan(paired_t_pvalue([0.1]))
    assert all(math.isnan(v) for v in t_interval([0.1]) + bootstrap_interval([0.1]))
    assert paired_t_pvalue([0.5, 0.5, 0.5]) == 0.0  # equal, non-zero differences
    assert math.isnan(paired_t_pvalue([0.0, 0.0]))
    summary = summarize([])
    assert summary["n_pairs"] == 0 and math.isnan(summary["mean_diff"])


def test_bootstrap_interval_is_seeded_and_exact_for_three_pairs() -> None:
    # Resampling 3 values: P(all three = 0.10) = 1/27 ≈ 3.7% > 2.5%, likewise for 0.14, so
    # the 2.5% / 97.5% quantiles of the resampled means are the minimum and the maximum.
    assert bootstrap_interval(DIFFS) == pytest.approx((0.10, 0.14))
    values = [0.3, -0.1, 0.2, 0.05, 0.4, 0.0]
    assert bootstrap_interval(values, seed=1) == bootstrap_interval(values, seed=1)
    low, high = bootstrap_interval(values, resamples=2000)
    assert min(values) <= low < np.mean(values) < high <= max(values)


def test_paired_differences_match_by_seed_and_axes() -> None:
    pairs = paired_differences(hand_frame(), "acc", ["dataset", "seed"])
    mm = pairs[(pairs["dataset"] == "a") & (pairs["strategy"] == "mmpareto")]
    assert mm["seed"].tolist() == [0, 1, 2]  # seed 7 has no uniform partner
    assert mm["diff"].tolist() == pytest.approx(DIFFS)
    b = pairs[pairs["dataset"] == "b"]
    assert b["seed"].tolist() == [0] and b["diff"].tolist() == pytest.approx([0.10])


def test_compare_to_baseline_table() -> None:
    table = compare_to_baseline(hand_frame(), ["acc", "absent"], ["dataset"]).set_index(
        ["dataset", "strategy"]
    )
    row = table.loc[("a", "mmpareto")]
    assert row["baseline"] == "uniform" and row["metric"] == "acc"
    assert row["n_pairs"] == 3
    assert row["mean_diff"] == pytest.approx(0.12) and row["std_diff"] == pytest.approx(0.02)
    assert row["p_value"] == pytest.approx(sps.ttest_rel(MMPARETO, UNIFORM).pvalue)
    assert (row["boot_low"], row["boot_high"]) == pytest.approx((0.10, 0.14))
    mgda = table.loc[("a", "mgda")]
    assert mgda["n_pairs"] == 1 and mgda["mean_diff"] == pytest.approx(-0.10)
    assert math.isnan(mgda["t_low"]) and math.isnan(mgda["p_value"])
    assert table.loc[("b", "mmpareto"), "n_pairs"] == 1
    assert ("a", "uniform") not in table.index
