"""The training loop: seeded epochs, per-step strategy backward, evaluation, checkpoints.

The engine knows no particular dataset, model or strategy: it receives them built from
the config. Each epoch it evaluates val and test (from ``trainer.eval_from_epoch`` on, and
always after the last epoch; the protocols choose among the evaluated epochs), appends to
``history.csv`` and
``telemetry.csv`` and saves ``checkpoint.pt`` (all atomically); ``metrics.json`` is the
final summary with the three evaluation protocols (paper / val / last); a protocol that
cannot apply (val without a val split) is null there and named in ``unavailable_protocols``.

It also reports to an experiment logger (:class:`mmbench.loggers.base.ExperimentLogger`,
whichever backends ``logger=`` chose): per logged step (``trainer.telemetry_every``) the
step's losses and gradient telemetry at that step, per epoch the history row at the number
of steps done; and shows progress (:mod:`mmbench.progress`, ``trainer.progress``).
"""

from __future__ import annotations

import logging
import random
import resource
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from mmbench import metrics
from mmbench.loggers.base import ExperimentLogger
from mmbench.loggers.group import LoggerGroup
from mmbench.models.multimodal import MultimodalClassifier
from mmbench.progress import EpochProgress
from mmbench.protocols import PROTOCOLS
from mmbench.run_integrity import CHECKPOINT, load_checkpoint
from mmbench.strategies.base import GradientStrategy, StepLosses
from mmbench.utils import atomic

log = logging.getLogger(__name__)

NO_VAL_SPLIT = "no val split"


