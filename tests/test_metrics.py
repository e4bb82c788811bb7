"""Accuracy, MAP and the conflict summary on hand-made inputs."""

from __future__ import annotations

import numpy as np
import pytest

from mmbench.metrics import accuracy, average_precision, conflict_summary, macro_average_precision


def test_average_precision_by_hand() -> None:
    # Ranking: + - + -  -> precision at the hits 1/1 and 2/3 -> AP = (1 + 2/3) / 2.
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    assert average_precision(scores, np.array([1, 0, 1, 0])) == pytest.approx(5 / 6)
    # Ties form one threshold: both tied items count together.
    tied = np.array([0.5, 0.5, 0.1])
    assert average_precision(tied, np.array([1, 0, 1])) == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    assert np.isnan(average_precision(scores, np.zeros(4)))


def test_average_precision_matches_scikit_learn() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(20):
        scores = rng.integers(0, 6, 50) / 5.0  # many ties
        positives = rng.random(50) < 0.3
        expected = sklearn_metrics.average_precision_score(positives, scores)
        assert average_precision(scores, positives) == pytest.approx(expected)


def test_macro_average_precision_and_accuracy() -> None:
    probs = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9]])
    labels = np.array([0, 1, 1, 1])
    assert accuracy(probs, labels) == 0.75
    ap0 = average_precision(probs[:, 0], labels == 0)
    ap1 = average_precision(probs[:, 1], labels == 1)
    assert macro_average_precision(probs, labels) == pytest.approx((ap0 + ap1) / 2)


def test_conflict_summary() -> None:
    rows = [{"encoder": "a", "cos": c} for c in (0.5, -0.2, -0.1, 0.0)]
    rows += [{"encoder": "b", "cos": 0.3}]
    summary = conflict_summary(rows)
    assert summary["a"] == {"mean_cos": pytest.approx(0.05), "conflict_rate": 0.5, "steps": 4}
    assert summary["b"]["conflict_rate"] == 0.0
