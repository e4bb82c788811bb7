"""Frame selection and transforms for multi-frame visual inputs (CREMA-D, Kinetics-Sounds).

A clip's frames are the *sorted* list of image files in its folder (the official loaders'
name patterns disagree with the extraction scripts, so we never build names). ``k`` frames
are picked by one of two rules (``frame_rule``), indices 0-based into that list:

* ``segments`` (CREMA-D; spec/datasets.md): the list is cut into ``k`` equal segments
  ``[floor(i n / k), floor((i + 1) n / k))``; train picks a uniformly random frame in each,
  test/val the middle one (OGM-GE drew a random index and then ignored it; we use it).
* ``gewu_ks`` (Kinetics-Sounds): the rule of GeWu-Lab/InfoReg_CVPR2025 ``KSDataset.py`` and
  GeWu-Lab/BalanceBenchmark ``balancemm/datasets/KS_dataset.py`` (identical there), with
  ``seg = n // k``: when ``n <= 6`` every pick is frame 0; otherwise train picks uniformly in
  ``[i seg, i seg + seg - 1]`` capped at 8 (their ``frame_0000<t>.jpg`` names only reach
  ``t = 9``, 1-based), and test picks ``i seg + max(seg // 2, 1) - 1`` (their 1-based
  ``i * seg + max(int(seg / 2), 1)``).

Train draws come from torch's global RNG (which the engine seeds per epoch), not Python's
``random`` as in those loaders. Transforms: train RandomResizedCrop(size) +
RandomHorizontalFlip; test Resize((size, size)); both then ImageNet mean/std normalisation.
The output is ``(k, 3, size, size)`` float32.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image
from torchvision import transforms

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


def list_frames(folder: Path) -> list[Path]:
    """The clip's frame files in sorted name order (empty when the folder is missing)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)


def segment_bounds(num_frames: int, num_segments: int) -> list[tuple[int, int]]:
    """``[start, end)`` of each of ``num_segments`` equal segments of ``num_frames`` frames.

    Segment ``i`` spans ``floor(i n / k)`` to ``floor((i + 1) n / k)``; when ``n < k`` a
    segment would be empty and is widened to one frame (frames then repeat).
    """
    if num_frames < 1 or num_segments < 1:
        raise ValueError(
            f"need at least one frame and one segment, got {num_frames}, {num_segments}"
        )
    bounds = []
    for i in range(num_segments):
        start = min(i * num_frames // num_segments, num_frames - 1)
        end = max((i + 1) * num_frames // num_segments, start + 1)
        bounds.append((start, end))
    return bounds


FRAME_RULES = ("segments", "gewu_ks")
GEWU_KS_MIN_SPREAD = 6  # the KS loaders pick frame 0 three times unless a clip has > 6 frames
GEWU_KS_TRAIN_CAP = 8  # 0-based; their names frame_0000<t>.jpg stop at t = 9


def segment_indices(num_frames: int, num_segments: int, train: bool) -> list[int]:
    """``segments`` rule: one index per equal segment, random in train, middle otherwise."""
    indices = []
    for start, end in segment_bounds(num_frames, num_segments):
        if train:
            indices.append(int(torch.randint(start, end, ()).item()))
        else:
            indices.append(start + (end - start) // 2)
    return indices


def gewu_ks_indices(num_frames: int, num_segments: int, train: bool) -> list[int]:
    """``gewu_ks`` rule (InfoReg ``KSDataset.py`` / BalanceBenchmark ``KS_dataset.py``).

    ``seg = n // k``; ``n <= 6``: all 0; train: ``min(U{i seg, ..., i seg + seg - 1}, 8)``;
    test: ``i seg + max(seg // 2, 1) - 1``.
    """
    if num_frames < 1 or num_segments < 1:
        raise ValueError(
            f"need at least one frame and one segment, got {num_frames}, {num_segments}"
        )
    if num_frames <= GEWU_KS_MIN_SPREAD:
        return [0] * num_segments
    seg = num_frames // num_segments
    if seg < 1:
        raise ValueError(
            f"frame_rule=gewu_ks needs at least num_frames={num_segments} frames per clip, "
            f"got {num_frames}; lower dataset.num_frames or use frame_rule=segments"
        )
    indices = []
    for i in range(num_segments):
        if train:
            pick = int(torch.randint(i * seg, i * seg + seg, ()).item())
            indices.append(min(pick, GEWU_KS_TRAIN_CAP))
        else:
            indices.append(i * seg + max(seg // 2, 1) - 1)
    return indices


def select_frame_indices(
    num_frames: int, num_segments: int, train: bool, rule: str = "segments"
) -> list[int]:
    """One 0-based frame index per segment under ``rule`` (see the module docstring)."""
    if rule == "segments":
        return segment_indices(num_frames, num_segments, train)
    if rule == "gewu_ks":
        return gewu_ks_indices(num_frames, num_segments, train)
    raise ValueError(f"frame_rule={rule!r}, expected one of {FRAME_RULES}")


def imagenet_normalize() -> transforms.Normalize:
    return transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)


def frame_transform(image_size: int, train: bool) -> Callable[[Image.Image], torch.Tensor]:
    """Train: RandomResizedCrop + HorizontalFlip; test: Resize; both ImageNet-normalised."""
    if train:
        geometry = [
            transforms.RandomResizedCrop(image_size),
            transforms.RandomHorizontalFlip(),
        ]
    else:
        geometry = [transforms.Resize((image_size, image_size))]
    return transforms.Compose([*geometry, transforms.ToTensor(), imagenet_normalize()])


def load_rgb(path: Path) -> Image.Image:
    """Read an image file as RGB (naming the file when it cannot be decoded)."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except OSError as error:
        raise OSError(f"cannot read image {path}: {error}") from error


def load_clip_frames(
    frames: Sequence[Path],
    num_segments: int,
    train: bool,
    transform: Callable[[Image.Image], torch.Tensor],
    rule: str = "segments",
) -> torch.Tensor:
    """``(num_segments, 3, H, W)``: the selected frames, each transformed independently."""
    indices = select_frame_indices(len(frames), num_segments, train, rule)
    return torch.stack([transform(load_rgb(frames[i])) for i in indices])
