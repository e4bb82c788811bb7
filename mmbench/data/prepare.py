"""``mmbench prepare <dataset> --raw RAW --out PREPARED``: raw files -> the prepared layout.

Runs once and is resumable: a clip whose outputs all exist is skipped (every output is
written under a temporary name and renamed, so existing means complete). Clips are processed
in parallel (``--workers`` processes), with a progress bar and a final summary: clips done,
skipped as already done, and failed with the reason for each clip name. Exit status: 0 when
nothing failed, 1 when some clips failed (the loaders then skip them, with a log line),
2 for a usage error or a missing raw folder.

Raw inputs (see README "Datasets" for the sources) and prepared outputs, per dataset:

* cremad: ``RAW/{train,test}.csv`` (OGM-GE split; or under ``RAW/splits/``),
  ``RAW/AudioWAV/<clip>.wav``, and ``RAW/VideoFlash/<clip>.flv`` or pre-extracted
  ``RAW/frames/<clip>/*.jpg`` (also ``RAW/Image-01-FPS/<clip>/``) ->
  ``PREPARED/cremad/{splits/{train,test}.csv, audio_stft/<clip>.npy,
  audio_fbank/<clip>.npy, frames/<clip>/*.jpg}``.
* kinetics_sounds: ``RAW/{train,test}.{csv,txt}`` (either list format; or under
  ``RAW/splits/``), ``RAW/audio/**/<clip>.wav`` (else the video's audio via ffmpeg), and
  ``RAW/videos/**/<clip>.<mp4|mkv|webm|avi>`` or ``RAW/frames/<clip>/*.jpg`` ->
  ``PREPARED/kinetics_sounds/{splits/<list>, audio_fbank/<clip>.npy, frames/<clip>/*.jpg}``.
* modelnet40: the MVCNN 12-view release ``RAW/<class>/<train|test>/<obj>.obj.shaded_v001.png``
  ... ``shaded_v012.png`` (or our ``<obj>.obj.<view>.png``) ->
  ``PREPARED/modelnet40/<class>/<split>/<obj>.obj.{0,6}.png`` (views 0 and 6, i.e.
  ``shaded_v001`` and ``shaded_v007``: the two views used).
* cgmnist: the four MNIST IDX files (``RAW/MNIST/raw/`` or ``RAW``, optionally ``.gz``)
  and any published ``mnist_10color_jitter_var_<v>.npy`` -> ``PREPARED/cgmnist/MNIST/raw/``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from mmbench.data import cgmnist, cremad, kinetics_sounds, modelnet40
from mmbench.data.audio_features import ClipTooShortError, fbank_from_wav, stft_from_wav
from mmbench.data.video_frames import copy_frame_folder, extract_audio, extract_frames

DATASETS = ("cremad", "kinetics_sounds", "modelnet40", "cgmnist")
AUDIO_FEATURES: dict[str, Callable[[Path], np.ndarray]] = {
    "stft": partial(stft_from_wav, require_full_crop=True),  # refuse clips under 1 s
    "fbank": fbank_from_wav,
}
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".flv")
VIDEO_NAMES = "<clip>.{" + ",".join(s[1:] for s in VIDEO_SUFFIXES) + "}"  # for messages
FRAME_FOLDERS = ("frames", "Image-01-FPS")
PREPARED_VIEWS = (0, 6)  # ModelNet40 front / rear: the Greedy configs' specific_views


class RawDataError(FileNotFoundError):
    """The raw folder lacks something prepare needs (the message names it)."""


class ClipPrepareError(RuntimeError):
    """One or more outputs of a clip could not be produced (the message lists why)."""


@dataclass(frozen=True)
class ClipJob:
    """One unit of work: produce ``outputs`` by calling ``work(**kwargs)``."""

    name: str
    outputs: tuple[Path, ...]
    work: Callable[..., None]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def is_done(self) -> bool:
        return all(p.exists() for p in self.outputs)


@dataclass
class PrepareSummary:
    """What a prepare run did: clips done, skipped as already done, failed (with reasons)."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def report(self, dataset: str, out: Path) -> str:
        total = len(self.done) + len(self.skipped) + len(self.failed)
        lines = [
            f"prepare {dataset} -> {out}: {total} items: {len(self.done)} done, "
            f"{len(self.skipped)} skipped (already done), {len(self.failed)} failed"
        ]
        lines += [f"  failed {name}: {reason}" for name, reason in sorted(self.failed.items())]
        return "\n".join(lines)


