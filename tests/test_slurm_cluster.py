"""Checks against a real SLURM cluster (see .ci/slurm/cluster.sh).

Skipped unless ``SLURM_CONF`` names an existing file, e.g.::

    eval "$(.ci/slurm/cluster.sh start "$DIR")"
    python -m pytest -q -m slurm tests/test_slurm_cluster.py

Every wait here has a deadline, so a broken cluster fails the test instead of hanging it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

_SLURM_CONF = os.environ.get("SLURM_CONF", "")

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(
        not (_SLURM_CONF and Path(_SLURM_CONF).is_file()),
        reason="needs a running SLURM cluster: set SLURM_CONF to its slurm.conf",
    ),
]

PARTITION = "debug"
RESULT_TIMEOUT_S = 60.0
CANCEL_TIMEOUT_S = 60.0


def _run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30).stdout


def _wait_done(job, timeout_s: float) -> None:
    """Poll a submitit job until done, failing (not hanging) after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not job.done():
        if time.monotonic() > deadline:
            pytest.fail(
                f"job {job.job_id} not done after {timeout_s:.0f}s (state {job.state!r});\n"
                + _run("squeue")
                + _run("sacct", "-X", "-j", str(job.job_id).split("_")[0])
            )
        time.sleep(0.5)


def _executor(folder: Path):
    submitit = pytest.importorskip("submitit")
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(
        slurm_partition=PARTITION,
        timeout_min=5,
        cpus_per_task=1,
        nodes=1,
        tasks_per_node=1,
        slurm_array_parallelism=3,
    )
    return executor


def test_sinfo_shows_node_idle() -> None:
    node = socket.gethostname().split(".")[0]
    deadline = time.monotonic() + 30
    while True:
        out = _run("sinfo", "-h", "-N", "-p", PARTITION, "-o", "%N %t")
        if f"{node} idle" in out.splitlines():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"node {node} not idle in partition {PARTITION}: sinfo says {out!r}")
        time.sleep(1)


def test_submitit_map_array_runs_as_array_tasks(tmp_path: Path) -> None:
    def task(x: int) -> tuple[int, str, str]:
        # Nested so cloudpickle ships it by value: the job need not import this module.
        import os

        return x * 10, os.environ["SLURM_ARRAY_TASK_ID"], os.environ["SLURM_ARRAY_JOB_ID"]

    jobs = _executor(tmp_path).map_array(task, [1, 2, 3])
    assert len(jobs) == 3
    for job in jobs:
        _wait_done(job, RESULT_TIMEOUT_S)
    results = [job.result() for job in jobs]

    assert [r[0] for r in results] == [10, 20, 30]
    task_ids = [r[1] for r in results]
    assert len(set(task_ids)) == 3, f"array task ids not distinct: {task_ids}"
    assert sorted(task_ids) == ["0", "1", "2"]
    array_ids = {r[2] for r in results}
    assert len(array_ids) == 1, f"tasks belong to different arrays: {array_ids}"
    (array_id,) = array_ids
    assert sorted(job.job_id for job in jobs) == [f"{array_id}_{i}" for i in range(3)]


def test_scancelled_job_surfaces_as_error(tmp_path: Path) -> None:
    from submitit.core.utils import UncompletedJobError

    def sleeper() -> str:
        import time

        time.sleep(300)
        return "should have been cancelled"

    job = _executor(tmp_path).submit(sleeper)
    deadline = time.monotonic() + 30
    while _run("squeue", "-h", "-j", str(job.job_id), "-o", "%T").strip() != "RUNNING":
        if time.monotonic() > deadline:
            pytest.fail(f"job {job.job_id} never started running:\n{_run('squeue')}")
        time.sleep(0.5)

    _run("scancel", str(job.job_id))
    t0 = time.monotonic()
    _wait_done(job, CANCEL_TIMEOUT_S)
    with pytest.raises(UncompletedJobError, match="CANCELLED"):
        job.result()
    print(f"cancelled job surfaced in submitit after {time.monotonic() - t0:.1f}s")
