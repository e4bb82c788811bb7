"""Kinetics-Sounds: both split-list formats, 31 classes, 3 frames, skipped clips logged.

Frame rules follow GeWu-Lab/InfoReg_CVPR2025 ``KSDataset.py`` and GeWu-Lab/BalanceBenchmark
``balancemm/datasets/KS_dataset.py``: keep clips with > 3 frames; test frame (1-based)
``i * seg + max(seg // 2, 1)``, train random in ``[i * seg + 1, i * seg + seg]`` capped at 9.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from mmbench.data import kinetics_sounds, prepare
from mmbench.data.frames import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    gewu_ks_indices,
    segment_bounds,
    select_frame_indices,
)
from mmbench.data.prepared_root import PreparedDataMissingError
from mmbench.data.raw_fixtures import write_frames, write_wav

CLASSES = ["blowing_nose", "playing_piano", "tickling"]
TRAIN = [(f"ytid{i:03d}x_{10 * i:06d}_{10 * i + 10:06d}", CLASSES[i % 3]) for i in range(6)]
TEST = [(f"test{i:02d}", CLASSES[i % 3]) for i in range(3)]
TOO_FEW, NO_AUDIO, FIVE_FRAMES = TRAIN[4][0], TRAIN[5][0], TEST[2][0]
FRAME_COUNTS = {TOO_FEW: 3, FIVE_FRAMES: 5}  # the others have 10 (10 s at 1 fps)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Train list in OGM-GE format, test list in '<name> <label>' format; returns (out, log)."""
    raw = tmp_path_factory.mktemp("raw_ks")
    out = tmp_path_factory.mktemp("prepared")
    lines = [f"{name},10,{label}\n" for name, label in TRAIN]
    (raw / "train.csv").write_text("".join(lines))
    (raw / "test.txt").write_text("".join(f"{n} {c.replace('_', ' ')}\n" for n, c in TEST))
    for i, (name, _) in enumerate(TRAIN + TEST):
        if name != NO_AUDIO:
            write_wav(raw / "audio" / "some_class" / f"{name}.wav", 1.0, 300 + 50 * i, i)
        write_frames(raw / "frames" / name, FRAME_COUNTS.get(name, 10))
    code = prepare.main(["kinetics_sounds", "--raw", str(raw), "--out", str(out), "--workers", "1"])
    assert code == 1
    return out, raw


def test_class_list() -> None:
    assert len(kinetics_sounds.CLASS_NAMES) == 31
    assert kinetics_sounds.CLASS_NAMES == sorted(kinetics_sounds.CLASS_NAMES)
    assert kinetics_sounds.CLASS_NAMES[16] == "playing_piano"


def test_both_split_formats(tmp_path: Path) -> None:
    parse = kinetics_sounds.parse_split_line
    assert parse("--07WQ2iBlw_000001_000011,10,playing piano") == ("--07WQ2iBlw_000001_000011", 16)
    assert parse("abc_000001_000011,10,tickling\n") == ("abc_000001_000011", 30)
    assert parse("videos/abc.mp4 playing_bagpipes") == ("abc", 8)
    assert parse("abc 5") == ("abc", 5)
    assert parse("   ") is None
    path = tmp_path / "train.txt"
    path.write_text("a 0\nb juggling\n")
    with pytest.raises(ValueError, match=r"train.txt:2: unknown class 'juggling'"):
        kinetics_sounds.read_split_list(path)


