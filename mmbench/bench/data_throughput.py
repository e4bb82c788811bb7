"""Audio-path throughput: cached ``.npy`` features vs the OGM-GE STFT computed from WAV.

Builds CREMA-D-shaped fixture audio in a temporary folder (``--clips`` 16 kHz mono PCM16
WAVs of ``--seconds`` s, their OGM-GE STFT cached as ``.npy`` the way ``mmbench prepare``
writes it), then times a DataLoader (batch 16) reading each clip's audio modality either
from the cache or computing it on the fly (``load_wav`` at 22,050 Hz + STFT), with 0 and 2
worker processes (the main process collates with ``--torch-threads`` torch threads, 1 by
default, as DataLoader workers do: on a shared CPU, multi-threaded stacking of small
tensors costs more than it saves). Each timing covers ``--passes`` passes over the clips
after one warm-up batch, so worker start-up is not counted. Writes ``mode, workers,
samples_per_s, clips, samples_timed`` rows to ``--out`` and prints them with the
cached / on-the-fly ratios.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mmbench.data.audio_features import stft_from_wav
from mmbench.data.prepare import save_npy_atomic
from mmbench.data.raw_fixtures import write_wav

BATCH_SIZE = 16


class AudioClips(Dataset):
    """The ``(1, 257, 188)`` audio modality of each clip, cached or computed from its WAV."""

    def __init__(self, folder: Path, clips: int, passes: int, cached: bool) -> None:
        self.folder, self.clips, self.passes, self.cached = folder, clips, passes, cached

    def __len__(self) -> int:
        return self.clips * self.passes

    def __getitem__(self, index: int) -> torch.Tensor:
        clip = index % self.clips
        if self.cached:
            features = np.load(self.folder / "audio_stft" / f"clip{clip:04d}.npy")
        else:
            features = stft_from_wav(self.folder / "AudioWAV" / f"clip{clip:04d}.wav")
        return torch.from_numpy(features).unsqueeze(0)


def write_fixture(folder: Path, clips: int, seconds: float) -> None:
    """WAVs under ``AudioWAV/`` and their cached STFT under ``audio_stft/``."""
    for clip in range(clips):
        wav = folder / "AudioWAV" / f"clip{clip:04d}.wav"
        write_wav(wav, seconds, 200.0 + 10 * (clip % 40), clip)
        save_npy_atomic(folder / "audio_stft" / f"clip{clip:04d}.npy", stft_from_wav(wav))


def samples_per_second(dataset: AudioClips, workers: int) -> float:
    loader = DataLoader(dataset, batch_size=BATCH_SIZE, num_workers=workers)
    batches = iter(loader)
    next(batches)  # warm-up: workers started, first files read
    start = time.perf_counter()
    count = sum(len(batch) for batch in batches)
    return count / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mmbench bench-data", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks/data_throughput.csv"))
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--passes", type=int, default=8, help="passes over the clips per timing")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch threads in the main process (DataLoader workers always use 1)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    if args.clips * args.passes < 2 * BATCH_SIZE:
        parser.error(f"--clips x --passes must be at least {2 * BATCH_SIZE} (one warm-up batch)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="mmbench_bench_data_") as tmp:
        folder = Path(tmp)
        write_fixture(folder, args.clips, args.seconds)
        for workers in args.workers:
            for mode, cached in (("cached_npy", True), ("on_the_fly_stft", False)):
                dataset = AudioClips(folder, args.clips, args.passes, cached)
                rate = samples_per_second(dataset, workers)
                timed = len(dataset) - min(BATCH_SIZE, len(dataset))
                rows.append(
                    {
                        "mode": mode,
                        "workers": workers,
                        "samples_per_s": round(rate, 1),
                        "clips": args.clips,
                        "samples_timed": timed,
                    }
                )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(args.out.read_text(), end="")
    by_key = {(r["mode"], r["workers"]): r["samples_per_s"] for r in rows}
    for workers in args.workers:
        ratio = by_key[("cached_npy", workers)] / by_key[("on_the_fly_stft", workers)]
        print(f"workers={workers}: cached is {ratio:.1f}x faster than on-the-fly STFT")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