# ----------------------------------------------------------------------------- work


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """``np.save`` to a temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class RawPlaces:
    """Where a dataset's raw clip files are looked for (glob-like strings, for messages)."""

    wav: str
    video: str
    frames: str

    def for_clip(self, clip: str) -> RawPlaces:
        return RawPlaces(*(p.replace("<clip>", clip) for p in (self.wav, self.video, self.frames)))


def prepare_av_clip(
    name: str,
    wav: Path | None,
    video: Path | None,
    frame_source: Path | None,
    audio_outputs: dict[str, Path],
    frames_output: Path,
    fps: float,
    places: RawPlaces,
) -> None:
    """Cached audio features and frames of one clip; each missing output is produced.

    ``places``: where the raw files were looked for, named when one is missing.
    """
    errors = []
    looked = places.for_clip(name)
    pending_audio = {recipe: p for recipe, p in audio_outputs.items() if not p.exists()}
    if pending_audio:
        try:
            _write_audio_features(name, wav, video, pending_audio, looked)
        except Exception as error:
            errors.append(f"audio: {type(error).__name__}: {error}")
    if not frames_output.exists():
        try:
            if frame_source is not None:
                copy_frame_folder(frame_source, frames_output)
            elif video is not None:
                extract_frames(video, frames_output, fps)
            else:
                raise FileNotFoundError(
                    f"no frame folder (looked for {looked.frames}) and no video "
                    f"(looked for {looked.video})"
                )
        except Exception as error:
            errors.append(f"frames: {type(error).__name__}: {error}")
    if errors:
        raise ClipPrepareError("; ".join(errors))


def _write_audio_features(
    name: str, wav: Path | None, video: Path | None, outputs: dict[str, Path], looked: RawPlaces
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        if wav is None:
            if video is None:
                raise FileNotFoundError(
                    f"no WAV file for {name} (looked for {looked.wav}) and no video to take "
                    f"it from (looked for {looked.video})"
                )
            wav = Path(scratch) / f"{name}.wav"
            extract_audio(video, wav)
        too_short: ClipTooShortError | None = None
        for recipe, path in outputs.items():
            try:
                save_npy_atomic(path, AUDIO_FEATURES[recipe](wav))
            except ClipTooShortError as error:  # the other recipes may still take the clip
                too_short = error
        if too_short is not None:
            raise too_short


def copy_checked_images(pairs: list[tuple[Path, Path]]) -> None:
    """Copy images (atomically per file) once all of them are present and decode."""
    from PIL import Image

    for source, _ in pairs:
        if not source.is_file():
            raise FileNotFoundError(f"missing {source.name}")
        with Image.open(source) as image:
            image.load()
    copy_files(pairs)


def copy_files(pairs: list[tuple[Path, Path]]) -> None:
    """Copy files atomically (temporary name, then rename)."""
    for source, target in pairs:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)


def run_job(job: ClipJob) -> tuple[str, str | None]:
    """``(name, None)`` on success, ``(name, reason)`` on failure (never raises)."""
    try:
        job.work(**job.kwargs)
    except ClipPrepareError as error:
        return job.name, str(error)
    except Exception as error:
        return job.name, f"{type(error).__name__}: {error}"
    return job.name, None


def _worker_init() -> None:
    """One torch thread per process: the per-clip tensors are small, and on shared cores
    extra threads spin (the Kaldi fbank of a clip takes ~100x longer with 2 busy threads)."""
    import torch

    torch.set_num_threads(1)


def run_jobs(jobs: list[ClipJob], workers: int, description: str) -> PrepareSummary:
    """Run the jobs not yet done (in ``workers`` processes when > 1), with a progress bar."""
    summary = PrepareSummary()
    pending = []
    for job in jobs:
        (summary.skipped.append(job.name) if job.is_done() else pending.append(job))
    with tqdm(total=len(pending), desc=description, unit="clip", file=sys.stderr) as bar:
        for name, reason in _execute(pending, workers):
            if reason is None:
                summary.done.append(name)
            else:
                summary.failed[name] = reason
            bar.update(1)
    return summary


