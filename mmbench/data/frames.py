"""Frame selection and transforms for multi-frame visual inputs (CREMA-D, Kinetics-Sounds).

Rules (MMPareto / OGM-GE visual loaders, spec/datasets.md):

* a clip's frames are the *sorted* list of image files in its folder (the official loaders'
  name patterns disagree with the extraction scripts, so we never build names);
* the list is cut into ``k`` equal segments; train picks a random frame in each segment
  (drawn from torch's global RNG, which the engine seeds per epoch), test/val the middle one
  (OGM-GE drew a random index and then ignored it; we use it);
* train: RandomResizedCrop(size) + RandomHorizontalFlip; test: Resize((size, size)); both
  then ImageNet mean/std normalisation. The output is ``(k, 3, size, size)`` float32.
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


def select_frame_indices(num_frames: int, num_segments: int, train: bool) -> list[int]:
    """One index per segment: uniformly random in train, the middle frame otherwise."""
    indices = []
    for start, end in segment_bounds(num_frames, num_segments):
        if train:
            indices.append(int(torch.randint(start, end, ()).item()))
        else:
            indices.append(start + (end - start) // 2)
    return indices


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
) -> torch.Tensor:
    """``(num_segments, 3, H, W)``: the selected frames, each transformed independently."""
    indices = select_frame_indices(len(frames), num_segments, train)
    return torch.stack([transform(load_rgb(frames[i])) for i in indices])
