"""Setting axes: the config keys in which collected runs differ become leaderboard axes.

A run's *setup* is its flattened config ``{dotted key: value}`` without the seed. The named
axes (the config group each run chose: ``dataset``, ``backbone``, ``fusion``, ``strategy``,
``optim``) already split a leaderboard. A key owned by group G (its first component) is a
*setting axis* when it takes more than one value among the runs that chose the same G:
``strategy.method.gamma`` across the ``mmpareto`` runs, ``optim.optimizer.lr`` across the
``sgd`` runs, any ``trainer.*`` key across all runs. A key that the run's group does not
have (``gamma`` of ``uniform``) is *absent*: NaN in the frame, "—" in Markdown. A run
without ``.hydra/config.yaml`` records only ``trainer.epochs``; its other keys are unknown
and count as no value (NaN), not as a difference. So does a key that no run of the run's own
code revision has while runs of another revision do: a knob added (or removed) by a code
change is a difference of revisions, which collect reports per cell, not of settings (runs of
one revision with and without a key, e.g. a ``+key=value`` override, still differ).

Consequence: two runs that agree on every named and setting axis have the same setup, so a
leaderboard cell never pools different settings as seeds, whatever the command line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

ABSENT = "—"
_NO_KEY = object()


def axis_value(value: Any) -> str:
    """A config value as an axis value: strings as they are, the rest as JSON (``1.5``,
    ``5``, ``null``, ``true``, ``[1, 2]``)."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def setting_axes(
    setups: Sequence[Mapping[str, Any]],
    groups: pd.DataFrame,
    recorded: Sequence[bool],
    order: Sequence[str] = (),
    revisions: Sequence[str] | None = None,
) -> list[str]:
    """The dotted keys that vary among runs of one choice of their owning group.

    ``setups[i]`` is run i's setup, ``groups`` its named axes (one row per run, a column per
    group name), ``recorded[i]`` whether its whole config was read (False: only the keys
    it has are known) and ``revisions[i]`` its code revision (None: all one revision). Keys
    are ordered by their group's position in ``order``, then by name.
    """
    revisions = [""] * len(setups) if revisions is None else list(revisions)
    if not (len(setups) == len(groups) == len(recorded) == len(revisions)):
        raise ValueError("setups, groups, recorded and revisions must describe the same runs")
    owners = groups.reset_index(drop=True)
    found = []
    for key in sorted({k for s in setups for k in s}):
        owner = key.split(".", 1)[0]
        having = {rev for setup, rev in zip(setups, revisions, strict=True) if key in setup}
        seen: dict[str, set[str]] = {}
        for i, (setup, whole) in enumerate(zip(setups, recorded, strict=True)):
            value = setup.get(key, _NO_KEY)
            if value is _NO_KEY and (not whole or revisions[i] not in having):
                continue
            choice = str(owners.at[i, owner]) if owner in owners else ""
            shown = "<absent>" if value is _NO_KEY else json.dumps(value, sort_keys=True)
            seen.setdefault(choice, set()).add(shown)
        if any(len(values) > 1 for values in seen.values()):
            found.append(key)
    rank = {name: i for i, name in enumerate(order)}
    return sorted(found, key=lambda k: (rank.get(k.split(".", 1)[0], len(rank)), k))


def axis_columns(setups: Sequence[Mapping[str, Any]], keys: Iterable[str]) -> pd.DataFrame:
    """One column per key (named by it): :func:`axis_value` of each run, NaN when absent."""
    return pd.DataFrame(
        {
            key: pd.Series(
                [axis_value(s[key]) if key in s else math.nan for s in setups], dtype=object
            )
            for key in keys
        }
    )


def short_names(keys: Sequence[str], reserved: Iterable[str] = ()) -> dict[str, str]:
    """Readable headers: each key's shortest dotted suffix that no other key (and no
    ``reserved`` column name) shares, e.g. ``strategy.method.gamma`` -> ``gamma``, or
    ``method.gamma`` beside ``optim.scheduler.gamma``."""
    taken = set(reserved)
    names = {}
    for key in keys:
        parts = key.split(".")
        for size in range(1, len(parts) + 1):
            name = ".".join(parts[-size:])
            others = [k for k in keys if k != key and (k == name or k.endswith(f".{name}"))]
            if not others and name not in taken:
                break
        names[key] = name
    return names


def display(value: Any) -> str:
    """An axis cell as Markdown text: absent (NaN) as "—"."""
    return (
        ABSENT if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    )


def sort_key(value: Any) -> tuple[int, float, str]:
    """Natural order of axis values: numbers by value, then text, then absent."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (2, 0.0, "")
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def sort_rows(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``frame`` ordered by ``columns`` with :func:`sort_key` (a stable sort)."""
    order = sorted(frame.index, key=lambda i: tuple(sort_key(frame.at[i, c]) for c in columns))
    return frame.loc[order].reset_index(drop=True)


def describe(values: Mapping[str, Any], names: Mapping[str, str]) -> str:
    """``gamma=1.5, lr=0.01`` for the present values (absent ones omitted)."""
    return ", ".join(
        f"{names.get(k, k)}={display(v)}" for k, v in values.items() if display(v) != ABSENT
    )
