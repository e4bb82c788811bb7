"""Atomic file writes: write a temporary file beside the target, then rename over it.

The temporary file is created with mode 0666 and the kernel applies the process umask,
so results get the same permissions as any other file the user writes (``tempfile.mkstemp``
would leave them 0600, unreadable to colleagues on a shared cluster).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new, exclusively created ``.<name>.<random>.tmp`` beside ``path`` (0666 & ~umask)."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def _atomic(path: Path, write: Callable[[IO], None], mode: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    _atomic(path, lambda f: f.write(text), "w")


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    _atomic(path, lambda f: f.write(data), "wb")


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON atomically (NaN is written as null)."""
    write_text(path, json.dumps(_nan_to_none(data), indent=2, sort_keys=False) + "\n")


def torch_save(path: Path, obj: Any) -> None:
    """``torch.save`` atomically."""
    _atomic(path, lambda f: torch.save(obj, f), "wb")


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_none(v) for v in value]
    return value
