"""A run directory answers for one configuration: refusals leave it byte-identical, corrupt
files are named with the way out, results respect the umask, a missing val split is said."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from mmbench.engine import Interrupted
from mmbench.train import fit
from mmbench.utils import atomic

ROOT = Path(__file__).resolve().parent.parent
# One seconds-long job: 3 batches, 1 epoch, no val split (as the paper presets).
TINY = [
    "trainer=debug",
    "trainer.device=cpu",
    "trainer.num_threads=1",
    "trainer.telemetry_every=0",
    "dataset.build.val_per_class=0",
    "dataset.build.test_per_class=10",
    "optimized_metric=paper.acc",
]
JOB = "0_cgmnist_mini_mmpareto_s0"


def mmbench_train(tmp: Path, *overrides: str) -> subprocess.CompletedProcess:
    """``mmbench train`` with outputs under ``tmp``, umask 022."""
    return subprocess.run(
        [sys.executable, "-m", "mmbench.cli", "train", *overrides, f"paths.root_dir={tmp}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.umask(0o022),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A completed one-job sweep: (its directory, the job's console output)."""
    tmp = tmp_path_factory.mktemp("finished")
    sweep = tmp / "sweep"
    done = mmbench_train(tmp, "-m", f"hydra.sweep.dir={sweep}", *TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((sweep / JOB / "metrics.json").read_text())["status"] == "completed"
    return sweep, done.stdout + done.stderr


def test_finished_run_says_no_val_split_and_files_respect_the_umask(finished_sweep) -> None:
    sweep, output = finished_sweep
    summary = json.loads((sweep / JOB / "metrics.json").read_text())
    assert summary["protocols"]["val"] is None
    assert summary["unavailable_protocols"] == {"val": "no val split"}
    assert "no val split: the val protocol is not available" in output
    for name in ("metrics.json", "history.csv", "telemetry.csv", "checkpoint.pt", "train.log"):
        assert stat.S_IMODE((sweep / JOB / name).stat().st_mode) == 0o644, name


@pytest.mark.parametrize(
    "overrides",
    [
        ["-m", "hydra.sweep.dir={sweep}", *TINY, "trainer.epochs=2"],
        ["hydra.run.dir={sweep}/" + JOB, *TINY, "strategy=uniform", "optim=adam"],
    ],
    ids=["sweep-resumed-with-other-epochs", "run-dir-with-other-strategy"],
)
def test_rerun_with_another_config_is_refused_and_changes_nothing(
    finished_sweep, tmp_path: Path, overrides: list[str]
) -> None:
    sweep, _ = finished_sweep
    before = snapshot(sweep / JOB)
    again = mmbench_train(tmp_path, *(o.format(sweep=sweep) for o in overrides))
    assert again.returncode != 0
    assert "holds a completed run of another configuration" in again.stderr
    assert "nothing in" in again.stderr and "was changed" in again.stderr
    after = snapshot(sweep / JOB)
    assert sorted(after) == sorted(before)
    for name, data in before.items():
        assert after[name] == data, f"{name} was rewritten"


def test_sweep_on_val_metric_without_val_split_fails_at_start(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    overrides = [o for o in TINY if not o.startswith("optimized_metric")]
    failed = mmbench_train(tmp_path, "-m", f"hydra.sweep.dir={sweep}", *overrides)
    assert failed.returncode != 0
    assert "optimized_metric=val.val_acc" in failed.stderr
    assert "dataset.build.val_per_class=0" in failed.stderr
    assert not (sweep / JOB / "checkpoint.pt").exists()  # nothing was trained
    assert json.loads((sweep / JOB / "metrics.json").read_text())["status"] == "failed"


FAST = [*TINY[1:], "trainer.epochs=2", "trainer.limit_train_batches=2"]


def no_building(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("something was built")

    monkeypatch.setattr("mmbench.train.instantiate", refuse)


def test_truncated_checkpoint_is_named_with_the_ways_out(
    compose_cfg: Callable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(Interrupted):
        fit(compose_cfg([*FAST, "trainer.stop_after_epochs=1"]), tmp_path)
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:4000])
    no_building(monkeypatch)
    with pytest.raises(RuntimeError) as error:
        fit(compose_cfg([*FAST, "trainer.resume=true"]), tmp_path)
    message = str(error.value)
    assert f"{checkpoint} is corrupt or truncated" in message
    assert "delete it" in message and "trainer.resume=false" in message


def test_atomic_writes_respect_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic.write_text(tmp_path / "a.txt", "x")
        atomic.write_json(tmp_path / "b.json", {"x": 1})
        os.umask(0o077)
        atomic.write_text(tmp_path / "private.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "private.txt").stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.json", "private.txt"]
