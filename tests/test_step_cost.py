"""The step-cost table runs tiny and has the documented columns, classes and values."""

from __future__ import annotations

import csv
from pathlib import Path

from mmbench.bench import step_cost


def test_every_strategy_config_is_priced_with_a_cost_class() -> None:
    configs = {
        p.stem for p in (Path(step_cost.__file__).parents[2] / "conf/strategy").glob("*.yaml")
    }
    assert configs | {"official_4pass"} == set(step_cost.STRATEGIES)
    assert {step_cost.cost_class(s) for s in step_cost.STRATEGIES} <= set(step_cost.COST_CLASSES)
    assert step_cost.cost_class("uniform") == "one backward"
    assert step_cost.cost_class("pcgrad") == "two backward"
    assert step_cost.cost_class("agm") == "extra forward"
    assert step_cost.cost_class("mmpareto_rep") == "one backward"
    assert step_cost.cost_class("mgda_ub") == "one backward"


def test_tiny_step_cost_table(tmp_path: Path) -> None:
    out = tmp_path / "cost.csv"
    argv = [
        "--out",
        str(out),
        "--models",
        "convnet_pair_28",
        "--strategies",
        "agm",
        "pcgrad",
        "--steps",
        "2",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--device",
        "cpu",
    ]
    assert step_cost.main(argv) == 0
    with out.open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames[:5] == [
        "model",
        "strategy",
        "ms_per_step",
        "ratio_to_uniform",
        "cost_class",
    ]
    assert [r["strategy"] for r in rows] == ["uniform", "pcgrad", "agm"]  # grouped by class
    assert [r["cost_class"] for r in rows] == ["one backward", "two backward", "extra forward"]
    for row in rows:
        assert float(row["ms_per_step"]) > 0 and float(row["ratio_to_uniform"]) > 0
        assert float(row["ms_q1"]) <= float(row["ms_per_step"]) <= float(row["ms_q3"])
        assert row["timed_steps"] == "2" and int(row["threads"]) >= 1
        assert row["host_memory"] == "kept"  # as in training (glibc on Linux)
    assert float(rows[0]["ratio_to_uniform"]) == 1.0


def test_paired_ratio_cancels_machine_drift_and_ignores_an_outlier_round() -> None:
    speed = [1.0, 2.5, 1.2, 3.0, 1.1]  # the shared machine slows down and recovers
    uniform = [[10 * s, 10 * s] for s in speed]
    strategy = [[17 * s, 17 * s] for s in speed]
    strategy[1] = [300.0, 300.0]  # one round hit by a burst of interference
    assert step_cost.paired_ratio(strategy, uniform) == 1.7
    assert step_cost.paired_ratio(uniform, uniform) == 1.0
