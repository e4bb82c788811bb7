"""A Hydra launcher that spreads sweep jobs over the machine's GPUs.

Each job runs in a fresh process whose ``CUDA_VISIBLE_DEVICES`` names one GPU, so the job
sees only its GPU as ``cuda:0``. ``jobs_per_gpu`` slots per GPU run at once (several small
jobs can share a GPU); a job starts as soon as a slot frees up.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import cloudpickle
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


def visible_gpus(gpus: Sequence[int] | str | None) -> list[int]:
    """The GPU ids to use: a list as given, or ``auto`` = every GPU torch can see."""
    if gpus in (None, "auto"):
        import torch

        return list(range(torch.cuda.device_count()))
    return [int(g) for g in gpus]  # type: ignore[union-attr]


def _run_job_in_child(shared: bytes, job_num: int, overrides: list[str], gpu: str) -> bytes:
    """Body of one job process: pin its GPU before anything initialises CUDA, then run.

    The JobReturn travels back cloudpickled (Hydra's dynamic config classes defeat pickle).
    """
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    hydra_context, config, task_function, singleton_state = cloudpickle.loads(shared)
    setup_globals()
    Singleton.set_state(singleton_state)
    sweep_config = hydra_context.config_loader.load_sweep_config(config, overrides)
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{job_num}"
        sweep_config.hydra.job.num = job_num
    HydraConfig.instance().set_config(sweep_config)
    result = run_job(
        hydra_context=hydra_context,
        task_function=task_function,
        config=sweep_config,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
    return cloudpickle.dumps(result)


class GpuPoolLauncher(Launcher):
    """Run sweep jobs in parallel, ``jobs_per_gpu`` per GPU, one fresh process per job."""

    def __init__(self, gpus: Any = "auto", jobs_per_gpu: int = 1) -> None:
        self.gpus, self.jobs_per_gpu = gpus, int(jobs_per_gpu)
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.hydra_context, self.task_function, self.config = hydra_context, task_function, config

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        assert self.config is not None and self.hydra_context is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        gpus = visible_gpus(self.gpus)
        if not gpus or self.jobs_per_gpu < 1:
            raise RuntimeError(
                f"hydra/launcher=gpus found no GPU to use (gpus={self.gpus}, jobs_per_gpu="
                f"{self.jobs_per_gpu}). On a CPU machine use hydra/launcher=parallel, or name "
                "GPUs with hydra.launcher.gpus=[0,1]."
            )
        slots = [str(g) for g in gpus for _ in range(self.jobs_per_gpu)]
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(
            "GPU pool: %d jobs on GPUs %s, %d per GPU; sweep dir %s",
            len(job_overrides),
            gpus,
            self.jobs_per_gpu,
            sweep_dir,
        )
        for i, overrides in enumerate(job_overrides):
            log.info("\t#%d : %s", initial_job_idx + i, " ".join(filter_overrides(overrides)))
        shared = cloudpickle.dumps(
            (self.hydra_context, self.config, self.task_function, Singleton.get_state())
        )
        results: list[JobReturn | None] = [None] * len(job_overrides)
        pending = list(enumerate(job_overrides))
        free = list(range(len(slots)))
        running: dict[Future, tuple[int, int]] = {}
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(len(slots), mp_context=context, max_tasks_per_child=1) as pool:
            while pending or running:
                while pending and free:
                    slot = free.pop(0)
                    i, overrides = pending.pop(0)
                    future = pool.submit(
                        _run_job_in_child, shared, initial_job_idx + i, list(overrides), slots[slot]
                    )
                    running[future] = (slot, i)
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in done:
                    slot, i = running.pop(future)
                    free.append(slot)
                    results[i] = cloudpickle.loads(future.result())
        return [r for r in results if r is not None]
