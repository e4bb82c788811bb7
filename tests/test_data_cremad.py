"""CREMA-D: a tiny dataset in the real raw layout -> prepare -> loader via Hydra."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from mmbench import results
from mmbench.data import cremad, prepare
from mmbench.data.frames import IMAGENET_MEAN, IMAGENET_STD, segment_bounds
from mmbench.data.prepared_root import PreparedDataMissingError
from mmbench.data.raw_fixtures import frame_level, write_frames, write_raw_cremad

TRAIN_PER_CLASS, TEST_PER_CLASS, FRAMES = 2, 1, 6


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[str]]]:
    """PREPARED dir and the clip lists; one test clip has an empty raw frame folder."""
    raw = tmp_path_factory.mktemp("raw_cremad")
    out = tmp_path_factory.mktemp("prepared")
    clips = write_raw_cremad(raw, TRAIN_PER_CLASS, TEST_PER_CLASS, frames_per_clip=FRAMES)
    broken = clips["test"][-1]
    shutil.rmtree(raw / "frames" / broken)
    (raw / "frames" / broken).mkdir()
    code = prepare.main(["cremad", "--raw", str(raw), "--out", str(out), "--workers", "1"])
    assert code == 1  # the empty frame folder failed
    return out, clips


def frame_index(frame: torch.Tensor) -> int:
    """Which fixture frame a normalised (3, H, W) tensor shows (from its grey level)."""
    level = (frame[0].mean() * IMAGENET_STD[0] + IMAGENET_MEAN[0]).item() * 255
    return round((level - 10) / 20)


def build(compose_cfg, out: Path, *extra: str):
    cfg = compose_cfg(["dataset=cremad", f"paths.data_dir={out}", "dataset.image_size=32", *extra])
    return cfg, instantiate(cfg.dataset.build)


def test_class_order_is_sorted_mmpareto() -> None:
    assert cremad.CLASS_NAMES == sorted(cremad.CLASS_NAMES)
    assert cremad.CLASS_NAMES.index("ANG") == 0 and cremad.CLASS_NAMES.index("SAD") == 5


def test_bom_csv_parses(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_bytes("\ufeff1088_IOM_NEU_XX,NEU\r\n1001_DFA_ANG_XX,ANG\n\n".encode())
    assert cremad.read_split_csv(path) == [("1088_IOM_NEU_XX", 4), ("1001_DFA_ANG_XX", 0)]
    path.write_text("1001_DFA_ANG_XX,ANGRY\n")
    with pytest.raises(ValueError, match=r"train.csv:1: .*ANGRY"):
        cremad.read_split_csv(path)


def test_counts_labels_shapes(compose_cfg, prepared, caplog) -> None:
    out, clips = prepared
    with caplog.at_level(logging.WARNING):
        cfg, splits = build(compose_cfg, out)
    broken = clips["test"][-1]
    assert broken in caplog.text and "skipped 1 of 6" in caplog.text
    assert len(splits.train) == 6 * TRAIN_PER_CLASS and splits.val is None
    assert len(splits.test) == 6 * TEST_PER_CLASS - 1
    assert splits.skipped == {"train": 0, "test": 1}
    assert splits.class_names == cremad.CLASS_NAMES
    for record in splits.train.records:
        assert cremad.CLASS_NAMES[record.label] == record.name.split("_")[2]
    sample = splits.train[0]
    declared = {m.name: list(m.shape) for m in cfg.dataset.modalities}
    assert list(sample["audio"].shape) == declared["audio"] == [1, 257, 188]
    assert list(sample["visual"].shape) == declared["visual"] == [2, 3, 32, 32]
    assert sample["audio"].dtype == sample["visual"].dtype == torch.float32
    assert sample["label"].dtype == torch.int64 and sample["label"].dim() == 0


def test_fbank_recipe(compose_cfg, prepared) -> None:
    cfg, splits = build(compose_cfg, prepared[0], "dataset.audio_recipe=fbank")
    assert list(cfg.dataset.modalities[0].shape) == [1, 1024, 128]
    assert splits.test[0]["audio"].shape == (1, 1024, 128)


def test_frame_selection_train_random_test_middle(compose_cfg, prepared) -> None:
    _, splits = build(compose_cfg, prepared[0])
    bounds = segment_bounds(FRAMES, 2)
    assert bounds == [(0, 3), (3, 6)]
    test_frames = splits.test[0]["visual"]
    assert [frame_index(f) for f in test_frames] == [1, 4]
    assert frame_level(1) == 30
    draws = []
    for seed in range(12):
        torch.manual_seed(seed)
        draws.append([frame_index(f) for f in splits.train[0]["visual"]])
    assert all(0 <= a < 3 <= b < 6 for a, b in draws)
    assert len({tuple(d) for d in draws}) > 1
    torch.manual_seed(3)
    again = splits.train[0]["visual"]
    torch.manual_seed(3)
    assert torch.equal(again, splits.train[0]["visual"])


def test_val_carved_stratified_deterministic(compose_cfg, prepared) -> None:
    _, splits = build(compose_cfg, prepared[0], "dataset.build.val_per_class=1")
    assert len(splits.val) == 6 and len(splits.train) == 6 * (TRAIN_PER_CLASS - 1)
    assert sorted(r.label for r in splits.val.records) == list(range(6))
    assert not {r.name for r in splits.val.records} & {r.name for r in splits.train.records}
    torch.manual_seed(0)
    first = splits.val[0]["visual"]
    torch.manual_seed(1)
    assert torch.equal(first, splits.val[0]["visual"])
    _, again = build(compose_cfg, prepared[0], "dataset.build.val_per_class=1")
    assert [r.name for r in again.val.records] == [r.name for r in splits.val.records]


def test_few_frames_repeat(tmp_path: Path) -> None:
    write_frames(tmp_path / "one", 1)
    assert segment_bounds(1, 2) == [(0, 1), (0, 1)]


def test_missing_root_message(compose_cfg, tmp_path: Path) -> None:
    with pytest.raises(InstantiationException) as error:
        build(compose_cfg, tmp_path / "nowhere")
    message = str(error.value)
    assert str(tmp_path / "nowhere" / "cremad") in message
    assert "mmbench prepare cremad --raw RAW --out PREPARED" in message
    (tmp_path / "partial" / "splits").mkdir(parents=True)
    with pytest.raises(PreparedDataMissingError, match=r"train split not found at .*train.csv"):
        cremad.build(str(tmp_path / "partial"))


def test_fit_one_epoch_on_tiny_cremad(compose_cfg, prepared, tmp_path: Path) -> None:
    """The whole training path on real-layout data: Hydra -> loader -> ResNet-18 -> metrics."""
    from mmbench.train import fit

    # dataset.build.root is given directly: train.config_hash resolves a copy of the
    # config without `paths`, so ${paths.data_dir} cannot be resolved inside fit.
    cfg, _ = build(
        compose_cfg,
        prepared[0],
        f"dataset.build.root={prepared[0] / 'cremad'}",
        "backbone=resnet18",
        "trainer.epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.batch_size=4",
        "trainer.eval_batch_size=8",
        "trainer.device=cpu",
        "trainer.num_threads=1",
    )
    threads = torch.get_num_threads()
    try:
        summary = fit(cfg, tmp_path / "run")
    finally:
        torch.set_num_threads(threads)
    assert summary["status"] == "completed" and summary["timing"]["steps"] == 2
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["dataset"] == "cremad"
    # the skipped test clip is recorded, not silent: metrics.json, runs.csv, leaderboard.md
    assert written["data"] == {
        "samples": {"train": 6 * TRAIN_PER_CLASS, "val": 0, "test": 6 * TEST_PER_CLASS - 1},
        "skipped": {"train": 0, "test": 1},
    }
    frame = results.load_runs([tmp_path / "run"])
    assert frame.loc[0, "skipped_test"] == 1 and frame.loc[0, "n_test"] == 6 * TEST_PER_CLASS - 1
    section = results.skipped_samples_markdown(frame)
    assert section and f"`{tmp_path / 'run'}`: 1 test" in section[2]
