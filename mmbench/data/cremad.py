"""CREMA-D: audio + 2 visual frames, 6 emotions (OGM-GE split, MMPareto label order).

Prepared layout (written by ``mmbench prepare cremad``)::

    <root>/splits/{train,test}.csv       OGM-GE split lines ``<clip>,<EMO>``
    <root>/audio_stft/<clip>.npy         OGM-GE log-|STFT|, float32 (257, 188)
    <root>/audio_fbank/<clip>.npy        MMPareto Kaldi fbank, float32 (1024, 128)
    <root>/frames/<clip>/*.jpg           frames at a fixed fps (sorted names)

Labels follow the MMPareto loader: classes in sorted order, ANG=0, DIS=1, FEA=2, HAP=3,
NEU=4, SAD=5 (OGM-GE's NEU, HAP, SAD, FEA, DIS, ANG order is *not* used). The audio recipe
(``stft`` | ``fbank``) picks which cached features are read. Two frames per clip by equal
segments (see ``mmbench.data.frames``). ``val`` is carved from train (seeded, stratified).
"""

from __future__ import annotations

from pathlib import Path

from mmbench.data.av_clips import build_clip_splits
from mmbench.data.prepared_root import require_path
from mmbench.data.tensor_dataset import DatasetSplits

DATASET = "cremad"
CLASS_NAMES = ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]
AUDIO_RECIPES = ("stft", "fbank")
SPLITS = ("train", "test")


def read_split_csv(path: Path) -> list[tuple[str, int]]:
    """``(clip, class index)`` per non-empty line of an OGM-GE CSV (a UTF-8 BOM is fine)."""
    entries = []
    with path.open(encoding="utf-8-sig") as lines:
        for number, line in enumerate(lines, start=1):
            fields = [f.strip() for f in line.strip().split(",")]
            if not fields[0]:
                continue
            if len(fields) < 2 or fields[1] not in CLASS_NAMES:
                raise ValueError(
                    f"{path}:{number}: expected '<clip>,<EMO>' with EMO in {CLASS_NAMES}, "
                    f"got {line.strip()!r}"
                )
            entries.append((fields[0], CLASS_NAMES.index(fields[1])))
    return entries


def build(
    root: str,
    audio_recipe: str = "stft",
    num_frames: int = 2,
    image_size: int = 224,
    min_frames: int = 1,
    val_per_class: int = 0,
    seed: int = 0,
) -> DatasetSplits:
    """CREMA-D splits from the prepared ``root``.

    ``min_frames``: clips with fewer frames are skipped (logged); with fewer than
    ``num_frames`` but at least ``min_frames`` frames, frames repeat.
    """
    if audio_recipe not in AUDIO_RECIPES:
        raise ValueError(f"cremad: audio_recipe={audio_recipe!r}, expected one of {AUDIO_RECIPES}")
    base = require_path(Path(root), DATASET, "the prepared CREMA-D root")
    csvs = {
        s: require_path(base / "splits" / f"{s}.csv", DATASET, f"the {s} split") for s in SPLITS
    }
    audio_dir = require_path(
        base / f"audio_{audio_recipe}", DATASET, f"the cached '{audio_recipe}' audio features"
    )
    frames_dir = require_path(base / "frames", DATASET, "the frames folder")
    return build_clip_splits(
        read_split_csv(csvs["train"]),
        read_split_csv(csvs["test"]),
        CLASS_NAMES,
        audio_dir,
        frames_dir,
        num_frames,
        image_size,
        min_frames,
        val_per_class,
        seed,
        DATASET,
    )
