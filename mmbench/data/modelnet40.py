"""ModelNet40 as two "modalities": the front and rear renderings of each object.

Layout (raw MVCNN 12-view renderings, and the prepared copy made by ``mmbench prepare
modelnet40``, which keeps only the two views used)::

    <root>/<class>/<train|test>/<obj>.obj.<view>.png      views 0 (front) and 6 (rear)

Classes: the 40 ModelNet40 class folder names in sorted order (index = position).
Transforms (MMPareto / PMR ModelNet40 loaders): Resize to ``image_size``, then train adds a
random horizontal flip (drawn per view); both are ImageNet-normalised. Objects missing one
of the two views are skipped and counted in the log. ``val`` is carved from train.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms

from mmbench.data.frames import imagenet_normalize, load_rgb
from mmbench.data.prepared_root import require_path
from mmbench.data.tensor_dataset import DatasetSplits
from mmbench.data.val_split import carve_validation

log = logging.getLogger(__name__)
DATASET = "modelnet40"
CLASS_NAMES = [
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car", "chair",
    "cone", "cup", "curtain", "desk", "door", "dresser", "flower_pot", "glass_box", "guitar",
    "keyboard", "lamp", "laptop", "mantel", "monitor", "night_stand", "person", "piano",
    "plant", "radio", "range_hood", "sink", "sofa", "stairs", "stool", "table", "tent",
    "toilet", "tv_stand", "vase", "wardrobe", "xbox",
]  # fmt: skip
SPLITS = ("train", "test")
VIEW_NAMES = ("front", "rear")


def view_file(folder: Path, obj: str, view: int) -> Path:
    return folder / f"{obj}.obj.{view}.png"


def list_objects(
    root: Path, split: str, views: Sequence[int]
) -> list[tuple[tuple[Path, ...], int]]:
    """``((front, rear), label)`` per object of ``split`` having every view file."""
    items, incomplete = [], []
    for label, name in enumerate(CLASS_NAMES):
        folder = root / name / split
        if not folder.is_dir():
            continue
        objects = sorted({p.name.split(".obj.")[0] for p in folder.glob("*.obj.*.png")})
        for obj in objects:
            paths = tuple(view_file(folder, obj, v) for v in views)
            if all(p.is_file() for p in paths):
                items.append((paths, label))
            else:
                incomplete.append(f"{name}/{split}/{obj}")
    if incomplete:
        log.warning(
            "%s %s: skipped %d objects missing view %s, e.g. %s",
            DATASET,
            split,
            len(incomplete),
            " or ".join(str(v) for v in views),
            ", ".join(incomplete[:5]),
        )
    return items


def view_transform(image_size: int, train: bool) -> Callable[[Image.Image], torch.Tensor]:
    """Resize (+ random horizontal flip in train), then ImageNet normalisation."""
    steps: list[Callable] = [transforms.Resize((image_size, image_size))]
    if train:
        steps.append(transforms.RandomHorizontalFlip())
    return transforms.Compose([*steps, transforms.ToTensor(), imagenet_normalize()])


class ModelNetViews(Dataset):
    """Samples ``{"front": (3, H, W), "rear": (3, H, W), "label": int64 tensor}``."""

    def __init__(
        self, items: Sequence[tuple[tuple[Path, ...], int]], image_size: int, train: bool
    ) -> None:
        self.items = list(items)
        self.transform = view_transform(image_size, train)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        paths, label = self.items[index]
        sample = {
            name: self.transform(load_rgb(p)) for name, p in zip(VIEW_NAMES, paths, strict=True)
        }
        sample["label"] = torch.tensor(label, dtype=torch.long)
        return sample


def build(
    root: str,
    views: Sequence[int] = (0, 6),
    image_size: int = 224,
    val_per_class: int = 0,
    seed: int = 0,
) -> DatasetSplits:
    """ModelNet40 front/rear splits from ``root`` (raw or prepared: same layout)."""
    if len(views) != len(VIEW_NAMES):
        raise ValueError(f"modelnet40: views must list {len(VIEW_NAMES)} view indices, got {views}")
    base = require_path(Path(root), DATASET, "the ModelNet40 root")
    found = {}
    for split in SPLITS:
        found[split] = list_objects(base, split, list(views))
        if not found[split]:
            require_path(
                base / "<class>" / split / f"<obj>.obj.{views[0]}.png",
                DATASET,
                f"any {split} object (expected {base}/<class>/{split}/<obj>.obj.<view>.png)",
            )
    train_pos, val_pos = carve_validation([y for _, y in found["train"]], val_per_class, seed)
    train = ModelNetViews([found["train"][i] for i in train_pos], image_size, True)
    val = (
        ModelNetViews([found["train"][i] for i in val_pos], image_size, False) if val_pos else None
    )
    return DatasetSplits(train, val, ModelNetViews(found["test"], image_size, False), CLASS_NAMES)
