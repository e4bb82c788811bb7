"""``mmbench train``: compose the config, build every part, fit, write the run directory.

Returns the sweep metric (``optimized_metric``, e.g. ``val.val_acc``) so Hydra sweepers can
optimise it. Before anything is built the config values are checked
(:mod:`mmbench.config_checks`) and the run directory is admitted
(:mod:`mmbench.run_integrity`): these errors always stop the job and leave an existing run
directory byte-identical. In a multirun a job failing later is recorded (``metrics.json``
with status ``failed``) and the sweep goes on; a single run re-raises.

The experiment logger (``logger=``, :mod:`mmbench.loggers`) is built first in
:func:`train`, so a chosen backend that is not installed fails at start; it receives the
composed config as params, the engine's metrics, the run's files as artifacts and the end
status. In a multirun every log line carries the job's tag (:mod:`mmbench.utils.job_tag`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import socket
import subprocess
import time
import traceback
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mmbench import config_checks, progress, run_integrity
from mmbench.engine import (
    NO_VAL_SPLIT,
    Engine,
    TrainerSettings,
    configure_determinism,
    seed_everything,
)
from mmbench.loggers.base import ExperimentLogger, flatten
from mmbench.loggers.group import build_logger
from mmbench.models.modality import IncompatibleConfigError, ModalitySpec, modality_specs
from mmbench.models.multimodal import MultimodalClassifier
from mmbench.utils import atomic
from mmbench.utils.cpus import usable_cpus
from mmbench.utils.host_memory import keep_freed_host_memory
from mmbench.utils.job_tag import install_job_tag

log = logging.getLogger(__name__)
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
AXES = ("dataset", "backbone", "fusion", "strategy", "optim")
# trainer knobs that do not change the result: left out of the config hash
NOT_HASHED = ("resume", "stop_after_epochs", "progress", "log_every_s", "log_every_n_steps")
# run-directory files reported to the experiment logger as artifacts (when present)
ARTIFACTS = ("metrics.json", "history.csv", "telemetry.csv", ".hydra/config.yaml")


def git_revision() -> str:
    """The code revision (``<sha>`` or ``<sha>-dirty``), ``unknown`` outside a git checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def trainer_settings(cfg: DictConfig) -> TrainerSettings:
    known = {f.name for f in dataclasses.fields(TrainerSettings)}
    given = OmegaConf.to_container(cfg.trainer, resolve=True)
    unknown = sorted(set(given) - known - {"name"})
    if unknown:
        raise IncompatibleConfigError(
            f"trainer: unknown keys {unknown}; known keys are {sorted(known)}"
        )
    return TrainerSettings(**{k: v for k, v in given.items() if k in known})


def build_model(cfg: DictConfig) -> MultimodalClassifier:
    """The model for this dataset's modalities; refuses backbone/modality mismatches."""
    specs = modality_specs(OmegaConf.to_container(cfg.dataset.modalities, resolve=True))
    return MultimodalClassifier(
        specs,
        instantiate(cfg.backbone.factory),
        instantiate(cfg.fusion.module),
        int(cfg.dataset.num_classes),
    )


def check_sample_shapes(splits: Any, specs: list[ModalitySpec], dataset: str) -> None:
    """The data must match the modalities the config declares (clear error otherwise)."""
    sample = splits.train[0]
    for spec in specs:
        if spec.name not in sample:
            raise IncompatibleConfigError(
                f"dataset {dataset}: samples have no modality '{spec.name}' "
                f"(keys: {sorted(sample)}); fix dataset.modalities"
            )
        shape = tuple(sample[spec.name].shape)
        if shape != spec.shape:
            raise IncompatibleConfigError(
                f"dataset {dataset}: modality '{spec.name}' samples have shape {list(shape)}, "
                f"the config declares {list(spec.shape)}; fix dataset.modalities"
            )


def config_hash(cfg: DictConfig) -> str:
    """A hash of everything that determines the result (:data:`NOT_HASHED` excluded).

    Hashed unresolved: interpolations (e.g. ``${paths.data_dir}``) count as written, so
    moving the data does not change a run's identity.
    """
    node = OmegaConf.to_container(
        OmegaConf.masked_copy(cfg, [*AXES, "trainer", "seed"]), resolve=False
    )
    for knob in NOT_HASHED:
        node["trainer"].pop(knob, None)
    return hashlib.sha1(json.dumps(node, sort_keys=True).encode()).hexdigest()[:12]


SCHEDULER_ENV = {
    "slurm_job_id": "SLURM_JOB_ID",
    "slurm_array_job_id": "SLURM_ARRAY_JOB_ID",
    "slurm_array_task_id": "SLURM_ARRAY_TASK_ID",
    "cuda_visible_devices": "CUDA_VISIBLE_DEVICES",
}


def run_info(cfg: DictConfig) -> dict[str, Any]:
    """The run's identity (config axes, seed, epochs, config hash, code revision) and where
    it ran (host, SLURM ids, visible GPUs)."""
    return {
        **{axis: str(cfg[axis].name) for axis in AXES},
        "seed": int(cfg.seed),
        "epochs": int(cfg.trainer.epochs),
        "config_hash": config_hash(cfg),
        "git_rev": git_revision(),
        "host": socket.gethostname(),
        **{key: os.environ.get(var) for key, var in SCHEDULER_ENV.items()},
    }


