"""Evaluation metrics: accuracy, MAP, and the gradient-conflict summary."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np


def accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of samples whose arg-max score is the label."""
    return float((scores.argmax(1) == labels).mean())


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """AP of one class: sum_n (R_n - R_{n-1}) P_n over the ranking by score (ties grouped).

    The step-wise definition (no interpolation), as scikit-learn computes it. NaN when the
    class has no positive sample.
    """
    n_pos = int(positives.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, hits = scores[order], positives[order].astype(np.float64)
    # Last index of every group of equal scores: thresholds between distinct values.
    ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(sorted_scores) - 1]
    tp = np.cumsum(hits)[ends]
    precision = tp / (ends + 1)
    recall_steps = np.diff(np.r_[0.0, tp]) / n_pos
    return float((recall_steps * precision).sum())


def macro_average_precision(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """MAP: the mean over classes (present in ``labels``) of one-vs-rest AP of the scores.

    The official MMPareto code does not compute MAP; the paper reports it. We compute it
    on the fused softmax probabilities.
    """
    aps = [
        average_precision(probabilities[:, c], labels == c)
        for c in range(probabilities.shape[1])
        if (labels == c).any()
    ]
    return float(np.mean(aps))


def conflict_summary(rows: Iterable[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Per encoder over logged steps: mean cosine(g_mm, g_u) and conflict rate (cos < 0)."""
    cosines: dict[str, list[float]] = {}
    for row in rows:
        cosines.setdefault(str(row["encoder"]), []).append(float(row["cos"]))
    return {
        enc: {
            "mean_cos": float(np.mean(c)),
            "conflict_rate": float(np.mean(np.array(c) < 0)),
            "steps": len(c),
        }
        for enc, c in cosines.items()
    }
