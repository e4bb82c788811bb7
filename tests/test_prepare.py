"""``mmbench prepare``: resumable, parallel, failures reported per clip by name."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mmbench.data import cgmnist, cremad, prepare, video_frames
from mmbench.data.audio_features import stft_from_wav
from mmbench.data.raw_fixtures import write_raw_cremad, write_wav


def run(*args: str) -> int:
    return prepare.main([str(a) for a in args])


@pytest.fixture
def raw_cremad(tmp_path: Path) -> tuple[Path, dict[str, list[str]]]:
    raw = tmp_path / "raw"
    return raw, write_raw_cremad(raw, 1, 1, frames_per_clip=3, seconds=1.0)


def test_resumable_and_complete(raw_cremad, tmp_path: Path, capsys) -> None:
    raw, clips = raw_cremad
    out = tmp_path / "out"
    args = ("cremad", "--raw", raw, "--out", out, "--workers", 1, "--audio-recipe", "stft")
    assert run(*args) == 0
    assert "12 items: 12 done, 0 skipped (already done), 0 failed" in capsys.readouterr().out
    base = out / "cremad"
    clip = clips["train"][0]
    cached = np.load(base / "audio_stft" / f"{clip}.npy")
    assert cached.shape == (257, 188) and cached.dtype == np.float32
    np.testing.assert_array_equal(cached, stft_from_wav(raw / "AudioWAV" / f"{clip}.wav"))
    assert len(list((base / "frames" / clip).glob("*.jpg"))) == 3
    assert not (base / "audio_fbank").exists()
    assert (base / "splits" / "train.csv").read_text().startswith(f"{clip},ANG\n")
    assert not [p for p in base.rglob(".*")]  # no temporary files left behind
    assert run(*args) == 0
    assert "0 done, 12 skipped (already done)" in capsys.readouterr().out
    (base / "audio_stft" / f"{clip}.npy").unlink()
    shutil.rmtree(base / "frames" / clips["test"][0])
    assert run(*args) == 0
    assert "2 done, 10 skipped (already done)" in capsys.readouterr().out
    assert (base / "audio_stft" / f"{clip}.npy").is_file()


def test_corrupt_inputs_reported_by_name(raw_cremad, tmp_path: Path, capsys) -> None:
    raw, clips = raw_cremad
    truncated, empty = clips["train"][1], clips["test"][2]
    wav = raw / "AudioWAV" / f"{truncated}.wav"
    wav.write_bytes(wav.read_bytes()[:2000])
    shutil.rmtree(raw / "frames" / empty)
    (raw / "frames" / empty).mkdir()
    out = tmp_path / "out"
    code = run("cremad", "--raw", raw, "--out", out, "--workers", 2, "--audio-recipe", "both")
    report = capsys.readouterr().out
    assert code == 1 and "10 done, 0 skipped (already done), 2 failed" in report
    assert f"failed {truncated}: audio: ValueError: cannot read audio file" in report
    assert "truncated WAV" in report
    assert f"failed {empty}: frames: ValueError: empty frame folder" in report
    assert (out / "cremad" / "frames" / truncated).is_dir()  # what could be made was made
    assert (out / "cremad" / "audio_fbank" / f"{empty}.npy").is_file()
    assert np.load(out / "cremad" / "audio_fbank" / f"{empty}.npy").shape == (1024, 128)


def test_clip_under_one_second_refused_for_stft_only(raw_cremad, tmp_path: Path, capsys) -> None:
    """OGM-GE tiles a clip 3x into 3 s: a 0.5 s clip would give 257 x 94, unbatchable."""
    from torch.utils.data import default_collate

    raw, clips = raw_cremad
    short = clips["train"][2]
    write_wav(raw / "AudioWAV" / f"{short}.wav", 0.5, 300.0, 7)
    out = tmp_path / "out"
    code = run("cremad", "--raw", raw, "--out", out, "--workers", 1, "--audio-recipe", "both")
    report = capsys.readouterr().out
    assert code == 1 and "11 done, 0 skipped (already done), 1 failed" in report
    assert f"failed {short}: audio: ClipTooShortError: audio file" in report
    assert f"{short}.wav' is 0.500 s long" in report and "94 instead of 188 frames" in report
    assert stft_from_wav(raw / "AudioWAV" / f"{short}.wav").shape == (257, 94)
    assert not (out / "cremad" / "audio_stft" / f"{short}.npy").exists()
    assert np.load(out / "cremad" / "audio_fbank" / f"{short}.npy").shape == (1024, 128)
    splits = cremad.build(str(out / "cremad"), image_size=8)
    assert short not in {r.name for r in splits.train.records}
    batch = default_collate([splits.train[i] for i in range(len(splits.train))])
    assert batch["audio"].shape == (len(splits.train), 1, 257, 188)


def test_missing_wav_names_where_it_looked(raw_cremad, tmp_path: Path, capsys) -> None:
    raw, clips = raw_cremad
    lost = clips["test"][0]
    (raw / "AudioWAV" / f"{lost}.wav").unlink()
    code = run("cremad", "--raw", raw, "--out", tmp_path / "out", "--workers", 1)
    report = capsys.readouterr().out
    assert code == 1 and f"failed {lost}: audio: FileNotFoundError: no WAV file" in report
    assert f"looked for {raw}/AudioWAV/{lost}.wav" in report
    assert f"looked for {raw}/VideoFlash/{lost}.{{mp4,mkv,webm,avi,flv}}" in report


def test_missing_raw_parts(tmp_path: Path, capsys) -> None:
    assert run("cremad", "--raw", tmp_path / "absent", "--out", tmp_path / "out") == 2
    assert f"raw folder {tmp_path / 'absent'} not found" in capsys.readouterr().err
    (tmp_path / "raw").mkdir()
    assert run("cremad", "--raw", tmp_path / "raw", "--out", tmp_path / "out") == 2
    assert "train.csv" in capsys.readouterr().err
    assert run("modelnet40", "--raw", tmp_path / "raw", "--out", tmp_path / "out") == 2
    assert "<class>/<train|test>/<obj>.obj.shaded_v001.png" in capsys.readouterr().err


def test_missing_video_tool_message(tmp_path: Path, monkeypatch) -> None:
    video = tmp_path / "clip.flv"
    video.write_bytes(b"not a video")
    monkeypatch.setattr(video_frames.shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(video_frames.MissingToolError, match="apt-get install ffmpeg"):
        video_frames.extract_frames(video, tmp_path / "frames" / "clip", fps=1.0)
    assert not (tmp_path / "frames" / "clip").exists()
    assert not list((tmp_path / "frames").iterdir())


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_video_frames_with_ffmpeg(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=duration=3:size=64x48:rate=10",
         str(video)],
        check=True,
    )  # fmt: skip
    video_frames.extract_frames(video, tmp_path / "frames" / "clip", fps=1.0)
    assert len(list((tmp_path / "frames" / "clip").glob("*.jpg"))) == 3


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_cgmnist_layout(tmp_path: Path) -> None:
    raw = tmp_path / "mnist"
    raw.mkdir()
    rng = np.random.default_rng(0)
    for stem, count in (("train", 40), ("t10k", 20)):
        write_idx(raw / f"{stem}-images-idx3-ubyte", rng.integers(0, 255, (count, 28, 28)))
        write_idx(raw / f"{stem}-labels-idx1-ubyte", np.arange(count) % 10)
    assert run("cgmnist", "--raw", raw, "--out", tmp_path / "out", "--workers", 1) == 0
    splits = cgmnist.build_full(str(tmp_path / "out" / "cgmnist"), val_per_class=1)
    assert len(splits.train) == 30 and len(splits.val) == 10 and len(splits.test) == 20


def test_help_exits_cleanly() -> None:
    with pytest.raises(SystemExit) as done:
        prepare.main(["--help"])
    assert done.value.code == 0
