"""Visible training progress: a tqdm bar per epoch on a terminal, else periodic log lines.

``trainer.progress`` (conf/trainer/default.yaml) chooses the mode: ``bar`` (tqdm on stderr
with the running mean loss and steps/s), ``log`` (one log line every
``trainer.log_every_n_steps`` steps or ``trainer.log_every_s`` seconds, whichever comes
first), ``off``, or ``auto``: ``bar`` when stderr is a terminal and the job is not part of
a multirun, else ``log``. The mean loss shown is ``sum_i n_i * L_i / sum_i n_i`` over the
epoch's steps so far (``n_i`` samples in step ``i``).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO, Any

from mmbench.config_checks import ConfigValueError

log = logging.getLogger("mmbench.engine")

MODES = ("auto", "bar", "log", "off")


def check_settings(progress: Any, log_every_s: Any, log_every_n_steps: Any) -> None:
    """Refuse bad progress knobs before anything is built (key, value and fix named)."""
    where = "(conf/trainer/default.yaml)"
    if progress not in MODES:
        raise ConfigValueError(
            f"trainer.progress={progress!r} {where}: choose one of {', '.join(MODES)}"
        )
    if isinstance(log_every_s, bool) or not isinstance(log_every_s, int | float):
        raise ConfigValueError(
            f"trainer.log_every_s={log_every_s!r} {where}: must be a number of seconds > 0"
        )
    if log_every_s <= 0:
        raise ConfigValueError(
            f"trainer.log_every_s={log_every_s!r} {where}: must be a number of seconds > 0"
        )
    if log_every_n_steps is not None and (
        isinstance(log_every_n_steps, bool)
        or not isinstance(log_every_n_steps, int)
        or log_every_n_steps < 1
    ):
        raise ConfigValueError(
            f"trainer.log_every_n_steps={log_every_n_steps!r} {where}: must be an integer >= 1 "
            "or null (time-based lines only)"
        )


def resolve_mode(mode: str, multirun: bool, stream: IO[str] | None = None) -> str:
    """``auto`` -> ``bar`` on an interactive stderr outside a multirun, else ``log``."""
    if mode != "auto":
        return mode
    stream = sys.stderr if stream is None else stream
    interactive = bool(getattr(stream, "isatty", lambda: False)())
    return "bar" if interactive and not multirun else "log"


class EpochProgress:
    """Progress of one training epoch (``mode`` already resolved: bar, log or off)."""

    def __init__(
        self,
        mode: str,
        epoch: int,
        epochs: int,
        total: int,
        log_every_s: float,
        log_every_n_steps: int | None,
        first_of_run: bool = False,
    ) -> None:
        self.mode, self.epoch, self.epochs, self.total = mode, epoch, epochs, total
        self.first_of_run = first_of_run
        self.log_every_s, self.log_every_n_steps = log_every_s, log_every_n_steps
        self.steps, self.samples, self.loss_sum = 0, 0, 0.0
        self.start = self.last_line = time.perf_counter()
        self.bar: Any = None
        if mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total,
                desc=f"epoch {epoch + 1}/{epochs}",
                unit="step",
                leave=False,
                dynamic_ncols=True,
                file=sys.stderr,
            )

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / max(self.samples, 1)

    def update(self, loss: float, samples: int) -> None:
        """One optimiser step done on ``samples`` samples with fused loss ``loss``."""
        self.steps += 1
        self.samples += samples
        self.loss_sum += loss * samples
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{self.mean_loss:.4f}", refresh=False)
            self.bar.update(1)
        elif self.mode == "log" and self.due():
            self.log_line()

    def due(self) -> bool:
        """A line is due on the run's first step, every N steps, or after M seconds."""
        if self.steps == self.total:
            return False  # the epoch line follows at once
        if self.first_of_run and self.steps == 1:
            return True
        if self.log_every_n_steps is not None and self.steps % self.log_every_n_steps == 0:
            return True
        return time.perf_counter() - self.last_line >= self.log_every_s

    def log_line(self) -> None:
        now = time.perf_counter()
        rate = self.steps / max(now - self.start, 1e-9)
        log.info(
            "epoch %d/%d  step %d/%d  loss %.4f  %.1f steps/s",
            self.epoch + 1,
            self.epochs,
            self.steps,
            self.total,
            self.mean_loss,
            rate,
        )
        self.last_line = now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.refresh()  # draw the final count and loss: tqdm redraws at most every
            self.bar.close()  # 0.1 s, so a fast epoch would otherwise end on a stale frame
