"""A run directory answers for one configuration only.

Before anything is built, :func:`admit` compares the config hash of this invocation with
the run already in the directory (a completed ``metrics.json``, or ``checkpoint.pt`` when
resuming) and refuses another configuration. Hydra has rewritten ``.hydra/`` by the time
the task function runs (``hydra.core.utils.run_job`` saves config.yaml, hydra.yaml and
overrides.yaml before ``on_job_start`` and the task), so the files of the accepted
invocation are kept in ``.mmbench/hydra/`` and put back whenever an invocation is refused
or finds the run complete: the directory then stays byte-identical.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from mmbench.utils import atomic

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
KEPT_HYDRA = Path(".mmbench") / "hydra"


class RunDirError(RuntimeError):
    """Raised before training; the run directory is left as it was."""


class RunDirConflict(RunDirError):
    """The run directory holds a run of another configuration."""


class CorruptRunFile(RunDirError):
    """A file of the run directory cannot be read."""


def corrupt_checkpoint_message(path: Path, error: BaseException) -> str:
    return (
        f"{path} is corrupt or truncated and cannot be resumed ({type(error).__name__}: "
        f"{error}). Either delete it (the run restarts from epoch 0) or rerun with "
        "trainer.resume=false (the checkpoint is ignored and overwritten)"
    )


def load_checkpoint(path: Path, map_location: Any, mmap: bool = False) -> dict[str, Any]:
    """``torch.load`` of a run checkpoint; :class:`CorruptRunFile` naming the file if it
    cannot be read (``mmap``: tensors stay on disk, for reading ``run_info`` only)."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=False, mmap=mmap)
    except Exception as error:
        raise CorruptRunFile(corrupt_checkpoint_message(path, error)) from error
    if not isinstance(state, dict) or not isinstance(state.get("run_info"), dict):
        raise CorruptRunFile(
            corrupt_checkpoint_message(path, ValueError("no run_info: not an mmbench checkpoint"))
        )
    return state


def read_metrics(path: Path) -> dict[str, Any] | None:
    """The run's ``metrics.json`` (None when absent); :class:`CorruptRunFile` if unreadable."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CorruptRunFile(
            f"{path} is corrupt ({type(error).__name__}: {error}); delete it and rerun (a "
            f"{CHECKPOINT} of the same configuration is resumed), or use a new run directory"
        ) from error
    if not isinstance(data, dict):
        raise CorruptRunFile(f"{path} is corrupt (not a JSON object); delete it and rerun")
    return data


def _other_configuration(
    run_dir: Path, what: str, saved: Any, current: str, overrides: list[str] | None
) -> RunDirConflict:
    hint = (
        f" Its overrides were: {' '.join(overrides) or '(none)'}." if overrides is not None else ""
    )
    return RunDirConflict(
        f"{run_dir} holds {what} of another configuration (config hash {saved}, this "
        f"invocation {current}); refusing to mix them.{hint} Rerun with the original "
        "overrides, or drop hydra.run.dir / hydra.sweep.dir to start a new run directory"
    )


def holds_run(run_dir: Path) -> bool:
    """Whether the directory already holds a run's results (a summary or a checkpoint)."""
    return (run_dir / METRICS).is_file() or (run_dir / CHECKPOINT).is_file()


def admit(run_dir: Path, config_hash: str, resume: bool) -> dict[str, Any] | None:
    """May this configuration (``config_hash``) train in ``run_dir``?

    Returns the completed summary when the directory already holds this configuration's
    finished run and ``resume`` is set (nothing to do), None when training may start
    (fresh, or resuming a checkpoint of this configuration). Raises :class:`RunDirConflict`
    for a completed run or (when resuming) a checkpoint of another configuration, and
    :class:`CorruptRunFile` for an unreadable ``metrics.json`` or checkpoint.
    """
    done = read_metrics(run_dir / METRICS)
    if done is not None and done.get("status") == "completed":
        saved = done.get("config_hash")
        if saved != config_hash:
            overrides = done.get("overrides")
            raise _other_configuration(
                run_dir,
                "a completed run",
                saved,
                config_hash,
                overrides if isinstance(overrides, list) else None,
            )
        if resume:
            return done
    checkpoint = run_dir / CHECKPOINT
    if resume and checkpoint.is_file():
        saved = load_checkpoint(checkpoint, "cpu", mmap=True)["run_info"].get("config_hash")
        if saved != config_hash:
            what = f"a checkpoint ({CHECKPOINT})"
            raise _other_configuration(run_dir, what, saved, config_hash, None)
    return None


class HydraFiles:
    """``.hydra/`` of a run directory and the copy kept from its accepted invocation."""

    def __init__(self, run_dir: Path) -> None:
        self.live = Path(run_dir) / ".hydra"
        self.kept = Path(run_dir) / KEPT_HYDRA

    @staticmethod
    def _files(folder: Path) -> dict[str, Path]:
        if not folder.is_dir():
            return {}
        return {p.name: p for p in folder.iterdir() if p.is_file()}

    def keep(self) -> None:
        """Copy ``.hydra/`` to the kept folder: this invocation is the run's configuration."""
        live, kept = self._files(self.live), self._files(self.kept)
        for name, path in live.items():
            atomic.write_bytes(self.kept / name, path.read_bytes())
        for name, path in kept.items():
            if name not in live:
                path.unlink()

    def restore(self) -> bool:
        """Put the kept files back into ``.hydra/`` (False when none were kept)."""
        kept, live = self._files(self.kept), self._files(self.live)
        if not kept:
            return False
        for name, path in kept.items():
            data = path.read_bytes()
            if name not in live or live[name].read_bytes() != data:
                atomic.write_bytes(self.live / name, data)
        for name, path in live.items():
            if name not in kept:
                path.unlink()
        return True
