"""How many CPUs this process may really use.

``os.cpu_count()`` is the whole machine: on a SLURM node, in a container or under
``taskset`` it overstates what a job may run on, and torch threads beyond that only
contend. The usable count is the smallest of

- the CPUs in the process's affinity mask (``os.sched_getaffinity(0)``; ``taskset``,
  SLURM's cgroup/affinity plugins and ``docker --cpuset-cpus`` all shrink it),
- ``SLURM_CPUS_PER_TASK`` when the job runs under SLURM,
- the cgroup v2 CPU quota (``/sys/fs/cgroup/cpu.max``: ``quota period``, rounded up),

and at least 1.

Waiting threads: OpenMP (GNU libgomp, torch's CPU thread pool in the pip wheels) lets idle
worker threads spin at every barrier, for about 300,000 iterations by default. On a machine
shared with other CPU-bound processes a spinning thread burns the time slice its
descheduled peer needs, so a 2-3x oversubscription cost 7x per step here (and 20x in an
outside review). :func:`limit_spinning` caps the spin at ``GOMP_SPINCOUNT=1000`` iterations,
then threads sleep; measured in ``docs/performance.md``: as fast as the default on a quiet
machine, 2.3x faster under load (``OMP_WAIT_POLICY=PASSIVE``, no spin at all, was 1.4x
slower on a quiet machine). It leaves the environment alone when the user set either
variable, and must run before torch loads its OpenMP runtime, so ``mmbench/__init__.py``
calls it first.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


SPIN_COUNT = "1000"  # libgomp spin iterations before a waiting thread sleeps (default 300000)


def limit_spinning(environ: MutableMapping[str, str] | None = None) -> None:
    """``GOMP_SPINCOUNT=1000`` unless ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` is set."""
    environ = os.environ if environ is None else environ
    if "OMP_WAIT_POLICY" not in environ and "GOMP_SPINCOUNT" not in environ:
        environ["GOMP_SPINCOUNT"] = SPIN_COUNT


def affinity_cpus() -> int:
    """CPUs in this process's affinity mask (``os.cpu_count()`` where there is no such call)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def slurm_cpus(environ: Mapping[str, str]) -> int | None:
    """``SLURM_CPUS_PER_TASK`` as a positive int, or None when unset or not a number."""
    value = environ.get("SLURM_CPUS_PER_TASK", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def cgroup_quota_cpus(cpu_max: Path = CGROUP_CPU_MAX) -> int | None:
    """ceil(quota / period) from a cgroup v2 ``cpu.max`` file; None when unlimited or absent."""
    try:
        fields = cpu_max.read_text().split()
    except OSError:
        return None
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return max(1, math.ceil(quota / period)) if quota > 0 and period > 0 else None


def usable_cpus(environ: Mapping[str, str] | None = None, cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """min(affinity mask, SLURM_CPUS_PER_TASK, cgroup quota), at least 1."""
    environ = os.environ if environ is None else environ
    limits = [affinity_cpus(), slurm_cpus(environ), cgroup_quota_cpus(cpu_max)]
    return max(1, min(n for n in limits if n is not None))
