"""Check the composed config's values before anything is built.

Each rule names the full key, the value given and the allowed range, so a bad override
fails in milliseconds instead of after data and model building (or inside PyTorch with a
message that names no key).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mmbench.protocols import PROTOCOLS

ABSENT = object()


class ConfigValueError(ValueError):
    """A config value outside its allowed range (raised before any building)."""


@dataclass(frozen=True)
class Rule:
    """``key`` must be a number (an integer when ``integer``) with ``low <= value``
    (``low < value`` when ``strict``); ``optional`` keys may also be null."""

    key: str
    low: float
    integer: bool = True
    strict: bool = False
    optional: bool = False

    def range_text(self) -> str:
        kind = "an integer" if self.integer else "a number"
        bound = f"{'>' if self.strict else '>='} {self.low:g}"
        return f"{kind} {bound}" + (" or null" if self.optional else "")

    def violated(self, value: Any) -> bool:
        if value is None:
            return not self.optional
        if isinstance(value, bool) or not isinstance(value, int | float):
            return True
        if self.integer and not isinstance(value, int):
            return True
        if not math.isfinite(value):
            return True
        return value <= self.low if self.strict else value < self.low


RULES = (
    Rule("seed", 0),
    Rule("trainer.epochs", 1),
    Rule("trainer.batch_size", 1),
    Rule("trainer.eval_batch_size", 1),
    Rule("trainer.num_workers", 0),
    Rule("trainer.num_threads", 1, optional=True),
    Rule("trainer.telemetry_every", 0),
    Rule("trainer.limit_train_batches", 1, optional=True),
    Rule("trainer.stop_after_epochs", 1, optional=True),
    Rule("trainer.eval_from_epoch", 1),
    Rule("optim.optimizer.lr", 0, integer=False, strict=True),
    Rule("optim.optimizer.weight_decay", 0, integer=False),
    Rule("optim.optimizer.momentum", 0, integer=False),
    Rule("dataset.build.val_per_class", 0),
    Rule("dataset.build.test_per_class", 1),
    Rule("backbone.factory.width", 1),
    Rule("leaderboard.smooth", 1),
)
SCHEDULER_RULES = (
    Rule("optim.scheduler.step_size", 1),
    Rule("optim.scheduler.gamma", 0, integer=False, strict=True),
)
MMPARETO_TARGET = "mmbench.strategies.mmpareto.MMPareto"
MMPARETO_RULES = (
    Rule("strategy.method.gamma", 0, integer=False),
    Rule("strategy.method.eps", 0, integer=False, strict=True),
)


def _value(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=ABSENT, throw_on_missing=True)


def problems(cfg: DictConfig) -> list[str]:
    """Every rule the config breaks, as ``key=value: must be ...`` lines (empty: valid)."""
    rules = list(RULES)
    if OmegaConf.select(cfg, "optim.step_scheduler", default=False):
        rules += SCHEDULER_RULES
    if OmegaConf.select(cfg, "strategy.method._target_", default=None) == MMPARETO_TARGET:
        rules += MMPARETO_RULES
    found = []
    for rule in rules:
        value = _value(cfg, rule.key)
        if value is not ABSENT and rule.violated(value):
            found.append(f"{rule.key}={value!r}: must be {rule.range_text()}")
    epochs, first = _value(cfg, "trainer.epochs"), _value(cfg, "trainer.eval_from_epoch")
    if isinstance(epochs, int) and isinstance(first, int) and first > epochs:
        found.append(
            f"trainer.eval_from_epoch={first!r}: must be <= trainer.epochs ({epochs}); the "
            "protocols choose among the epochs evaluated from it on (the last one always is)"
        )
    metric = OmegaConf.select(cfg, "optimized_metric", default=None)
    protocol = str(metric).split(".", 1)[0]
    if not isinstance(metric, str) or protocol not in PROTOCOLS or "." not in metric:
        found.append(
            f"optimized_metric={metric!r}: must be <protocol>.<metric> with protocol one of "
            f"{list(PROTOCOLS)}, e.g. val.acc or paper.acc"
        )
    return found


def check_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigValueError` listing every out-of-range value (fix the override or
    the yaml file of that key's config group)."""
    found = problems(cfg)
    if found:
        raise ConfigValueError(
            "invalid configuration (fix these overrides or the conf/ yaml that sets them):\n"
            + "\n".join(f"  - {p}" for p in found)
        )


def has_val_split(cfg: DictConfig) -> bool:
    """Whether the dataset builder carves a validation split.

    ``dataset.build.val_per_class`` (or ``val_size``) of 0 means none; a builder with
    neither knob is assumed to have one (the engine still reports it missing at the end).
    """
    for key in ("dataset.build.val_per_class", "dataset.build.val_size"):
        value = _value(cfg, key)
        if value is not ABSENT:
            return bool(value)
    return True


def val_split_key(cfg: DictConfig) -> str:
    """The key that switches the validation split on (for messages)."""
    if _value(cfg, "dataset.build.val_size") is not ABSENT:
        return "dataset.build.val_size"
    return "dataset.build.val_per_class"


def check_optimized_metric(cfg: DictConfig) -> None:
    """A sweep must optimise a protocol that exists: ``val.*`` needs a validation split."""
    metric = str(cfg.optimized_metric)
    if metric.split(".", 1)[0] == "val" and not has_val_split(cfg):
        key = val_split_key(cfg)
        raise ConfigValueError(
            f"optimized_metric={metric}: dataset {cfg.dataset.name} has no validation split "
            f"({key}={_value(cfg, key)}), so the val protocol does not exist and every job "
            f"would return NaN to the sweeper. Set optimized_metric=paper.acc or last.acc, or "
            f"give the dataset a val split with {key}=<n> > 0"
        )
