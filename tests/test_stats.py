"""Paired statistics against hand-computed values and scipy."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate
from scipy import stats as sps

from mmbench.stats import (
    bootstrap_interval,
    compare_to_baseline,
    mdd_normal,
    mean_std,
    minimum_detectable_difference,
    paired_differences,
    paired_t_power,
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


def power_by_integration(shift: float, n: int, alpha: float = 0.05) -> float:
    """Paired t power without the noncentral t: t = (Z + λ) / sqrt(V / ν), V ~ χ²_ν, so
    P(|t| > c) = ∫ [Φ(-c sqrt(v/ν) - λ) + 1 - Φ(c sqrt(v/ν) - λ)] f_χ²(v) dv."""
    df = n - 1
    c = sps.t.ppf(1 - alpha / 2, df)

    def integrand(v: float) -> float:
        edge = c * math.sqrt(v / df)
        reject = sps.norm.cdf(-edge - shift) + sps.norm.sf(edge - shift)
        return reject * sps.chi2.pdf(v, df)

    return integrate.quad(integrand, 0, np.inf, limit=200)[0]


@pytest.mark.parametrize("n", [2, 3, 5, 12])
def test_paired_t_power_against_numeric_integration(n: int) -> None:
    for shift in (0.0, 1.0, 3.0, 6.0):
        assert paired_t_power(shift, n) == pytest.approx(power_by_integration(shift, n), abs=1e-6)
    assert paired_t_power(0.0, n) == pytest.approx(0.05)  # no shift: the test's level


def test_mdd_has_80_percent_power() -> None:
    # n = 3, s = 0.02: λ* solves power(λ*) = 0.8 with 2 df; found by numeric integration
    mdd = minimum_detectable_difference(0.02, 3)
    assert power_by_integration(mdd / (0.02 / math.sqrt(3)), 3) == pytest.approx(0.8, abs=1e-6)
    assert mdd == pytest.approx(0.0652809, rel=1e-5)  # λ* = 5.65349
    # Monte-Carlo: draw n = 5 differences ~ N(MDD, s²) 40,000 times; the paired t-test rejects
    # in 80 % of them (standard error 0.2 %).
    n, s = 5, 0.03
    mdd = minimum_detectable_difference(s, n)
    draws = np.random.default_rng(0).normal(mdd, s, size=(40_000, n))
    t = draws.mean(axis=1) / (draws.std(axis=1, ddof=1) / math.sqrt(n))
    rate = np.mean(np.abs(t) > sps.t.ppf(0.975, n - 1))
    assert rate == pytest.approx(0.8, abs=0.01)


def test_mdd_normal_approximation_and_degenerate_cases() -> None:
    # (z_0.975 + z_0.8) = 1.959964 + 0.841621 = 2.801585
    assert mdd_normal(1.0, 1) != mdd_normal(1.0, 1)  # NaN
    assert mdd_normal(0.02, 3) == pytest.approx(2.801585 * 0.02 / math.sqrt(3))
    assert minimum_detectable_difference(0.02, 3) > 2 * mdd_normal(0.02, 3)  # 5.65 vs 2.80
    # many pairs: the t and the normal solutions agree (within 0.5 % at n = 200)
    assert minimum_detectable_difference(1.0, 200) == pytest.approx(mdd_normal(1.0, 200), rel=5e-3)
    assert math.isnan(minimum_detectable_difference(0.02, 1))
    assert math.isnan(minimum_detectable_difference(math.nan, 4))
    assert minimum_detectable_difference(0.0, 4) == 0.0
    with pytest.raises(ValueError, match="alpha"):
        minimum_detectable_difference(0.02, 3, alpha=0.9, power=0.8)
    assert summarize(DIFFS)["mdd"] == pytest.approx(minimum_detectable_difference(0.02, 3))
    assert math.isnan(summarize([0.1])["mdd"])


def test_strategy_variants_pair_with_the_same_baseline_runs() -> None:
    frame = hand_frame()
    frame["gamma"] = [np.nan if s != "mmpareto" else 1.0 for s in frame["strategy"]]
    extra = frame[(frame["strategy"] == "mmpareto") & (frame["dataset"] == "a")].copy()
    extra = extra.assign(gamma=2.0, acc=extra["acc"] + 0.01)
    frame = pd.concat([frame, extra], ignore_index=True)
    table = compare_to_baseline(frame, ["acc"], ["dataset"], variant=["gamma"])
    a = table[(table["dataset"] == "a") & (table["strategy"] == "mmpareto")].set_index("gamma")
    assert a["n_pairs"].to_dict() == {1.0: 3, 2.0: 3}
    assert a["mean_diff"].to_dict() == pytest.approx({1.0: 0.12, 2.0: 0.13})
    assert table["baseline[gamma]"].isna().all()  # uniform has no gamma
