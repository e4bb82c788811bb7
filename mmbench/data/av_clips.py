"""Audio + multi-frame visual clips from a prepared root (CREMA-D, Kinetics-Sounds).

A clip is ``<audio_dir>/<clip>.npy`` (a cached spectrogram made by ``mmbench prepare``, so
training never recomputes an STFT) plus ``<frames_dir>/<clip>/*.jpg``. A sample is
``{"audio": (1, F, T) float32, "visual": (k, 3, H, W) float32, "label": int64 tensor}``.
Clips whose audio is missing or which have fewer than ``min_frames`` frames are skipped
when the split is indexed, with one warning per split giving the count and a few names.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mmbench.data.frames import FRAME_RULES, frame_transform, list_frames, load_clip_frames
from mmbench.data.tensor_dataset import DatasetSplits
from mmbench.data.val_split import carve_validation

log = logging.getLogger(__name__)
NAMES_IN_LOG = 5


@dataclass(frozen=True)
class ClipRecord:
    """One usable clip: its name, class index, cached audio file and sorted frame files."""

    name: str
    label: int
    audio: Path
    frames: tuple[Path, ...]


def index_clips(
    entries: Sequence[tuple[str, int]],
    audio_dir: Path,
    frames_dir: Path,
    min_frames: int,
    context: str,
) -> list[ClipRecord]:
    """Records for the ``(clip, label)`` entries whose audio and frames are present."""
    records, no_audio, few_frames = [], [], []
    for name, label in entries:
        audio = audio_dir / f"{name}.npy"
        frames = list_frames(frames_dir / name)
        if not audio.is_file():
            no_audio.append(name)
        elif len(frames) < max(min_frames, 1):
            few_frames.append(name)
        else:
            records.append(ClipRecord(name, label, audio, tuple(frames)))
    for reason, names in (
        (f"no cached audio in {audio_dir}", no_audio),
        (
            f"fewer than {max(min_frames, 1)} frames, or no folder, in {frames_dir}/<clip>",
            few_frames,
        ),
    ):
        if names:
            log.warning(
                "%s: skipped %d of %d clips (%s), e.g. %s",
                context,
                len(names),
                len(entries),
                reason,
                ", ".join(names[:NAMES_IN_LOG]),
            )
    return records


class AudioVisualClips(Dataset):
    """Samples of indexed clips; ``train`` selects random frames and train augmentations."""

    def __init__(
        self,
        records: Sequence[ClipRecord],
        num_frames: int,
        image_size: int,
        train: bool,
        frame_rule: str = "segments",
    ) -> None:
        self.records = list(records)
        self.num_frames = num_frames
        self.train = train
        self.frame_rule = frame_rule
        self.transform = frame_transform(image_size, train)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        record = self.records[index]
        audio = torch.from_numpy(np.load(record.audio).astype(np.float32, copy=False))
        visual = load_clip_frames(
            record.frames, self.num_frames, self.train, self.transform, self.frame_rule
        )
        return {
            "audio": audio.unsqueeze(0),
            "visual": visual,
            "label": torch.tensor(record.label, dtype=torch.long),
        }


def build_clip_splits(
    train_entries: Sequence[tuple[str, int]],
    test_entries: Sequence[tuple[str, int]],
    class_names: list[str],
    audio_dir: Path,
    frames_dir: Path,
    num_frames: int,
    image_size: int,
    min_frames: int,
    val_per_class: int,
    seed: int,
    dataset: str,
    frame_rule: str = "segments",
) -> DatasetSplits:
    """Train / seeded stratified val (test-time transforms) / test splits of clips."""
    if frame_rule not in FRAME_RULES:
        raise ValueError(
            f"{dataset}: dataset.build.frame_rule={frame_rule!r}, expected one of {FRAME_RULES}"
        )
    train_records = index_clips(
        train_entries, audio_dir, frames_dir, min_frames, f"{dataset} train"
    )
    test_records = index_clips(test_entries, audio_dir, frames_dir, min_frames, f"{dataset} test")
    for split, records, entries in (
        ("train", train_records, train_entries),
        ("test", test_records, test_entries),
    ):
        if not records:
            raise ValueError(
                f"{dataset}: none of the {len(entries)} {split} clips has both cached audio in "
                f"{audio_dir} and frames in {frames_dir}; re-run mmbench prepare {dataset}"
            )
    train_pos, val_pos = carve_validation([r.label for r in train_records], val_per_class, seed)

    def clips(records: Sequence[ClipRecord], train: bool) -> AudioVisualClips:
        return AudioVisualClips(records, num_frames, image_size, train, frame_rule)

    train = clips([train_records[i] for i in train_pos], True)
    val = clips([train_records[i] for i in val_pos], False) if val_pos else None
    test = clips(test_records, False)
    skipped = {
        "train": len(train_entries) - len(train_records),
        "test": len(test_entries) - len(test_records),
    }
    return DatasetSplits(train, val, test, class_names, skipped)