def _execute(jobs: list[ClipJob], workers: int) -> Iterable[tuple[str, str | None]]:
    if workers <= 1 or len(jobs) <= 1:
        import torch

        threads = torch.get_num_threads()
        _worker_init()
        try:
            yield from (run_job(job) for job in jobs)
        finally:
            torch.set_num_threads(threads)
        return
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["mmbench.data.audio_features", "mmbench.data.video_frames"])
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as pool:
        futures = [pool.submit(run_job, job) for job in jobs]
        for future in as_completed(futures):
            yield future.result()


# ----------------------------------------------------------------------------- plans


def _find_in(raw: Path, names: Iterable[str]) -> Path | None:
    for folder in (raw, raw / "splits"):
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


def _index_files(folder: Path, suffixes: Iterable[str]) -> dict[str, Path]:
    """``{stem: path}`` of files under ``folder`` (any depth) with one of ``suffixes``."""
    if not folder.is_dir():
        return {}
    wanted = {s.lower() for s in suffixes}
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in wanted and path.is_file() and not path.name.startswith("."):
            found.setdefault(path.stem, path)
    return found


def _frame_source(raw: Path, clip: str) -> Path | None:
    for folder in FRAME_FOLDERS:
        if (raw / folder / clip).is_dir():
            return raw / folder / clip
    return None


def _av_jobs(
    clips: list[str],
    raw: Path,
    base: Path,
    wavs: dict[str, Path],
    videos: dict[str, Path],
    recipes: list[str],
    fps: float,
    places: RawPlaces,
) -> list[ClipJob]:
    jobs = []
    for clip in clips:
        audio_outputs = {r: base / f"audio_{r}" / f"{clip}.npy" for r in recipes}
        frames_output = base / "frames" / clip
        kwargs = {
            "name": clip,
            "wav": wavs.get(clip),
            "video": videos.get(clip),
            "frame_source": _frame_source(raw, clip),
            "audio_outputs": audio_outputs,
            "frames_output": frames_output,
            "fps": fps,
            "places": places,
        }
        outputs = (*audio_outputs.values(), frames_output)
        jobs.append(ClipJob(clip, outputs, prepare_av_clip, kwargs))
    return jobs


def plan_cremad(raw: Path, out: Path, fps: float, recipes: list[str]) -> list[ClipJob]:
    base = out / "cremad"
    clips: dict[str, None] = {}
    for split in cremad.SPLITS:
        source = _find_in(raw, [f"{split}.csv"])
        if source is None:
            raise RawDataError(
                f"cremad: {raw}/{split}.csv (or {raw}/splits/{split}.csv) not found: put the "
                "OGM-GE split CSVs (lines '<clip>,<EMO>') there"
            )
        entries = cremad.read_split_csv(source)
        lines = "".join(f"{clip},{cremad.CLASS_NAMES[y]}\n" for clip, y in entries)
        target = base / "splits" / f"{split}.csv"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(lines, encoding="utf-8")
        clips.update(dict.fromkeys(clip for clip, _ in entries))
    wavs = _index_files(raw / "AudioWAV", [".wav"])
    videos = _index_files(raw / "VideoFlash", VIDEO_SUFFIXES)
    places = RawPlaces(
        wav=f"{raw / 'AudioWAV'}/<clip>.wav",
        video=f"{raw / 'VideoFlash'}/{VIDEO_NAMES}",
        frames=" or ".join(f"{raw / folder}/<clip>/" for folder in FRAME_FOLDERS),
    )
    return _av_jobs(list(clips), raw, base, wavs, videos, recipes, fps, places)


def plan_kinetics_sounds(raw: Path, out: Path, fps: float) -> list[ClipJob]:
    base = out / "kinetics_sounds"
    clips: dict[str, None] = {}
    for split in kinetics_sounds.SPLITS:
        source = kinetics_sounds.find_split_list(raw, split) or kinetics_sounds.find_split_list(
            raw / "splits", split
        )
        if source is None:
            raise RawDataError(
                f"kinetics_sounds: no {split} split list in {raw} (nor {raw}/splits): expected "
                f"{split}.csv or {split}.txt in either list format"
            )
        entries = kinetics_sounds.read_split_list(source)
        (base / "splits").mkdir(parents=True, exist_ok=True)
        for stale in (base / "splits").glob(f"{split}*"):
            stale.unlink()
        shutil.copyfile(source, base / "splits" / f"{split}{source.suffix}")
        clips.update(dict.fromkeys(clip for clip, _ in entries))
    wavs = _index_files(raw / "audio", [".wav"])
    videos = {
        **_index_files(raw / "video", VIDEO_SUFFIXES),
        **_index_files(raw / "videos", VIDEO_SUFFIXES),
    }
    places = RawPlaces(
        wav=f"{raw / 'audio'}/**/<clip>.wav",
        video=f"{raw / 'video'}/**/{VIDEO_NAMES} or {raw / 'videos'}/**/{VIDEO_NAMES}",
        frames=" or ".join(f"{raw / folder}/<clip>/" for folder in FRAME_FOLDERS),
    )
    return _av_jobs(list(clips), raw, base, wavs, videos, ["fbank"], fps, places)