@dataclass
class TrainerSettings:
    """The ``trainer`` config group (see conf/trainer/default.yaml for each knob)."""

    epochs: int = 10
    batch_size: int = 64
    eval_batch_size: int = 256
    device: str = "auto"
    amp: bool = False
    channels_last: bool = False
    deterministic: bool = True
    num_workers: int = 0
    num_threads: int | None = None
    keep_freed_host_memory: bool = True
    telemetry_every: int = 1
    limit_train_batches: int | None = None
    resume: bool = False
    stop_after_epochs: int | None = None
    progress: str = "off"
    log_every_s: float = 30.0
    log_every_n_steps: int | None = None
    data_seed: int | None = None
    eval_from_epoch: int = 1


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"trainer.device={name} but CUDA is not available; use auto or cpu")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """A seed per (run seed, epoch): shuffling and augmentation restart exactly on resume."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def configure_determinism(deterministic: bool) -> None:
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def make_loader(
    dataset: Dataset, batch_size: int, shuffle: bool, seed: int, num_workers: int, pin_memory: bool
) -> DataLoader:
    """A loader whose order depends only on ``seed``; in-memory datasets gather per batch."""
    generator = torch.Generator().manual_seed(seed)
    common = {"num_workers": num_workers, "pin_memory": pin_memory, "persistent_workers": False}
    if getattr(dataset, "batched_indexing", False):
        base = (
            RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        )
        return DataLoader(
            dataset,
            batch_size=None,
            sampler=BatchSampler(base, batch_size, drop_last=False),
            generator=generator,
            **common,
        )
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, **common
    )


def to_device(
    batch: Mapping[str, torch.Tensor], device: torch.device, channels_last: bool
) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in batch.items():
        value = value.to(device, non_blocking=True)
        if channels_last and value.dim() == 4 and key != "label":
            value = value.contiguous(memory_format=torch.channels_last)
        out[key] = value
    return out


def head_accuracies(row: dict[str, Any], split: str, trained: bool) -> str:
    """`` [gray 0.85 color 0.11]``: the unimodal heads' accuracy on ``split`` for the epoch
    line ("" when the strategy never trains them), so that an encoder that learns shows even
    while the fused head still leans on a shortcut modality."""
    prefix = f"{split}_acc_"
    heads = {k[len(prefix) :]: v for k, v in row.items() if k.startswith(prefix)}
    if not trained or not heads:
        return ""
    return " [" + " ".join(f"{m} {v:.2f}" for m, v in heads.items()) + "]"


class Engine:
    """Trains one model with one strategy and writes the run directory."""

    def __init__(
        self,
        model: MultimodalClassifier,
        strategy: GradientStrategy,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        splits: Any,
        settings: TrainerSettings,
        seed: int,
        run_dir: Path,
        run_info: dict[str, Any],
        logger: ExperimentLogger | None = None,
    ) -> None:
        self.settings = settings
        self.logger: ExperimentLogger = logger if logger is not None else LoggerGroup([])
        self.device = resolve_device(settings.device)
        self.model = model.to(self.device)
        if settings.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.strategy, self.optimizer, self.scheduler = strategy, optimizer, scheduler
        self.splits, self.seed, self.run_dir, self.run_info = splits, seed, run_dir, run_info
        # batch order and in-training randomness (dropout, noise); the init uses ``seed``
        self.data_seed = seed if settings.data_seed is None else settings.data_seed
        self.modalities = model.modality_names
        self.history: list[dict[str, Any]] = []
        self.telemetry: list[dict[str, Any]] = []
        self.step = 0
        self.timing = {"train_s": 0.0, "steps": 0, "samples": 0, "step_ms": []}
        self.start_epoch = 0

    # ----------------------------------------------------------------- checkpoints
    def state(self) -> dict[str, Any]:
        return {
            "epoch": len(self.history),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "strategy": self.strategy.state_dict(),
            "history": self.history,
            "telemetry": self.telemetry,
            "step": self.step,
            "timing": self.timing,
            "run_info": self.run_info,
        }

    def load(self, path: Path) -> None:
        state = load_checkpoint(path, self.device)
        saved = state["run_info"].get("config_hash")
        if saved != self.run_info.get("config_hash"):
            raise RuntimeError(
                f"{path}: the checkpoint was made by another configuration (hash {saved}, "
                f"this run {self.run_info.get('config_hash')}); resume with the original "
                "overrides or use a new run directory"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler and state["scheduler"]:
            self.scheduler.load_state_dict(state["scheduler"])
        self.strategy.load_state_dict(state["strategy"])
        self.history, self.telemetry = state["history"], state["telemetry"]
        self.step, self.timing = state["step"], state["timing"]
        self.start_epoch = state["epoch"]
        log.info("resumed from %s after epoch %d", path, self.start_epoch)

    # ----------------------------------------------------------------- training
    def batches(self, split: str, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        dataset = getattr(self.splits, split)
        train = split == "train"
        loader = make_loader(
            dataset,
            self.settings.batch_size if train else self.settings.eval_batch_size,
            shuffle=train,
            seed=epoch_seed(self.data_seed, epoch),
            num_workers=self.settings.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        for i, batch in enumerate(loader):
            if (
                train
                and self.settings.limit_train_batches is not None
                and i >= self.settings.limit_train_batches
            ):
                return
            yield to_device(batch, self.device, self.settings.channels_last)

    def autocast(self) -> torch.autocast:
        enabled = self.settings.amp and self.device.type == "cuda"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def compute_losses(self, batch: dict[str, torch.Tensor], epoch: int = 0) -> StepLosses:
        with self.autocast():
            outputs = self.model(batch)
        return StepLosses.from_outputs(outputs, batch, epoch)

    def train_steps(self) -> int:
        """Optimiser steps per epoch: ``ceil(len(train) / batch_size)``, capped by
        ``trainer.limit_train_batches``."""
        steps = -(-len(self.splits.train) // self.settings.batch_size)
        limit = self.settings.limit_train_batches
        return steps if limit is None else min(steps, limit)

    def log_step(self, losses: StepLosses, stats: Mapping[str, Mapping[str, float]]) -> None:
        """A logged step's losses and per-encoder telemetry (``telemetry/<encoder>/<key>``)."""
        values = {"train/loss": losses.fused.item()}
        values.update({f"train/loss_{m}": losses.unimodal[m].item() for m in self.modalities})
        for encoder, row in stats.items():
            values.update(
                {
                    f"telemetry/{encoder}/{key}": float(value)
                    for key, value in row.items()
                    if isinstance(value, int | float) and not isinstance(value, bool)
                }
            )
        self.logger.log_metrics(values, self.step)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        torch.manual_seed(epoch_seed(self.data_seed, epoch))
        sums = {"loss": 0.0, **{f"loss_{m}": 0.0 for m in self.modalities}}
        count = 0
        every = self.settings.telemetry_every
        progress = EpochProgress(
            self.settings.progress,
            epoch,
            self.settings.epochs,
            self.train_steps(),
            self.settings.log_every_s,
            self.settings.log_every_n_steps,
            first_of_run=epoch == self.start_epoch,
        )
        try:
            for batch in self.batches("train", epoch):
                start = time.perf_counter()
                self.optimizer.zero_grad(set_to_none=True)
                losses = self.compute_losses(batch, epoch)
                if not torch.isfinite(losses.fused):
                    raise FloatingPointError(
                        f"non-finite fused loss at epoch {epoch} step {self.step}; lower optim "
                        "lr or check the inputs"
                    )
                logged = every > 0 and self.step % every == 0
                stats = self.strategy.backward(self.model, losses, telemetry=logged)
                self.optimizer.step()
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                elapsed = time.perf_counter() - start
                n = len(losses.labels)
                self.timing["train_s"] += elapsed
                self.timing["steps"] += 1
                self.timing["samples"] += n
                self.timing["step_ms"].append(1000 * elapsed)
                for name, s in stats.items():
                    self.telemetry.append({"epoch": epoch, "step": self.step, "encoder": name, **s})
                loss = losses.fused.item()
                sums["loss"] += loss * n
                for m in self.modalities:
                    sums[f"loss_{m}"] += losses.unimodal[m].item() * n
                count += n
                if logged:
                    self.log_step(losses, stats)
                progress.update(loss, n)
                self.step += 1
        finally:
            progress.close()
        if self.scheduler is not None:
            self.scheduler.step()
        means = {f"train_{k}": v / max(count, 1) for k, v in sums.items()}
        self.strategy.on_epoch_end(epoch, means)
        return means

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        self.model.eval()
        fused, labels = [], []
        unimodal: dict[str, list[np.ndarray]] = {m: [] for m in self.modalities}
        for batch in self.batches(split, 0):
            with self.autocast():
                out = self.model(batch)
            fused.append(torch.softmax(out.fused.float(), 1).cpu().numpy())
            for m in self.modalities:
                unimodal[m].append(out.unimodal[m].float().cpu().numpy())
            labels.append(batch["label"].cpu().numpy())
        y = np.concatenate(labels)
        probs = np.concatenate(fused)
        result = {
            "acc": metrics.accuracy(probs, y),
            "map": metrics.macro_average_precision(probs, y),
        }
        for m in self.modalities:
            result[f"acc_{m}"] = metrics.accuracy(np.concatenate(unimodal[m]), y)
        return result

    def evaluates(self, epoch: int) -> bool:
        """Whether val and test are evaluated after ``epoch`` (0-based): from
        ``trainer.eval_from_epoch`` (1-based) on, and always after the last epoch."""
        return epoch + 1 >= self.settings.eval_from_epoch or epoch + 1 == self.settings.epochs

    # ----------------------------------------------------------------- outputs
    def write_progress(self) -> None:
        atomic.write_text(
            self.run_dir / "history.csv", pd.DataFrame(self.history).to_csv(index=False)
        )
        columns = ["epoch", "step", "encoder", "cos", "norm_mm", "norm_u", "w_mm", "w_u"]
        extra = sorted({k for row in self.telemetry for k in row} - set(columns))
        atomic.write_text(
            self.run_dir / "telemetry.csv",
            pd.DataFrame(self.telemetry, columns=columns + extra).to_csv(index=False),
        )
        atomic.torch_save(self.run_dir / CHECKPOINT, self.state())

    def protocol(self, name: str) -> dict[str, Any] | None:
        """Test metrics at the epoch the protocol selects (None if it cannot apply)."""
        frame = pd.DataFrame(self.history).dropna(subset=["test_acc"])  # evaluated epochs
        if name == "paper":
            row = frame.loc[frame["test_acc"].idxmax()]
        elif name == "val":
            if "val_acc" not in frame or frame["val_acc"].isna().all():
                return None
            row = frame.loc[frame["val_acc"].idxmax()]
        else:
            row = frame.iloc[-1]
        result: dict[str, Any] = {
            "epoch": int(row["epoch"]),
            "acc": float(row["test_acc"]),
            "map": float(row["test_map"]),
        }
        for m in self.modalities:
            trained = self.strategy.trains_unimodal_heads
            result[f"acc_{m}"] = float(row[f"test_acc_{m}"]) if trained else None
        if name == "val":
            # what the selection saw: the metric to tune on (val.val_acc), never test
            result["val_acc"] = float(row["val_acc"])
        return result

    def summary(self) -> dict[str, Any]:
        step_ms = np.array(self.timing["step_ms"]) if self.timing["step_ms"] else np.array([0.0])
        if self.device.type == "cuda":
            peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
            peak_kind = "cuda_max_allocated"
        else:
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            peak_kind = "process_max_rss"
        protocols = {p: self.protocol(p) for p in PROTOCOLS}
        return {
            **self.run_info,
            "status": "completed",
            "epochs_done": len(self.history),
            "unimodal_heads_trained": self.strategy.trains_unimodal_heads,
            "protocols": protocols,
            "unavailable_protocols": {
                p: NO_VAL_SPLIT if p == "val" else "not available"
                for p, result in protocols.items()
                if result is None
            },
            "conflict": metrics.conflict_summary(self.telemetry),
            "data": {"samples": self.splits.sizes(), "skipped": dict(self.splits.skipped)},
            "timing": {
                "ms_per_step": float(np.median(step_ms)),
                "ms_per_step_mean": float(step_ms.mean()),
                "samples_per_s": self.timing["samples"] / max(self.timing["train_s"], 1e-12),
                "train_s": self.timing["train_s"],
                "steps": self.timing["steps"],
            },
            "peak_memory_mb": peak_mb,
            "peak_memory_kind": peak_kind,
            "device": str(self.device),
        }

    def fit(self) -> dict[str, Any]:
        """Train (resuming if asked), evaluate each epoch, return the final summary."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        checkpoint = self.run_dir / CHECKPOINT
        if self.settings.resume and checkpoint.is_file():
            self.load(checkpoint)
        if self.splits.val is None:
            log.info(
                "%s: the val protocol is not available (reported as such in metrics.json, "
                "runs.csv and the leaderboard, never as a number)",
                NO_VAL_SPLIT,
            )
        log.info(
            "training on %s: epochs %d-%d of %d, %d steps each (batch %d)",
            self.device,
            self.start_epoch + 1,
            self.settings.epochs,
            self.settings.epochs,
            self.train_steps(),
            self.settings.batch_size,
        )
        for epoch in range(self.start_epoch, self.settings.epochs):
            t0 = time.perf_counter()
            row: dict[str, Any] = {"epoch": epoch, **self.train_epoch(epoch)}
            row["lr"] = self.optimizer.param_groups[0]["lr"]
            if self.evaluates(epoch):
                if self.splits.val is not None:
                    row.update({f"val_{k}": v for k, v in self.evaluate("val").items()})
                row.update({f"test_{k}": v for k, v in self.evaluate("test").items()})
            row["epoch_s"] = time.perf_counter() - t0
            self.history.append(row)
            self.write_progress()
            self.logger.log_metrics(
                {f"epoch/{key}": float(value) for key, value in row.items()}, self.step
            )
            log.info(
                "epoch %d/%d  loss %.4f  %s%s%s  (%.1fs)",
                epoch + 1,
                self.settings.epochs,
                row["train_loss"],
                f"test acc {row['test_acc']:.4f}" if "test_acc" in row else "not evaluated",
                head_accuracies(row, "test", self.strategy.trains_unimodal_heads),
                f"  val acc {row['val_acc']:.4f}" if "val_acc" in row else "",
                row["epoch_s"],
            )
            if (
                self.settings.stop_after_epochs is not None
                and epoch + 1 - self.start_epoch >= self.settings.stop_after_epochs
                and epoch + 1 < self.settings.epochs
            ):
                raise Interrupted(f"stopped after epoch {epoch + 1} (trainer.stop_after_epochs)")
        if not self.history:
            raise RuntimeError("trainer.epochs must be >= 1")
        summary = self.summary()
        atomic.write_json(self.run_dir / "metrics.json", summary)
        return summary


class Interrupted(RuntimeError):
    """A deliberate stop before the last epoch (simulated preemption); resume continues."""
