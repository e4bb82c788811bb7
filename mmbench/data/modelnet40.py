"""ModelNet40 as two "modalities": the front and rear renderings of each object.

Raw layout: the MVCNN 12-view shaded release (``modelnet40_images_new_12x``, read by
jongchyisu/mvcnn_pytorch ``tools/ImgDataset.py``)::

    <root>/<class>/<train|test>/<class>_<NNNN>.obj.shaded_v001.png ... shaded_v012.png

The object is the file name before ``.obj.`` (nyukat/greedy_multimodal_learning
``src/dataset.py``); the Greedy loader stacks an object's 12 files in sorted order and its
configs take ``specific_views=[0, 6]``, i.e. ``shaded_v001`` (front) and ``shaded_v007``
(rear). Our prepared copy (``mmbench prepare modelnet40``) keeps only those two views as
``<obj>.obj.0.png`` and ``<obj>.obj.6.png``. View ``v`` of an object is found, in order, as
``<obj>.obj.<v>.png`` (our name), ``<obj>.obj.shaded_v<v+1:03d>.png`` (the release's name),
or the ``v``-th of the object's files in sorted order when it has exactly 12 (Greedy's rule,
for a 12-view release named otherwise).

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


REAL_VIEW_COUNT = 12


def view_file(folder: Path, obj: str, view: int) -> Path:
    """Our name of view ``view`` (0-based): ``<obj>.obj.<view>.png``."""
    return folder / f"{obj}.obj.{view}.png"


def shaded_view_file(folder: Path, obj: str, view: int) -> Path:
    """The MVCNN release's name of view ``view`` (0-based): ``<obj>.obj.shaded_v<view+1>.png``."""
    return folder / f"{obj}.obj.shaded_v{view + 1:03d}.png"


def group_renderings(folder: Path) -> dict[str, list[Path]]:
    """``{object: its sorted <obj>.obj.*.png files}`` of one class/split folder."""
    groups: dict[str, list[Path]] = {}
    for path in sorted(folder.glob("*.obj.*.png")):
        groups.setdefault(path.name.split(".obj.")[0], []).append(path)
    return groups


def find_view(folder: Path, obj: str, files: Sequence[Path], view: int) -> Path | None:
    """View ``view`` of ``obj``: our name, else the release's, else the view-th of 12 sorted."""
    present = set(files)
    for candidate in (view_file(folder, obj, view), shaded_view_file(folder, obj, view)):
        if candidate in present:
            return candidate
    if len(files) == REAL_VIEW_COUNT and 0 <= view < REAL_VIEW_COUNT:
        return sorted(files)[view]
    return None


def expected_view(folder: Path, obj: str, files: Sequence[Path], view: int) -> Path:
    """The found file of a view, else the name it should have had (for messages)."""
    found = find_view(folder, obj, files, view)
    if found is not None:
        return found
    if any(".obj.shaded_v" in p.name for p in files):
        return shaded_view_file(folder, obj, view)
    return view_file(folder, obj, view)


def list_objects(
    root: Path, split: str, views: Sequence[int]
) -> tuple[list[tuple[tuple[Path, ...], int]], int]:
    """``((front, rear), label)`` per object of ``split`` having every view file, and the
    number of objects skipped for a missing view."""
    items, incomplete = [], []
    for label, name in enumerate(CLASS_NAMES):
        folder = root / name / split
        if not folder.is_dir():
            continue
        for obj, files in group_renderings(folder).items():
            paths = [find_view(folder, obj, files, v) for v in views]
            if all(p is not None for p in paths):
                items.append((tuple(paths), label))
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
    return items, len(incomplete)


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
    if len(views) != len(VIEW_NAMES) or not all(0 <= v < REAL_VIEW_COUNT for v in views):
        raise ValueError(
            f"modelnet40: dataset.build.views must list {len(VIEW_NAMES)} view indices in "
            f"0..{REAL_VIEW_COUNT - 1} (front, rear), got {list(views)}; the default is [0, 6]"
        )
    base = require_path(Path(root), DATASET, "the ModelNet40 root")
    found, skipped = {}, {}
    for split in SPLITS:
        found[split], skipped[split] = list_objects(base, split, list(views))
        if not found[split]:
            require_path(
                base / "<class>" / split / f"<obj>.obj.shaded_v{views[0] + 1:03d}.png",
                DATASET,
                f"any {split} object (expected {base}/<class>/{split}/"
                "<obj>.obj.shaded_v001.png ... shaded_v012.png, or <obj>.obj.<view>.png)",
            )
    train_pos, val_pos = carve_validation([y for _, y in found["train"]], val_per_class, seed)
    train = ModelNetViews([found["train"][i] for i in train_pos], image_size, True)
    val = (
        ModelNetViews([found["train"][i] for i in val_pos], image_size, False) if val_pos else None
    )
    test = ModelNetViews(found["test"], image_size, False)
    return DatasetSplits(train, val, test, CLASS_NAMES, skipped)