def plan_modelnet40(raw: Path, out: Path) -> list[ClipJob]:
    base = out / "modelnet40"
    jobs = []
    for name in modelnet40.CLASS_NAMES:
        for split in modelnet40.SPLITS:
            folder = raw / name / split
            if not folder.is_dir():
                continue
            for obj, files in modelnet40.group_renderings(folder).items():
                pairs = [
                    (modelnet40.expected_view(folder, obj, files, v),
                     modelnet40.view_file(base / name / split, obj, v))
                    for v in PREPARED_VIEWS
                ]  # fmt: skip
                outputs = tuple(target for _, target in pairs)
                jobs.append(
                    ClipJob(f"{name}/{split}/{obj}", outputs, copy_checked_images, {"pairs": pairs})
                )
    if not jobs:
        raise RawDataError(
            f"modelnet40: no renderings found under {raw}: expected the MVCNN 12-view layout "
            f"{raw}/<class>/<train|test>/<obj>.obj.shaded_v001.png ... shaded_v012.png (or "
            f"<obj>.obj.<view>.png) with class folders such as {modelnet40.CLASS_NAMES[0]}/"
        )
    return jobs


def plan_cgmnist(raw: Path, out: Path) -> list[ClipJob]:
    target = out / "cgmnist" / "MNIST" / "raw"
    found = cgmnist.find_mnist(raw)
    pairs = [(path, target / path.name) for path in found.values()]
    pairs += [(p, out / "cgmnist" / p.name) for p in sorted(raw.glob("mnist_10color_*.npy"))]
    return [
        ClipJob(source.name, (dest,), copy_files, {"pairs": [(source, dest)]})
        for source, dest in pairs
    ]


def plan(dataset: str, raw: Path, out: Path, fps: float, recipe: str) -> list[ClipJob]:
    """The jobs that turn ``raw`` into ``out/<dataset>`` (split lists are written now)."""
    if dataset == "cremad":
        recipes = list(AUDIO_FEATURES) if recipe == "both" else [recipe]
        return plan_cremad(raw, out, fps, recipes)
    if dataset == "kinetics_sounds":
        return plan_kinetics_sounds(raw, out, fps)
    if dataset == "modelnet40":
        return plan_modelnet40(raw, out)
    return plan_cgmnist(raw, out)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (``mmbench prepare`` and ``python -m mmbench.data.prepare``)."""
    parser = argparse.ArgumentParser(
        prog="mmbench prepare", description="Turn a raw dataset into mmbench's prepared layout."
    )
    parser.add_argument("dataset", choices=DATASETS)
    parser.add_argument("--raw", type=Path, required=True, help="the raw dataset folder")
    parser.add_argument("--out", type=Path, required=True, help="PREPARED (= paths.data_dir)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--fps", type=float, default=1.0, help="frame rate for video frames")
    parser.add_argument(
        "--audio-recipe",
        choices=["stft", "fbank", "both"],
        default="both",
        help="cremad audio features to cache (kinetics_sounds always uses fbank)",
    )
    args = parser.parse_args(argv)
    if not args.raw.is_dir():
        print(f"mmbench prepare: raw folder {args.raw} not found", file=sys.stderr)
        return 2
    try:
        jobs = plan(args.dataset, args.raw, args.out, args.fps, args.audio_recipe)
    except (FileNotFoundError, ValueError) as error:
        print(f"mmbench prepare: {error}", file=sys.stderr)
        return 2
    summary = run_jobs(jobs, args.workers, f"prepare {args.dataset}")
    print(summary.report(args.dataset, args.out / args.dataset))
    return 1 if summary.failed else 0


if __name__ == "__main__":
    from mmbench.data.prepare import main as _importable_main  # workers unpickle jobs by module

    sys.exit(_importable_main())
