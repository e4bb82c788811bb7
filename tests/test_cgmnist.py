"""CG-MNIST construction: the embedded mini set and the full set from MNIST files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from mmbench.data.cgmnist import PALETTE, build_full, build_mini, read_idx


def stroke_colours(split) -> np.ndarray:
    """Each image's colour vector, read at its brightest stroke pixel (colour / intensity)."""
    intensity = (split.tensors["gray"] * 0.3081 + 0.1307).flatten(1)
    pixel = intensity.argmax(1)
    rows = torch.arange(len(pixel))
    rgb = split.tensors["color"].flatten(2)[rows, :, pixel] / intensity[rows, pixel, None]
    return rgb.numpy()


def colour_class(split) -> np.ndarray:
    rgb = stroke_colours(split)
    return np.argmin(((rgb[:, None] - PALETTE[None]) ** 2).sum(-1), axis=1)


@pytest.fixture(scope="module")
def mini():
    return build_mini(seed=0)


def test_mini_sizes_and_stratification(mini) -> None:
    assert (len(mini.train), len(mini.val), len(mini.test)) == (3500, 500, 1000)
    for split, per_class in ((mini.val, 50), (mini.test, 100)):
        assert np.bincount(split.labels.numpy()).tolist() == [per_class] * 10
    sample = mini.train[0]
    assert sample["gray"].shape == (1, 28, 28) and sample["color"].shape == (3, 28, 28)
    assert sample["gray"].dtype == torch.float32 and sample["label"].dtype == torch.int64


def test_mini_colour_tied_in_train_val_independent_in_test() -> None:
    splits = build_mini(seed=0, jitter_var=1e-6)  # no jitter: the colour class is exact
    for split in (splits.train, splits.val):
        assert (colour_class(split) == split.labels.numpy()).mean() > 0.99
    agree = (colour_class(splits.test) == splits.test.labels.numpy()).mean()
    assert 0.05 < agree < 0.15  # independent of the label: about 1 in 10


def test_mini_colour_jitter_has_the_configured_variance(mini) -> None:
    rgb = stroke_colours(mini.train)
    centre = PALETTE[mini.train.labels.numpy()]
    inside = (centre > 0.2) & (centre < 0.8)  # channels where clipping to [0, 1] is rare
    assert np.var((rgb - centre)[inside]) == pytest.approx(0.02, rel=0.15)


def test_mini_is_deterministic_and_seeded(mini) -> None:
    again = build_mini(seed=0)
    assert torch.equal(again.train.tensors["color"], mini.train.tensors["color"])
    assert torch.equal(again.test.labels, mini.test.labels)
    other = build_mini(seed=1)
    assert not torch.equal(other.test.tensors["gray"], mini.test.tensors["gray"])


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


def fake_mnist(root: Path, n_train: int = 200, n_test: int = 50, compress: bool = True):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    for name, array in arrays.items():
        write_idx(raw / name, array, compress)
    return arrays


@pytest.mark.parametrize("compress", [True, False])
def test_full_from_torchvision_layout(tmp_path: Path, compress: bool) -> None:
    arrays = fake_mnist(tmp_path, compress=compress)
    splits = build_full(str(tmp_path), val_per_class=3)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (170, 30, 50)
    expected = (arrays["t10k-images-idx3-ubyte"][0] / 255.0 - 0.1307) / 0.3081
    assert np.allclose(splits.test.tensors["gray"][0, 0].numpy(), expected, atol=1e-6)


def test_full_missing_files_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "MNIST" / "raw")):
        build_full(str(tmp_path))


def test_truncated_idx_is_reported(tmp_path: Path) -> None:
    fake_mnist(tmp_path, compress=False)
    path = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(path)


def test_published_colored_npy_is_paired_by_index(tmp_path: Path) -> None:
    arrays = fake_mnist(tmp_path)
    rng = np.random.default_rng(1)
    colored = {
        "train_image": rng.integers(0, 256, (200, 28, 28, 3)).astype(np.uint8),
        "train_label": arrays["train-labels-idx1-ubyte"],
        "test_image": rng.integers(0, 256, (50, 28, 28, 3)).astype(np.uint8),
        "test_label": arrays["t10k-labels-idx1-ubyte"],
    }
    npy = tmp_path / "mnist_10color_jitter_var_0.020.npy"
    np.save(npy, colored, allow_pickle=True)
    splits = build_full(str(tmp_path), val_per_class=3, colored_npy=str(npy))
    assert splits.test.tensors["color"].shape == (50, 3, 28, 28)
    expected = colored["test_image"][7].transpose(2, 0, 1) / 255.0
    assert np.allclose(splits.test.tensors["color"][7].numpy(), expected, atol=1e-6)
    colored["test_label"] = (colored["test_label"] + 1) % 10
    np.save(npy, colored, allow_pickle=True)
    with pytest.raises(ValueError, match="do not match"):
        build_full(str(tmp_path), val_per_class=3, colored_npy=str(npy))
