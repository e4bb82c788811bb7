"""Frames and audio out of videos for ``mmbench prepare``: ffmpeg, else PyAV, else an error.

Every output folder or file is written beside its target under a temporary name and then
renamed, so an interrupted run never leaves a half-written clip behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from PIL import Image

from mmbench.data.frames import list_frames

INSTALL_HINT = (
    "install ffmpeg (Debian/Ubuntu: `apt-get install ffmpeg`) or PyAV (`pip install av`), "
    "or give prepare already-extracted frame folders (RAW/frames/<clip>/*.jpg)"
)


class MissingToolError(RuntimeError):
    """Neither ffmpeg nor PyAV is available for a step that needs one."""


def _temporary_dir(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))


def _publish_dir(tmp: Path, target: Path) -> None:
    if not list_frames(tmp):
        shutil.rmtree(tmp, ignore_errors=True)
        raise ValueError(f"no frames were produced for {target.name}")
    os.replace(tmp, target)


def copy_frame_folder(source: Path, target: Path) -> None:
    """Copy an already-extracted frame folder, checking that every image decodes."""
    frames = list_frames(source)
    if not frames:
        raise ValueError(f"empty frame folder {source} (no .jpg/.png files)")
    tmp = _temporary_dir(target)
    try:
        for frame in frames:
            with Image.open(frame) as image:
                image.verify()
            shutil.copyfile(frame, tmp / frame.name)
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _publish_dir(tmp, target)


def extract_frames(video: Path, target: Path, fps: float) -> None:
    """Frames of ``video`` at ``fps`` into ``target/000001.jpg ...`` (ffmpeg or PyAV)."""
    if not video.is_file():
        raise FileNotFoundError(f"video not found: {video}")
    tmp = _temporary_dir(target)
    try:
        if shutil.which("ffmpeg"):
            _frames_with_ffmpeg(video, tmp, fps)
        else:
            _frames_with_pyav(video, tmp, fps)
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _publish_dir(tmp, target)


def _frames_with_ffmpeg(video: Path, folder: Path, fps: float) -> None:
    command = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(video), "-vf", f"fps={fps}"]
    result = subprocess.run(
        [*command, "-q:v", "2", str(folder / "%06d.jpg")], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"ffmpeg failed on {video}: {result.stderr.strip()[-300:]}")


def _frames_with_pyav(video: Path, folder: Path, fps: float) -> None:
    try:
        import av
    except ImportError as error:
        raise MissingToolError(f"cannot extract frames from {video}: {INSTALL_HINT}") from error
    next_time, count = 0.0, 0
    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            if frame.time is None or frame.time + 1e-6 >= next_time:
                count += 1
                frame.to_image().save(folder / f"{count:06d}.jpg", quality=95)
                next_time += 1.0 / fps


def extract_audio(video: Path, target: Path, sample_rate: int = 16000) -> None:
    """The audio track of ``video`` as mono PCM16 WAV at ``sample_rate`` (ffmpeg only)."""
    if not shutil.which("ffmpeg"):
        raise MissingToolError(
            f"cannot extract audio from {video}: install ffmpeg (`apt-get install ffmpeg`) or "
            "give prepare the WAV files (RAW/audio/<clip>.wav)"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".wav", dir=target.parent)
    os.close(fd)
    command = ["ffmpeg", "-nostdin", "-y", "-v", "error", "-i", str(video), "-vn", "-ac", "1"]
    result = subprocess.run(
        [*command, "-ar", str(sample_rate), "-acodec", "pcm_s16le", tmp],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        Path(tmp).unlink(missing_ok=True)
        raise RuntimeError(f"ffmpeg failed on {video}: {result.stderr.strip()[-300:]}")
    os.replace(tmp, target)
