"""A real sweep through the ``slurm`` launcher preset on a running SLURM cluster.

Skipped unless ``SLURM_CONF`` names the slurm.conf of a running cluster (``.ci/run`` starts
one with ``.ci/slurm/cluster.sh``). Every job must run as a task of one SLURM array and the
multirun must end with its leaderboard.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

SLURM_CONF = os.environ.get("SLURM_CONF", "")
pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(
        not (SLURM_CONF and Path(SLURM_CONF).is_file()),
        reason="needs a running SLURM cluster: set SLURM_CONF to its slurm.conf",
    ),
]


def test_sweep_runs_as_one_slurm_array_and_collects(tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    cmd = [
        sys.executable,
        "-m",
        "mmbench.cli",
        "train",
        "-m",
        "hydra/launcher=slurm",
        "hydra.launcher.partition=debug",
        "hydra.launcher.gpus_per_node=0",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=2",
        "hydra.launcher.timeout_min=10",
        "trainer=debug",
        "trainer.num_threads=1",
        "dataset.build.val_per_class=10",
        "dataset.build.test_per_class=20",
        "strategy=uniform,mmpareto",
        "seed=0,1",
        f"paths.output_dir={out}",
        "leaderboard.name=slurm",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    runs = [json.loads(p.read_text()) for p in (out / "multirun").rglob("metrics.json")]
    assert len(runs) == 4 and all(r["status"] == "completed" for r in runs)
    assert len({r["slurm_array_job_id"] for r in runs}) == 1
    assert None not in {r["slurm_array_job_id"] for r in runs}
    assert sorted(int(r["slurm_array_task_id"]) for r in runs) == [0, 1, 2, 3]
    board = out / "leaderboards" / "slurm"
    assert len(pd.read_csv(board / "runs.csv")) == 4
    assert "| mmpareto |" in (board / "leaderboard.md").read_text()
