"""Tiny datasets written in the real raw layouts (tests and ``mmbench bench-data``).

Files are real: 16 kHz PCM16 WAVs (soundfile), JPEG frames and PNG renderings (PIL).
Frame ``i`` of a clip is a solid grey of level ``frame_level(i)`` and view ``v`` of a
ModelNet40 object a solid grey of level ``view_level(v)``, so a test can tell from a
loaded tensor which frame or view it came from. Everything is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

SAMPLE_RATE = 16000


def frame_level(index: int) -> int:
    """The grey level (0-255) of frame ``index`` in fixture clips."""
    return 10 + 20 * index


def view_level(view: int) -> int:
    """The grey level (0-255) of view ``view`` in fixture ModelNet40 objects."""
    return 8 + 20 * view


def write_wav(path: Path, seconds: float, frequency: float, seed: int) -> None:
    """A 16 kHz mono PCM16 WAV: a sine plus a little seeded noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    wave = 0.4 * np.sin(2 * np.pi * frequency * t) + 0.05 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")


def write_frames(folder: Path, count: int, size: tuple[int, int] = (40, 32)) -> None:
    """``count`` solid-grey JPEG frames ``000001.jpg ...`` (frame i has ``frame_level(i)``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        level = frame_level(i)
        Image.new("RGB", size, (level, level, level)).save(folder / f"{i + 1:06d}.jpg", quality=95)


def cremad_clip_name(index: int, emotion: str) -> str:
    """A CREMA-D style clip name ``<actor>_<sentence>_<EMO>_XX``."""
    sentences = ("DFA", "IEO", "IOM", "ITH", "ITS", "MTI", "TAI", "TIE", "TSI", "WSI")
    return f"{1001 + index // 10}_{sentences[index % 10]}_{emotion}_XX"


def write_raw_cremad(
    raw: Path,
    train_per_class: int,
    test_per_class: int,
    frames_per_clip: int = 3,
    seconds: float = 2.0,
    bom: bool = True,
    emotions: Sequence[str] = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD"),
) -> dict[str, list[str]]:
    """CREMA-D raw layout: split CSVs, ``AudioWAV/<clip>.wav``, ``frames/<clip>/*.jpg``.

    Returns ``{"train": [clips], "test": [clips]}``. ``bom`` starts train.csv with a BOM.
    """
    splits: dict[str, list[str]] = {"train": [], "test": []}
    index = 0
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        lines = []
        for k, emotion in enumerate(emotions):
            for _ in range(per_class):
                clip = cremad_clip_name(index, emotion)
                write_wav(raw / "AudioWAV" / f"{clip}.wav", seconds, 200.0 + 100 * k, index)
                write_frames(raw / "frames" / clip, frames_per_clip)
                lines.append(f"{clip},{emotion}\n")
                splits[split].append(clip)
                index += 1
        prefix = "\ufeff" if bom and split == "train" else ""
        (raw / f"{split}.csv").write_text(prefix + "".join(lines), encoding="utf-8")
    return splits


def modelnet40_view_name(obj: str, view: int) -> str:
    """The MVCNN 12-view release's file name of view ``view`` (0-based) of ``obj``."""
    return f"{obj}.obj.shaded_v{view + 1:03d}.png"


def write_raw_modelnet40(
    raw: Path, classes: Sequence[str], train_per_class: int, test_per_class: int, size: int = 40
) -> list[str]:
    """MVCNN 12-view layout ``<class>/<split>/<class>_<NNNN>.obj.shaded_v001.png ... v012``.

    Objects are numbered per class from 0001, train first then test (as in ModelNet40).
    Returns ``<class>/<split>/<obj>`` per object.
    """
    objects = []
    for name in classes:
        number = 0
        for split, count in (("train", train_per_class), ("test", test_per_class)):
            folder = raw / name / split
            folder.mkdir(parents=True, exist_ok=True)
            for _ in range(count):
                number += 1
                obj = f"{name}_{number:04d}"
                for view in range(12):
                    level = view_level(view)
                    image = Image.new("RGB", (size, size), (level, level, level))
                    image.save(folder / modelnet40_view_name(obj, view))
                objects.append(f"{name}/{split}/{obj}")
    return objects
