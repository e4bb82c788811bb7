"""The README's configuration table and links stay true to conf/ and docs/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
GROUPS = [
    "dataset",
    "backbone",
    "fusion",
    "strategy",
    "optim",
    "trainer",
    "logger",
    "paths",
    "experiment",
    "sweep",
    "hparams_search",
    "hydra/launcher",
    "hydra/sweeper",
]


def table_row(group: str) -> str:
    rows = [line for line in README.splitlines() if line.startswith(f"| `{group}` |")]
    assert len(rows) == 1, f"README: expected one configuration-table row for `{group}`"
    return rows[0]


@pytest.mark.parametrize("group", GROUPS)
def test_configuration_table_lists_every_option(group: str) -> None:
    options = sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml"))
    assert options, f"conf/{group}/ has no options"
    listed = set(re.findall(r"`([^`]+)`", table_row(group).split("|")[2]))
    missing = [o for o in options if o not in listed]
    assert not missing, f"README table row `{group}` lacks {missing}"


def test_every_group_of_conf_is_in_the_table() -> None:
    groups = {p.name for p in (ROOT / "conf").iterdir() if p.is_dir() and p.name != "hydra"}
    groups |= {f"hydra/{p.name}" for p in (ROOT / "conf" / "hydra").iterdir() if p.is_dir()}
    assert groups <= set(GROUPS), f"groups missing from the README table: {groups - set(GROUPS)}"


def test_relative_links_point_to_files_that_exist() -> None:
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


def test_train_yaml_points_to_a_readme_section_that_exists() -> None:
    header = (ROOT / "conf" / "train.yaml").read_text().splitlines()[0]
    section = re.search(r'README "([^"]+)"', header)
    assert section, f"conf/train.yaml's first line names no README section: {header}"
    assert f"## {section.group(1)}\n" in README


def test_no_placeholder_is_left() -> None:
    assert not re.search(r"\b[A-Z]+_(TEXT|TIME|OPTIONS|SECTION|TABLE)\b", README)


def fidelity_rows() -> list[list[str]]:
    """The README Fidelity table's body rows, split into their three cells."""
    section = README.split("\n## Fidelity\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows[1:]]
    assert cells and all(len(c) == 3 for c in cells), "Fidelity rows need three cells"
    return cells


@pytest.mark.parametrize("group", ["strategy", "dataset"])
def test_fidelity_table_covers_every_strategy_and_dataset(group: str) -> None:
    """Every strategy and dataset config has a Fidelity row that names its source (a file,
    'ours', or 'as `row`' of another listed row) and says how it relates to it."""
    rows = fidelity_rows()
    listed = {name for first, _, _ in rows for name in re.findall(r"`([^`]+)`", first)}
    options = sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml"))
    missing = [o for o in options if o not in listed]
    assert not missing, f"README Fidelity table lacks {group} {missing}"
    for first, source, verdict in rows:
        same_as = re.fullmatch(r"as `([^`]+)`", source)
        named = re.search(r"`[^`]*[/.][^`]*`|\bours\b", source)
        assert named or (same_as and same_as.group(1) in listed), f"{first}: no source file"
        assert len(verdict) > 20, f"{first}: no verdict"
