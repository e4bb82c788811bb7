"""ModelNet40: views 0 and 6 of the 12-view renderings as front/rear, 40 sorted classes.

Fixtures use the MVCNN release's names (``<class>_<NNNN>.obj.shaded_v001.png`` ... v012 in
``<class>/<split>/``); the Greedy loader's views 0 and 6 are shaded_v001 and shaded_v007.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from mmbench.data import modelnet40, prepare
from mmbench.data.frames import IMAGENET_MEAN, IMAGENET_STD
from mmbench.data.prepared_root import PreparedDataMissingError
from mmbench.data.raw_fixtures import modelnet40_view_name, view_level, write_raw_modelnet40

CLASSES = ["airplane", "chair", "xbox"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(raw, PREPARED, name of the object whose view 6 is missing)."""
    raw = tmp_path_factory.mktemp("raw_mn40")
    out = tmp_path_factory.mktemp("prepared")
    objects = write_raw_modelnet40(raw, CLASSES, train_per_class=2, test_per_class=1)
    incomplete = objects[0]
    (raw / incomplete).with_name(modelnet40_view_name(Path(incomplete).name, 6)).unlink()
    code = prepare.main(["modelnet40", "--raw", str(raw), "--out", str(out), "--workers", "1"])
    assert code == 1
    return raw, out, incomplete


def grey(image: torch.Tensor) -> int:
    return round((image[0].mean() * IMAGENET_STD[0] + IMAGENET_MEAN[0]).item() * 255)


