"""bench-approx: the side-by-side measurement of representation-level vs exact MMPareto."""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import pytest
import torch
from conftest import make_conflicting, step_losses, tiny_batch, tiny_model

from mmbench.bench import approximation
from mmbench.strategies.mmpareto import MMPareto
from mmbench.strategies.mmpareto_rep import MMParetoRep


def aligned(model) -> None:
    """Fused head = the unimodal heads side by side: no conflict at either level."""
    with torch.no_grad():
        weights = [model.heads[m].weight for m in model.modality_names]
        model.fusion.fc_out.weight.copy_(torch.cat(weights, dim=1))
        model.fusion.fc_out.bias.copy_(sum(model.heads[m].bias for m in model.modality_names))


def test_measure_step_leaves_the_exact_update_and_agrees_without_conflict() -> None:
    model, batch = tiny_model(3), tiny_batch(3)
    aligned(model)
    reference = copy.deepcopy(model)
    MMPareto().backward(reference, step_losses(reference, batch))
    rows = approximation.measure_step(model, step_losses(model, batch), MMPareto(), MMParetoRep())
    for (key, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=key)  # the exact step is what trains
    for row in rows:
        assert row["cos_exact"] > 0 and row["cos_rep"] > 0
        assert row["update_cos"] == pytest.approx(1.0, abs=1e-5)
        assert row["norm_ratio"] == pytest.approx(1.0, abs=1e-5)


def test_measure_step_sees_the_difference_under_conflict() -> None:
    model, batch = tiny_model(2), tiny_batch(5)
    make_conflicting(model)
    rows = approximation.measure_step(model, step_losses(model, batch), MMPareto(), MMParetoRep())
    assert {r["encoder"] for r in rows} == {"gray", "color"}
    for row in rows:
        assert row["cos_exact"] < 0 and row["cos_rep"] < 0
        assert -1 <= row["update_cos"] < 1 - 1e-4 and row["norm_ratio"] > 0


def record(step: int, encoder: str, exact: float, rep: float, cos: float = 1.0) -> dict:
    return {
        "step": step,
        "encoder": encoder,
        "cos_exact": exact,
        "cos_rep": rep,
        "update_cos": cos,
        "norm_ratio": 1.0,
    }


def test_summary_and_adaptive_shares_count_by_hand() -> None:
    records = [
        record(0, "a", 0.5, 0.4),  # both: no conflict
        record(1, "a", -0.2, 0.1, cos=0.5),  # exact conflict, rep not: differs unless tau >= 0.1
        record(2, "a", -0.3, -0.1, cos=0.9),  # both conflict
        record(3, "a", 0.2, 0.03, cos=0.8),  # rep conflict only at tau >= 0.03
    ]
    (row,) = approximation.summarise(records)
    assert row["steps"] == 4 and row["conflict_steps"] == 2
    assert row["conflict_exact"] == 0.5 and row["conflict_rep"] == 0.25
    assert row["decision_agreement"] == 0.75
    assert row["conflict_update_cos_mean"] == pytest.approx(0.7)
    modes = {m["exact_below"]: m for m in approximation.adaptive(records, (0.0, 0.05, 0.1))}
    assert modes[0.0]["exact_step_share"] == 0.25 and modes[0.0]["differs_from_exact_share"] == 0.25
    assert modes[0.05]["exact_step_share"] == 0.5
    assert modes[0.1]["exact_step_share"] == 0.75 and modes[0.1]["differs_from_exact_share"] == 0


def test_tiny_run_writes_the_report(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "approximation.csv"
    argv = ["--steps", "2", "--out", str(out), "dataset.build.test_per_class=4"]
    assert approximation.main(argv) == 0
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert [r["encoder"] for r in rows] == ["gray", "color"]
    for r in rows:
        assert r["steps"] == "2" and 0 <= float(r["decision_agreement"]) <= 1
        assert -1 <= float(r["update_cos_mean"]) <= 1 + 1e-6
    with (tmp_path / "approximation_steps.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 4
    text = out.with_suffix(".md").read_text()
    assert "decisions agree" in text and "exact_below" in text and "lr 0.01, batch 32" in text
