"""Tag every log line of a sweep job with the job's name, e.g. ``[3_cgmnist_mini_mmpareto_s0]``.

Parallel jobs of a multirun share one terminal; the tag says which job a line belongs to.
The filter sits on the root logger's handlers (Hydra reconfigures them for every job), so
records of every module logger are tagged once, whichever handler writes them.
"""

from __future__ import annotations

import logging

TAGGED = "mmbench_job_tag"


class JobTagFilter(logging.Filter):
    """Prefixes ``[tag] `` to each record's message (once per record)."""

    def __init__(self, tag: str) -> None:
        super().__init__()
        self.tag = tag

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, TAGGED, False):
            record.msg = f"[{self.tag}] {record.msg}"
            setattr(record, TAGGED, True)
        return True


def install_job_tag(tag: str, logger: logging.Logger | None = None) -> JobTagFilter:
    """Add a :class:`JobTagFilter` for ``tag`` to each handler of ``logger`` (root)."""
    logger = logging.getLogger() if logger is None else logger
    tag_filter = JobTagFilter(tag)
    for handler in logger.handlers:
        for old in [f for f in handler.filters if isinstance(f, JobTagFilter)]:
            handler.removeFilter(old)
        handler.addFilter(tag_filter)
    return tag_filter