def parallel_jobs() -> int:
    """How many jobs of this sweep run at once on this machine (joblib's ``n_jobs``)."""
    if not HydraConfig.initialized():
        return 1
    n_jobs = OmegaConf.select(HydraConfig.get(), "launcher.n_jobs", default=None)
    if n_jobs is None:
        return 1
    n_jobs = int(n_jobs)
    return usable_cpus() if n_jobs < 0 else max(n_jobs, 1)


def thread_count(requested: int | None, jobs: int, cpus: int) -> int:
    """torch CPU threads: ``requested`` when set, else the usable CPUs shared among the jobs."""
    return requested if requested else max(1, cpus // max(jobs, 1))


def configure_threads(requested: int | None) -> None:
    """Set torch's CPU threads from :func:`thread_count` over the CPUs this process may use
    (affinity mask, SLURM allocation, cgroup quota: :mod:`mmbench.utils.cpus`), never the
    machine's ``os.cpu_count()``."""
    torch.set_num_threads(thread_count(requested, parallel_jobs(), usable_cpus()))


def prepare(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """Check the config and admit ``run_dir`` before building anything.

    Returns the summary of this configuration's completed run in ``run_dir`` (nothing to
    do), or None (train). Raises :class:`config_checks.ConfigValueError` or
    :class:`run_integrity.RunDirError`.
    """
    config_checks.check_config(cfg)
    settings = trainer_settings(cfg)
    progress.check_settings(settings.progress, settings.log_every_s, settings.log_every_n_steps)
    return run_integrity.admit(run_dir, config_hash(cfg), settings.resume)


def fit(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Check and admit (:func:`prepare`), then build everything from the config and train."""
    done = prepare(cfg, run_dir)
    if done is not None:
        log.info("%s is complete; nothing to resume", run_dir)
        return done
    return train(cfg, run_dir)


def in_multirun() -> bool:
    """Whether this job is part of a Hydra multirun."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def logged_params(cfg: DictConfig, info: dict[str, Any]) -> dict[str, Any]:
    """The composed config (resolved, flattened to dotted keys) and the run's identity."""
    params = flatten(OmegaConf.to_container(cfg, resolve=True))
    params.update({f"run.{key}": value for key, value in info.items()})
    return params


def protocol_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """``{"paper/acc": ..., "val/map": ...}``: the protocols' numbers in ``summary``."""
    values = {}
    for name, result in (summary.get("protocols") or {}).items():
        for key, value in (result or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                values[f"{name}/{key}"] = float(value)
    return values


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Build the logger, dataset, model, strategy, optimiser from the (checked) config and
    train; the logger is closed with the run's status (completed, failed or interrupted)."""
    settings = trainer_settings(cfg)
    settings = dataclasses.replace(
        settings, progress=progress.resolve_mode(settings.progress, in_multirun())
    )
    info = run_info(cfg)
    logger = build_logger(cfg.get("logger"), run_dir)
    try:
        logger.log_params(logged_params(cfg, info))
        summary = build_and_fit(cfg, run_dir, settings, info, logger)
    except BaseException as error:
        logger.close("interrupted" if type(error).__name__ == "Interrupted" else "failed")
        raise
    for name in ARTIFACTS:
        if (run_dir / name).is_file():
            logger.log_artifact(run_dir / name)
    logger.close("completed")
    return summary


def build_optimizer(
    cfg: DictConfig, params: Iterable[torch.nn.Parameter]
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    """The ``optim`` group's optimiser over ``params`` and its scheduler, stepped once per
    epoch by the engine, or None when ``optim.step_scheduler`` is false."""
    optimizer = instantiate(cfg.optim.optimizer)(params=params)
    if not cfg.optim.get("step_scheduler"):
        return optimizer, None
    return optimizer, instantiate(cfg.optim.scheduler)(optimizer)


def build_and_fit(
    cfg: DictConfig,
    run_dir: Path,
    settings: TrainerSettings,
    info: dict[str, Any],
    logger: ExperimentLogger,
) -> dict[str, Any]:
    """Build everything, saying what start-up is doing, then fit and write metrics.json."""
    configure_threads(settings.num_threads)
    host_memory_kept = settings.keep_freed_host_memory and keep_freed_host_memory()
    configure_determinism(settings.deterministic)
    seed_everything(int(cfg.seed))
    log.info(
        "building model (%s backbone, %s fusion) and strategy %s ...",
        cfg.backbone.name,
        cfg.fusion.name,
        cfg.strategy.name,
    )
    model = build_model(cfg)
    strategy = instantiate(cfg.strategy.method)
    log.info("building dataset %s ...", cfg.dataset.name)
    data_start = time.perf_counter()
    splits = instantiate(cfg.dataset.build)
    log.info(
        "loaded %d train / %s val / %d test samples in %.1f s%s",
        len(splits.train),
        "no" if splits.val is None else len(splits.val),
        len(splits.test),
        time.perf_counter() - data_start,
        "".join(
            f"; skipped {n} {split} sample(s) (see the warnings above)"
            for split, n in splits.skipped.items()
            if n
        ),
    )
    check_sample_shapes(splits, model.modalities, str(cfg.dataset.name))
    params = [*model.parameters(), *strategy.parameters()]
    optimizer, scheduler = build_optimizer(cfg, params)
    engine = Engine(
        model,
        strategy,
        optimizer,
        scheduler,
        splits,
        settings,
        int(cfg.seed),
        run_dir,
        info,
        logger,
    )
    started_at, start = datetime.now(timezone.utc).isoformat(), time.perf_counter()
    summary = engine.fit()
    summary["timing"]["wall_s"] = time.perf_counter() - start
    summary["timing"]["host_memory_kept"] = host_memory_kept
    summary["started_at"] = started_at
    summary["finished_at"] = datetime.now(timezone.utc).isoformat()
    summary["overrides"] = (
        list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    )
    atomic.write_json(run_dir / "metrics.json", summary)
    logger.log_metrics(protocol_metrics(summary), engine.step)
    return summary


def metric_value(summary: dict[str, Any], dotted: str) -> float:
    """``val.acc`` -> summary["protocols"]["val"]["acc"]; NaN when unavailable."""
    node: Any = summary.get("protocols", {})
    for key in dotted.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return float(node) if isinstance(node, int | float) else float("nan")


def unavailable_reason(summary: dict[str, Any], dotted: str) -> str | None:
    """Why the protocol of ``dotted`` has no value in ``summary`` (None: it has one)."""
    protocol = dotted.split(".", 1)[0]
    reason = (summary.get("unavailable_protocols") or {}).get(protocol)
    if (
        reason is None
        and protocol == "val"
        and (summary.get("protocols") or {}).get("val", {}) is None
    ):
        return NO_VAL_SPLIT
    return reason


def report_metric(cfg: DictConfig, summary: dict[str, Any], run_dir: Path) -> float:
    """Log the sweep metric (or why it is not available) and return it (NaN if not)."""
    metric = str(cfg.optimized_metric)
    reason = unavailable_reason(summary, metric)
    if reason is not None:
        log.info("%s not available: %s  (run dir %s)", metric, reason, run_dir)
        return float("nan")
    value = metric_value(summary, metric)
    log.info("%s = %.4f  (run dir %s)", metric, value, run_dir)
    return value


def record_failure(cfg: DictConfig, run_dir: Path, error: BaseException) -> None:
    """Write a failed ``metrics.json`` (status, error, traceback tail) for the collector."""
    info = {axis: OmegaConf.select(cfg, f"{axis}.name") for axis in AXES}
    atomic.write_json(
        run_dir / "metrics.json",
        {
            **info,
            "seed": int(cfg.seed),
            "git_rev": git_revision(),
            "status": "interrupted" if type(error).__name__ == "Interrupted" else "failed",
            "error": f"{type(error).__name__}: {error}",
            "traceback": traceback.format_exc()[-4000:],
        },
    )


def refuse(cfg: DictConfig, run_dir: Path, hydra_files: run_integrity.HydraFiles) -> str:
    """Undo what Hydra wrote before a refused start; returns a note for the error message.

    A directory holding a run gets its ``.hydra/`` back from the kept copy (nothing else
    was written: the refusal is not logged to ``train.log``); a fresh directory records the
    error in ``metrics.json`` so the collector does not count the job as still running.
    """
    if hydra_files.restore():
        return f"\n(nothing in {run_dir} was changed: .hydra/ restored from {hydra_files.kept})"
    if run_integrity.holds_run(run_dir):
        return (
            f"\n(Hydra had already rewritten {hydra_files.live}; this run predates the kept "
            f"copy {hydra_files.kept}, so it could not be restored)"
        )
    return ""


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    """Hydra entry point; returns the sweep metric."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    multirun = in_multirun()
    if multirun:
        install_job_tag(run_dir.name)
    hydra_files = run_integrity.HydraFiles(run_dir)
    try:
        if multirun:
            config_checks.check_optimized_metric(cfg)
        done = prepare(cfg, run_dir)
    except (
        config_checks.ConfigValueError,
        IncompatibleConfigError,
        run_integrity.RunDirError,
    ) as error:
        note = refuse(cfg, run_dir, hydra_files)
        if not run_integrity.holds_run(run_dir):
            record_failure(cfg, run_dir, error)
        raise type(error)(f"{error}{note}") from None
    if done is not None:
        hydra_files.restore()
        log.info("%s is complete; nothing to resume", run_dir)
        return report_metric(cfg, done, run_dir)
    hydra_files.keep()
    try:
        summary = train(cfg, run_dir)
    except Exception as error:
        record_failure(cfg, run_dir, error)
        if multirun and cfg.get("continue_on_failure", True):
            log.error("run failed and was recorded in %s: %s", run_dir / "metrics.json", error)
            return float("nan")
        raise
    return report_metric(cfg, summary, run_dir)
