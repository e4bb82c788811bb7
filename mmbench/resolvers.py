"""OmegaConf resolvers used by conf/ (registered when mmbench.train is imported)."""

from __future__ import annotations

import os
import secrets

from omegaconf import OmegaConf

from mmbench.utils.cpus import usable_cpus


def unique_suffix() -> str:
    """``<pid>-<4 hex>``: run directories of jobs started in the same microsecond differ."""
    return f"{os.getpid()}-{secrets.token_hex(2)}"


if not OmegaConf.has_resolver("mmbench.uid"):
    OmegaConf.register_new_resolver("mmbench.uid", unique_suffix, use_cache=True)
if not OmegaConf.has_resolver("mmbench.usable_cpus"):
    # the CPUs this process may use (affinity, SLURM_CPUS_PER_TASK, cgroup quota)
    OmegaConf.register_new_resolver("mmbench.usable_cpus", usable_cpus)
