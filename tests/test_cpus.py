"""The usable CPU count: affinity mask, SLURM allocation and cgroup quota, not cpu_count()."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mmbench.utils.cpus import cgroup_quota_cpus, slurm_cpus, usable_cpus


def test_slurm_cpus_per_task_caps_the_count(tmp_path: Path) -> None:
    no_quota = tmp_path / "absent"
    assert usable_cpus({"SLURM_CPUS_PER_TASK": "1"}, cpu_max=no_quota) == 1
    mask = len(os.sched_getaffinity(0))
    assert usable_cpus({"SLURM_CPUS_PER_TASK": "4096"}, cpu_max=no_quota) == mask
    assert usable_cpus({}, cpu_max=no_quota) == mask


@pytest.mark.parametrize("value", ["", "0", "-2", "two", " 3 "])
def test_slurm_cpus_reads_only_positive_integers(value: str) -> None:
    expected = 3 if value.strip() == "3" else None
    assert slurm_cpus({"SLURM_CPUS_PER_TASK": value}) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("max 100000\n", None),
        ("150000 100000\n", 2),
        ("100000 100000", 1),
        ("50000 100000", 1),
        ("garbage", None),
        ("0 100000", None),
    ],
)
def test_cgroup_quota_rounds_up(tmp_path: Path, text: str, expected: int | None) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text(text)
    assert cgroup_quota_cpus(cpu_max) == expected


def test_cgroup_quota_caps_the_count(tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("100000 100000\n")
    assert usable_cpus({}, cpu_max=cpu_max) == 1


@pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset (util-linux) not installed")
def test_restricted_affinity_mask_is_seen() -> None:
    """Under `taskset -c <one cpu>` the count is 1 even on a many-core machine."""
    cpu = min(os.sched_getaffinity(0))
    code = "from mmbench.utils.cpus import usable_cpus; print(usable_cpus({}))"
    out = subprocess.run(
        ["taskset", "-c", str(cpu), sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
    )
    assert out.stdout.strip() == "1"


@pytest.mark.parametrize(
    ("requested", "jobs", "cpus", "expected"),
    [
        (None, 1, 2, 2),
        (None, 2, 2, 1),
        (None, 3, 2, 1),
        (None, 2, 16, 8),
        (3, 4, 2, 3),
        (0, 1, 4, 4),
    ],
)
def test_thread_count_shares_the_usable_cpus(
    requested: int | None, jobs: int, cpus: int, expected: int
) -> None:
    from mmbench.train import thread_count

    assert thread_count(requested, jobs, cpus) == expected


def test_configure_threads_follows_slurm_cpus_per_task() -> None:
    """A SLURM job allocated one CPU trains on one torch thread, whatever the node has."""
    code = (
        "import torch; from mmbench.train import configure_threads; "
        "configure_threads(None); print(torch.get_num_threads())"
    )
    env = {**os.environ, "SLURM_CPUS_PER_TASK": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env
    )
    assert out.stdout.strip() == "1"


@pytest.mark.parametrize(
    ("given", "expected"),
    [({}, "1000"), ({"OMP_WAIT_POLICY": "ACTIVE"}, None), ({"GOMP_SPINCOUNT": "5"}, "5")],
)
def test_importing_mmbench_caps_openmp_spinning_unless_told(
    given: dict[str, str], expected: str | None
) -> None:
    """mmbench sets GOMP_SPINCOUNT before torch loads OpenMP; a user's choice is kept."""
    code = (
        "import os, sys; import mmbench; assert 'torch' not in sys.modules; "
        "print(os.environ.get('GOMP_SPINCOUNT'))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        env={**env, **given},
    )
    assert out.stdout.strip() == str(expected)