def test_counts_shapes_and_skips(compose_cfg, prepared, caplog) -> None:
    out, _ = prepared
    cfg = compose_cfg(["dataset=kinetics_sounds", f"paths.data_dir={out}", "dataset.image_size=32"])
    with caplog.at_level(logging.WARNING):
        splits = instantiate(cfg.dataset.build)
    assert "skipped 1 of 6 clips (no cached audio" in caplog.text and NO_AUDIO in caplog.text
    assert "fewer than 4 frames" in caplog.text and TOO_FEW in caplog.text
    assert len(splits.train) == 4 and len(splits.test) == 3
    assert [r.label for r in splits.test.records] == [0, 16, 30]
    sample = splits.test[1]
    assert sample["audio"].shape == (1, 1024, 128) and sample["audio"].dtype == torch.float32
    assert sample["visual"].shape == (3, 3, 32, 32) and sample["visual"].dtype == torch.float32
    assert int(sample["label"]) == 16
    assert picked_frames(sample["visual"]) == [0, 3, 6]  # 1-based 1, 4, 7 with seg = 3
    assert picked_frames(splits.test[2]["visual"]) == [0, 0, 0]  # 5 frames: <= 6 -> frame 1
    _, segments = build(compose_cfg, out, "dataset.build.frame_rule=segments")
    assert segment_bounds(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert picked_frames(segments.test[1]["visual"]) == [1, 4, 8]


def picked_frames(visual: torch.Tensor) -> list[int]:
    """Which fixture frames a (k, 3, H, W) visual tensor shows (from their grey levels)."""
    levels = visual[:, 0].mean(dim=(1, 2)) * IMAGENET_STD[0] + IMAGENET_MEAN[0]
    return [round((lv.item() * 255 - 10) / 20) for lv in levels]


def build(compose_cfg, out: Path, *extra: str):
    cfg = compose_cfg(
        ["dataset=kinetics_sounds", f"paths.data_dir={out}", "dataset.image_size=32", *extra]
    )
    return cfg, instantiate(cfg.dataset.build)


def authors_test_index(n: int, i: int) -> int:
    """KSDataset.py test pick for n > 6, converted from its 1-based frame number."""
    seg = int(n / 3)
    return i * seg + max(int(seg / 2), 1) - 1


@pytest.mark.parametrize("n", [7, 8, 10, 11, 12, 15, 30])
def test_gewu_ks_test_indices(n: int) -> None:
    assert gewu_ks_indices(n, 3, train=False) == [authors_test_index(n, i) for i in range(3)]


def test_gewu_ks_known_values_and_few_frames() -> None:
    assert gewu_ks_indices(10, 3, train=False) == [0, 3, 6]
    assert gewu_ks_indices(12, 3, train=False) == [1, 5, 9]
    for n in (1, 4, 6):
        assert gewu_ks_indices(n, 3, train=True) == gewu_ks_indices(n, 3, train=False) == [0] * 3


@pytest.mark.parametrize("n", [7, 10, 15])
def test_gewu_ks_train_draws_cover_each_segment_and_cap(n: int) -> None:
    seg = n // 3
    seen = [set() for _ in range(3)]
    torch.manual_seed(0)
    for _ in range(200):
        for i, index in enumerate(select_frame_indices(n, 3, True, "gewu_ks")):
            seen[i].add(index)
    for i in range(3):
        expected = {min(t - 1, 8) for t in range(i * seg + 1, i * seg + seg + 1)}
        assert seen[i] == expected


def test_bad_frame_rule_names_the_key(compose_cfg, prepared) -> None:
    with pytest.raises(Exception, match=r"dataset.build.frame_rule='middle'"):
        build(compose_cfg, prepared[0], "dataset.build.frame_rule=middle")


def test_prepare_reports_missing_audio(prepared, capsys) -> None:
    out, raw = prepared
    code = prepare.main(["kinetics_sounds", "--raw", str(raw), "--out", str(out), "--workers", "1"])
    report = capsys.readouterr().out
    assert code == 1 and "8 skipped (already done), 1 failed" in report
    assert f"failed {NO_AUDIO}: audio: FileNotFoundError: no WAV file for {NO_AUDIO}" in report
    assert f"(looked for {raw}/audio/**/{NO_AUDIO}.wav)" in report
    assert f"{raw}/videos/**/{NO_AUDIO}.{{mp4," in report


def test_missing_root_message(tmp_path: Path) -> None:
    with pytest.raises(PreparedDataMissingError) as error:
        kinetics_sounds.build(str(tmp_path / "kinetics_sounds"))
    assert str(tmp_path / "kinetics_sounds") in str(error.value)
    assert "mmbench prepare kinetics_sounds --raw RAW --out PREPARED" in str(error.value)
