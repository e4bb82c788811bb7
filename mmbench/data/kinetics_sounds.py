"""Kinetics-Sounds: audio + 3 visual frames, 31 classes (alphabetical order).

Prepared layout (written by ``mmbench prepare kinetics_sounds``)::

    <root>/splits/{train,test}.txt       the split list as given (either format below)
    <root>/audio_fbank/<clip>.npy        MMPareto Kaldi fbank, float32 (1024, 128)
    <root>/frames/<clip>/*.jpg           frames at 1 fps (sorted names)

Two split-list formats circulate (spec/datasets.md) and both are read: OGM-GE's
``<youtube_id>_<start>_<end>,10,<label>`` and ``<name> <label>``. A label is a class name
(spaces or underscores) or a class index.

Frames follow the authors' Kinetics-Sounds loaders (GeWu-Lab/InfoReg_CVPR2025
``KSDataset.py``, GeWu-Lab/BalanceBenchmark ``balancemm/datasets/KS_dataset.py``): a clip
is kept when its cached audio exists and its folder holds more than 3 frames
(``min_frames=4``), and 3 frames are picked by ``frame_rule=gewu_ks`` (see
``mmbench.data.frames``; ``frame_rule=segments`` with ``min_frames=3`` is the equal-segment,
middle-frame rule used before). Skipped clips are counted in the log.
"""

from __future__ import annotations

from pathlib import Path

from mmbench.data.av_clips import build_clip_splits
from mmbench.data.prepared_root import require_path
from mmbench.data.tensor_dataset import DatasetSplits

DATASET = "kinetics_sounds"
CLASS_NAMES = [
    "blowing_nose", "blowing_out_candles", "bowling", "chopping_wood", "dribbling_basketball",
    "laughing", "mowing_lawn", "playing_accordion", "playing_bagpipes", "playing_bass_guitar",
    "playing_clarinet", "playing_drums", "playing_guitar", "playing_harmonica",
    "playing_keyboard", "playing_organ", "playing_piano", "playing_saxophone",
    "playing_trombone", "playing_trumpet", "playing_violin", "playing_xylophone",
    "ripping_paper", "shoveling_snow", "shuffling_cards", "singing", "stomping_grapes",
    "tap_dancing", "tapping_guitar", "tapping_pen", "tickling",
]  # fmt: skip
SPLITS = ("train", "test")
SPLIT_SUFFIXES = (".csv", ".txt")
MEDIA_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".wav", ".npy")


def class_index(label: str) -> int:
    """A class name (``playing piano``, ``playing_piano``, quoted or not) or an index."""
    text = label.strip().strip('"').strip()
    if text.isdigit():
        index = int(text)
        if index < len(CLASS_NAMES):
            return index
        raise ValueError(f"class index {index} out of range 0..{len(CLASS_NAMES) - 1}")
    name = "_".join(text.lower().split())
    if name not in CLASS_NAMES:
        raise ValueError(f"unknown class {label!r}")
    return CLASS_NAMES.index(name)


def clip_name(field: str) -> str:
    """The clip id of a list entry: folder prefixes and media extensions removed."""
    name = Path(field.strip()).name
    suffix = Path(name).suffix.lower()
    return name[: -len(suffix)] if suffix in MEDIA_SUFFIXES else name


def parse_split_line(line: str) -> tuple[str, int] | None:
    """One list line -> ``(clip, class index)``; None for a blank line."""
    text = line.strip()
    if not text:
        return None
    if "," in text:
        fields = text.split(",")
        name, label = fields[0], fields[-1]
    else:
        parts = text.split(maxsplit=1)
        if len(parts) != 2:
            raise ValueError("expected '<id>_<start>_<end>,10,<label>' or '<name> <label>'")
        name, label = parts
    return clip_name(name), class_index(label)


def read_split_list(path: Path) -> list[tuple[str, int]]:
    """``(clip, class index)`` per line of a split list in either format."""
    entries = []
    with path.open(encoding="utf-8-sig") as lines:
        for number, line in enumerate(lines, start=1):
            try:
                entry = parse_split_line(line)
            except ValueError as error:
                raise ValueError(f"{path}:{number}: {error}: {line.strip()!r}") from error
            if entry is not None:
                entries.append(entry)
    return entries


def find_split_list(folder: Path, split: str) -> Path | None:
    """``<folder>/<split>.csv`` or ``.txt`` (or ``<split>_list.txt``), whichever exists."""
    for stem in (split, f"{split}_list"):
        for suffix in SPLIT_SUFFIXES:
            if (folder / f"{stem}{suffix}").is_file():
                return folder / f"{stem}{suffix}"
    return None


def build(
    root: str,
    num_frames: int = 3,
    image_size: int = 224,
    min_frames: int = 4,
    val_per_class: int = 0,
    seed: int = 0,
    frame_rule: str = "gewu_ks",
) -> DatasetSplits:
    """Kinetics-Sounds splits from the prepared ``root``."""
    base = require_path(Path(root), DATASET, "the prepared Kinetics-Sounds root")
    lists = {}
    for split in SPLITS:
        found = find_split_list(base / "splits", split)
        lists[split] = require_path(
            found or base / "splits" / f"{split}.txt", DATASET, f"the {split} split list"
        )
    audio_dir = require_path(base / "audio_fbank", DATASET, "the cached fbank audio features")
    frames_dir = require_path(base / "frames", DATASET, "the frames folder")
    return build_clip_splits(
        read_split_list(lists["train"]),
        read_split_list(lists["test"]),
        CLASS_NAMES,
        audio_dir,
        frames_dir,
        num_frames,
        image_size,
        min_frames,
        val_per_class,
        seed,
        DATASET,
        frame_rule,
    )
