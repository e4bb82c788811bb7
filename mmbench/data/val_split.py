"""Seeded, class-stratified validation carve-out from a training list."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def carve_validation(
    labels: Sequence[int], val_per_class: int, seed: int
) -> tuple[list[int], list[int]]:
    """``(train_positions, val_positions)``: ``val_per_class`` random items of each class go
    to val (at most all but one, so every class keeps a training sample); 0 disables val.
    Both lists are sorted, so the result depends only on ``labels``, the count and ``seed``.
    """
    if val_per_class < 0:
        raise ValueError(f"val_per_class must be >= 0, got {val_per_class}")
    labels_arr = np.asarray(labels, dtype=np.int64)
    if val_per_class == 0:
        return list(range(len(labels_arr))), []
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for label in np.unique(labels_arr):
        members = rng.permutation(np.flatnonzero(labels_arr == label))
        val.extend(members[: min(val_per_class, len(members) - 1)].tolist())
    val_set = set(val)
    train = [i for i in range(len(labels_arr)) if i not in val_set]
    return train, sorted(val)