def write_release_object(folder: Path, obj: str, name_of_view, size: int = 8) -> None:
    """12 solid-grey PNGs of one object, view ``v`` named ``name_of_view(obj, v)``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for view in range(12):
        level = view_level(view)
        Image.new("RGB", (size, size), (level, level, level)).save(folder / name_of_view(obj, view))


def test_classes() -> None:
    assert len(modelnet40.CLASS_NAMES) == 40
    assert modelnet40.CLASS_NAMES == sorted(modelnet40.CLASS_NAMES)


def test_prepare_keeps_two_views(prepared, capsys) -> None:
    raw, out, incomplete = prepared
    kept = sorted(p.name.split(".obj.")[1] for p in (out / "modelnet40").rglob("*.png"))
    assert set(kept) == {"0.png", "6.png"} and len(kept) == 2 * 8
    code = prepare.main(["modelnet40", "--raw", str(raw), "--out", str(out), "--workers", "1"])
    report = capsys.readouterr().out
    assert code == 1 and "8 skipped (already done), 1 failed" in report
    missing = modelnet40_view_name(Path(incomplete).name, 6)
    assert f"failed {incomplete}: FileNotFoundError: missing {missing}" in report


def test_loader_shapes_labels_views(compose_cfg, prepared, caplog) -> None:
    raw, out, incomplete = prepared
    cfg = compose_cfg(["dataset=modelnet40", f"paths.data_dir={out}", "dataset.image_size=32"])
    splits = instantiate(cfg.dataset.build)
    assert len(splits.train) == 5 and len(splits.test) == 3 and splits.val is None
    assert [y for _, y in splits.test.items] == [0, 8, 39]
    sample = splits.test[2]
    assert sample["front"].shape == sample["rear"].shape == (3, 32, 32)
    assert sample["front"].dtype == torch.float32 and int(sample["label"]) == 39
    assert grey(sample["front"]) == view_level(0) and grey(sample["rear"]) == view_level(6)
    with caplog.at_level(logging.WARNING):
        raw_splits = modelnet40.build(str(raw), image_size=32)
    assert len(raw_splits.train) == 5 and incomplete in caplog.text
    assert splits.skipped == {"train": 0, "test": 0}  # prepare left the incomplete one out
    assert raw_splits.skipped == {"train": 1, "test": 0}  # the raw loader counts it


def test_train_flip_is_seeded(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "airplane" / "train"
    folder.mkdir(parents=True)
    for view in (0, 6):
        image = Image.new("RGB", (8, 8), (0, 0, 0))
        image.paste((255, 255, 255), (0, 0, 4, 8))
        image.save(folder / f"a.obj.{view}.png")
    (tmp_path / "airplane" / "test").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "airplane" / "test" / "b.obj.0.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "airplane" / "test" / "b.obj.6.png")
    splits = modelnet40.build(str(tmp_path), image_size=8)
    left_bright = []
    for seed in range(8):
        torch.manual_seed(seed)
        front = splits.train[0]["front"][0]
        left_bright.append(bool(front[:, :4].mean() > front[:, 4:].mean()))
    assert len(set(left_bright)) == 2
    torch.manual_seed(5)
    first = splits.train[0]["front"]
    torch.manual_seed(5)
    assert torch.equal(first, splits.train[0]["front"])
    assert torch.equal(splits.test[0]["front"], splits.test[0]["front"])


def test_missing_root_message(tmp_path: Path) -> None:
    with pytest.raises(PreparedDataMissingError) as error:
        modelnet40.build(str(tmp_path / "modelnet40"))
    assert str(tmp_path / "modelnet40") in str(error.value)
    assert "mmbench prepare modelnet40 --raw RAW --out PREPARED" in str(error.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PreparedDataMissingError, match="any train object"):
        modelnet40.build(str(tmp_path / "empty"))


def test_fixture_uses_release_names(prepared) -> None:
    raw, _, _ = prepared
    names = sorted(p.name for p in (raw / "chair" / "train").iterdir())
    assert names[:12] == [f"chair_0001.obj.shaded_v{v:03d}.png" for v in range(1, 13)]
    assert sorted(p.name for p in (raw / "chair" / "test").iterdir())[0] == (
        "chair_0003.obj.shaded_v001.png"
    )


def test_release_names_prepare_and_load_v001_v007(tmp_path: Path) -> None:
    """The real release loads without prepare and through it: front = v001, rear = v007."""
    raw = tmp_path / "raw"
    for split, obj in (("train", "bed_0001"), ("train", "bed_0002"), ("test", "bed_0516")):
        write_release_object(raw / "bed" / split, obj, modelnet40_view_name)
    direct = modelnet40.build(str(raw), image_size=8)
    assert len(direct.train) == 2 and len(direct.test) == 1
    assert [p.name for p in direct.test.items[0][0]] == [
        "bed_0516.obj.shaded_v001.png",
        "bed_0516.obj.shaded_v007.png",
    ]
    out = tmp_path / "out"
    assert prepare.main(["modelnet40", "--raw", str(raw), "--out", str(out), "--workers", "1"]) == 0
    prepared_files = sorted(p.name for p in (out / "modelnet40" / "bed" / "test").iterdir())
    assert prepared_files == ["bed_0516.obj.0.png", "bed_0516.obj.6.png"]
    for splits in (direct, modelnet40.build(str(out / "modelnet40"), image_size=8)):
        sample = splits.test[0]
        assert grey(sample["front"]) == view_level(0) and grey(sample["rear"]) == view_level(6)
        assert int(sample["label"]) == modelnet40.CLASS_NAMES.index("bed")


def test_twelve_sorted_files_of_any_name(tmp_path: Path) -> None:
    """Greedy's rule: view v is the v-th of the object's 12 files in sorted order."""
    for split in ("train", "test"):
        write_release_object(
            tmp_path / "sofa" / split, f"sofa_{split}", lambda obj, v: f"{obj}.obj.r{v:02d}.png"
        )
    splits = modelnet40.build(str(tmp_path), image_size=8, views=(3, 9))
    sample = splits.test[0]
    assert grey(sample["front"]) == view_level(3) and grey(sample["rear"]) == view_level(9)


def test_bad_views_knob_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"dataset.build.views .* 0..11 .*got \[0, 12\]"):
        modelnet40.build(str(tmp_path), views=(0, 12))
