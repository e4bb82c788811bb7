"""Audio front-ends used by the multimodal datasets (CREMA-D, Kinetics-Sounds, ...).

Two published recipes are implemented here without torchaudio or librosa:

* ``fbank_features``: the AST / MMPareto input, a Kaldi log-mel filterbank
  (``torchaudio.compliance.kaldi.fbank`` semantics) padded or cropped to 1024 frames and
  normalised with the AudioSet statistics.  ``kaldi_fbank`` mirrors the float32 torch ops of
  torchaudio's ``compliance/kaldi.py`` so that its output is bit-identical to it.  Files are
  read as the recipe reads them (GeWu-Lab/OGM-GE_CVPR2022 ``data/KineticSound/process_audio.py``):
  ``torchaudio.load`` keeps every channel, the mean over all channels and samples is removed,
  and ``kaldi.fbank`` (``channel=-1``) uses channel 0 (pytorch/audio
  ``src/torchaudio/compliance/kaldi.py``, ``_get_waveform_and_window_properties``).
* ``ogm_stft_features``: the OGM-GE input, ``log(|STFT| + 1e-7)`` of a 3 s clip at 22,050 Hz
  (``librosa.stft`` semantics: periodic Hann, centred frames with zero padding), computed in
  float64 with NumPy.  Files are read as ``librosa.load(path, sr=22050)`` reads them in
  GeWu-Lab/OGM-GE_CVPR2022 ``dataset/CramedDataset.py``: channels averaged (``mono=True``),
  then resampled.  A clip shorter than 1 s tiles to less than 3 s and gives fewer than 188
  frames; ``stft_from_wav(..., require_full_crop=True)`` (what ``mmbench prepare`` uses)
  refuses it, naming the file.

The reference fixtures and the exact parameter lists live in ``tests/fixtures/audio``.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy.signal import resample_poly

__all__ = [
    "ClipTooShortError",
    "fbank_features",
    "fbank_from_wav",
    "kaldi_fbank",
    "load_wav",
    "load_wav_channels",
    "ogm_stft_features",
    "stft_from_wav",
]

FLT_EPSILON = float(np.finfo(np.float32).eps)
STFT_SAMPLE_RATE = 22050
STFT_SECONDS = 3
STFT_HOP = 353
AUDIOSET_MEAN = -4.503877
AUDIOSET_STD = 5.141276
_STREAMING_SIZES = (0, 0xFFFFFFFF)


class ClipTooShortError(ValueError):
    """A clip too short for a recipe's fixed output size (the message names the file)."""


def _check_riff_wav(path: Path) -> None:
    """Raise ``ValueError`` when a RIFF/WAVE file's ``data`` chunk is cut short.

    libsndfile silently returns the samples that are present when a WAV file is
    truncated, so the declared chunk sizes are checked against the file size here.
    Files that are not RIFF/WAVE are left to soundfile.
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        offset = 12
        while offset + 8 <= size:
            fh.seek(offset)
            chunk_id, chunk_size = struct.unpack("<4sI", fh.read(8))
            available = size - offset - 8
            if chunk_id == b"data":
                if chunk_size not in _STREAMING_SIZES and chunk_size > available:
                    raise ValueError(
                        f"cannot read audio file {str(path)!r}: truncated WAV, the data chunk "
                        f"declares {chunk_size} bytes but only {available} are present"
                    )
                return
            offset += 8 + chunk_size + (chunk_size & 1)
    raise ValueError(f"cannot read audio file {str(path)!r}: WAV file has no complete data chunk")


def _read_frames(path: Path) -> tuple[np.ndarray, int]:
    """float32 ``(samples, channels)`` of an audio file and its rate (PCM16 -> int16 / 32768)."""
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {str(path)!r}")
    _check_riff_wav(path)
    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise ValueError(f"cannot read audio file {str(path)!r}: {exc}") from exc
    if data.shape[0] == 0:
        raise ValueError(f"cannot read audio file {str(path)!r}: it contains no samples")
    return data, int(sr)


def load_wav(path: str | os.PathLike[str], target_sr: int | None = None) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 mono samples in [-1, 1), optionally resampled.

    The STFT recipe's reading (``librosa.load(path, sr=...)``, ``mono=True``): samples are
    read with ``soundfile`` (PCM16 becomes ``int16 / 32768``), channels are averaged, and when
    ``target_sr`` differs from the file's rate the signal is resampled with
    ``scipy.signal.resample_poly(x, up, down)`` where ``up / down = target_sr / sr`` reduced
    by their gcd (16000 -> 22050 is up 441, down 320), then cast back to float32.  (librosa
    resamples with soxr by default; see tests/fixtures/audio for the measured difference.)

    Returns ``(samples, sample_rate)``.  A missing file raises ``FileNotFoundError``; an
    unreadable, truncated or empty file raises ``ValueError``; both messages name the path.
    """
    data, sr = _read_frames(Path(path))
    samples = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if target_sr is not None and int(target_sr) != sr:
        target_sr = int(target_sr)
        if target_sr <= 0:
            raise ValueError(f"target_sr must be positive, got {target_sr}")
        g = math.gcd(sr, target_sr)
        samples = resample_poly(samples, target_sr // g, sr // g).astype(np.float32)
        sr = target_sr
    return samples, sr


def load_wav_channels(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 ``(channels, samples)`` at its own rate.

    The fbank recipe's reading (``torchaudio.load``: every channel kept, PCM16 becomes
    ``int16 / 32768``).  Errors as ``load_wav``.
    """
    data, sr = _read_frames(Path(path))
    return np.ascontiguousarray(data.T, dtype=np.float32), sr


def _to_float32_tensor(waveform: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``waveform`` (1-D, or 2-D ``(channels, samples)``) as a contiguous float32 CPU tensor."""
    if isinstance(waveform, torch.Tensor):
        wav = waveform.detach().to(device="cpu", dtype=torch.float32)
    else:
        wav = torch.from_numpy(np.array(waveform, dtype=np.float32, copy=True))
    if wav.dim() not in (1, 2):
        raise ValueError(
            f"waveform must be 1-D (samples,) or 2-D (channels, samples), got shape "
            f"{tuple(wav.shape)}"
        )
    return wav.contiguous()


def _as_float32_tensor(waveform: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Return channel 0 of ``waveform`` (1-D, or 2-D ``(channels, samples)``) as float32."""
    wav = _to_float32_tensor(waveform)
    return (wav[0] if wav.dim() == 2 else wav).contiguous()


def _mel_scale(freq: torch.Tensor | float) -> torch.Tensor | float:
    """HTK mel scale, ``1127 ln(1 + f / 700)``."""
    if isinstance(freq, torch.Tensor):
        return 1127.0 * (1.0 + freq / 700.0).log()
    return 1127.0 * math.log(1.0 + freq / 700.0)


def _kaldi_mel_banks(
    num_bins: int, padded_window: int, sample_rate: float, low_freq: float, high_freq: float
) -> torch.Tensor:
    """Kaldi triangular mel filters, float32 ``(num_bins, padded_window // 2 + 1)``.

    Edges are equally spaced in mel between ``low_freq`` and ``high_freq`` (``<= 0`` means
    offset from Nyquist); the weight of FFT bin ``k`` is ``max(0, min(up, down))`` evaluated
    at ``mel(k * sr / padded_window)``; the Nyquist bin gets weight 0.
    """
    nyquist = 0.5 * sample_rate
    if high_freq <= 0.0:
        high_freq += nyquist
    if not (0.0 <= low_freq < nyquist and 0.0 < high_freq <= nyquist and low_freq < high_freq):
        raise ValueError(
            f"bad mel range: low_freq={low_freq}, high_freq={high_freq}, nyquist={nyquist}"
        )
    fft_bin_width = sample_rate / padded_window
    mel_low = _mel_scale(low_freq)
    mel_delta = (_mel_scale(high_freq) - mel_low) / (num_bins + 1)
    bins = torch.arange(num_bins).unsqueeze(1)
    left = mel_low + bins * mel_delta
    center = mel_low + (bins + 1.0) * mel_delta
    right = mel_low + (bins + 2.0) * mel_delta
    mel = _mel_scale(fft_bin_width * torch.arange(padded_window / 2)).unsqueeze(0)
    up_slope = (mel - left) / (center - left)
    down_slope = (right - mel) / (right - center)
    weights = torch.max(torch.zeros(1), torch.min(up_slope, down_slope))
    return torch.nn.functional.pad(weights, (0, 1), mode="constant", value=0.0)


def kaldi_fbank(
    waveform: np.ndarray | torch.Tensor,
    sample_rate: int,
    num_mel_bins: int = 128,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    preemphasis: float = 0.97,
    remove_dc_offset: bool = True,
) -> np.ndarray:
    """Kaldi log-mel filterbank, float32 ``(frames, num_mel_bins)`` (Kaldi ``compute-fbank``).

    Same definition and float32 op order as ``torchaudio.compliance.kaldi.fbank`` with
    ``window_type='hanning'``, ``dither=0``, ``use_energy=False``, ``snip_edges=True``,
    ``round_to_power_of_two=True``, ``use_power=True``, ``use_log_fbank=True``:

    * window ``W = int(sr * frame_length_ms / 1000)``, shift ``H = int(sr * frame_shift_ms /
      1000)``, ``frames = 1 + (N - W) // H`` (only frames that fit entirely);
    * per frame: subtract the frame mean (``remove_dc_offset``), pre-emphasis
      ``y[j] = x[j] - preemphasis * x[max(0, j - 1)]``, symmetric Hann window
      ``0.5 - 0.5 cos(2 pi n / (W - 1))``, zero-pad to the next power of two;
    * power spectrum ``|rfft|^2`` times HTK mel filters (see ``_kaldi_mel_banks``), then
      ``ln(max(E, FLT_EPSILON))``.

    The input is used as given (no global mean removal: ``fbank_features`` does that).  A 2-D
    input is ``(channels, samples)`` and channel 0 is used, as torchaudio's ``kaldi.fbank``
    does with its default ``channel=-1`` (``fbank_from_wav`` therefore reads every channel
    with ``load_wav_channels``).  A clip shorter than one window raises ``ValueError``.
    """
    wav = _as_float32_tensor(waveform)
    window_shift = int(sample_rate * frame_shift_ms * 0.001)
    window_size = int(sample_rate * frame_length_ms * 0.001)
    if window_size < 2 or window_shift < 1:
        raise ValueError(
            f"frame length {frame_length_ms} ms / shift {frame_shift_ms} ms at {sample_rate} Hz "
            f"give a window of {window_size} and a shift of {window_shift} samples"
        )
    if num_mel_bins <= 3:
        raise ValueError(f"num_mel_bins must be > 3, got {num_mel_bins}")
    num_samples = wav.numel()
    if num_samples < window_size:
        raise ValueError(
            f"waveform has {num_samples} samples, shorter than one {frame_length_ms} ms frame: "
            f"at least {window_size} samples are needed at {sample_rate} Hz"
        )
    padded_window = 1 << (window_size - 1).bit_length()

    num_frames = 1 + (num_samples - window_size) // window_shift
    frames = wav.as_strided((num_frames, window_size), (window_shift, 1))
    if remove_dc_offset:
        frames = frames - torch.mean(frames, dim=1).unsqueeze(1)
    if preemphasis != 0.0:
        previous = torch.nn.functional.pad(frames.unsqueeze(0), (1, 0), mode="replicate")
        frames = frames - preemphasis * previous.squeeze(0)[:, :-1]
    window = torch.hann_window(window_size, periodic=False, dtype=torch.float32)
    frames = frames * window.unsqueeze(0)
    frames = torch.nn.functional.pad(frames, (0, padded_window - window_size), value=0.0)

    power = torch.fft.rfft(frames).abs().pow(2.0)
    banks = _kaldi_mel_banks(num_mel_bins, padded_window, sample_rate, low_freq, high_freq)
    energies = torch.mm(power, banks.T)
    energies = torch.max(energies, torch.tensor(FLT_EPSILON, dtype=torch.float32)).log()
    return energies.numpy()


def fbank_features(
    waveform: np.ndarray | torch.Tensor,
    sample_rate: int,
    target_length: int = 1024,
    norm_mean: float = AUDIOSET_MEAN,
    norm_std: float = AUDIOSET_STD,
) -> np.ndarray:
    """AST / MMPareto audio input, float32 ``(target_length, 128)``.

    Recipe (AST ``_wav2fbank``; OGM-GE ``data/KineticSound/process_audio.py``):
    ``x = waveform - mean(waveform)`` with the mean over every channel and sample of a 2-D
    ``(channels, samples)`` input; ``F = kaldi_fbank(x, sample_rate)`` on channel 0 (128 mel
    bins, 25 ms / 10 ms, Hann, dither 0); append zero rows at the bottom up to
    ``target_length`` or keep the first ``target_length`` rows; then
    ``(F - norm_mean) / (2 * norm_std)`` in float32 (padded rows become 0.43801162 with the
    AudioSet defaults).
    """
    wav = _to_float32_tensor(waveform)
    fbank = torch.from_numpy(kaldi_fbank(wav - wav.mean(), sample_rate, num_mel_bins=128))
    n_frames = fbank.shape[0]
    if n_frames < target_length:
        fbank = torch.nn.functional.pad(fbank, (0, 0, 0, target_length - n_frames))
    else:
        fbank = fbank[:target_length]
    return ((fbank - norm_mean) / (2 * norm_std)).numpy()


def ogm_stft_features(
    samples_22050: np.ndarray,
    seconds: int = STFT_SECONDS,
    sample_rate: int = STFT_SAMPLE_RATE,
    n_fft: int = 512,
    hop: int = STFT_HOP,
    eps: float = 1e-7,
    periodic: bool = True,
) -> np.ndarray:
    """OGM-GE log-magnitude STFT, float32 ``(n_fft // 2 + 1, 1 + L // hop)``.

    Recipe (OGM-GE, Peng et al. CVPR 2022, ``dataset/CramedDataset.py``):
    ``x = tile(samples, 3)[: seconds * sr]`` clipped to [-1, 1];
    ``S = librosa.stft(x, n_fft=512, hop_length=353)``, i.e. periodic Hann
    ``0.5 - 0.5 cos(2 pi n / n_fft)``, ``center=True`` with ``n_fft // 2`` zeros on each side
    (librosa >= 0.9 ``pad_mode='constant'``); output ``log(|S| + eps)``.  ``L`` is the tiled
    length, so clips of at least 1 s give ``(257, 188)``; shorter clips give fewer frames, as
    in the recipe (which then cannot batch them).
    The STFT is computed in float64 and the result cast to float32.  ``periodic=False`` gives
    the symmetric-window variant (not the recipe; kept for sensitivity checks).
    """
    x = np.asarray(samples_22050, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"samples must be a non-empty 1-D array, got shape {x.shape}")
    x = np.clip(np.tile(x, 3)[: seconds * sample_rate], -1.0, 1.0)
    x = np.pad(x, (n_fft // 2, n_fft // 2), mode="constant")
    num_frames = 1 + (x.size - n_fft) // hop
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop][:num_frames]
    denom = n_fft if periodic else n_fft - 1
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / denom)
    spec = np.fft.rfft(frames * window, n=n_fft, axis=1)
    return np.log(np.abs(spec) + eps).T.astype(np.float32)


def stft_from_wav(path: str | os.PathLike[str], require_full_crop: bool = False) -> np.ndarray:
    """OGM-GE features of a file: ``load_wav(path, 22050)`` then ``ogm_stft_features``.

    ``require_full_crop``: raise ``ClipTooShortError`` naming the file when the clip is shorter than
    ``STFT_SECONDS / 3`` s (1 s), i.e. when tiling it 3 times does not fill the 3 s crop and
    the result would have fewer than ``1 + 3 * 22050 // 353 = 188`` frames.
    """
    samples, _ = load_wav(path, target_sr=STFT_SAMPLE_RATE)
    needed = STFT_SECONDS * STFT_SAMPLE_RATE
    if require_full_crop and 3 * samples.size < needed:
        full = 1 + needed // STFT_HOP
        got = 1 + 3 * samples.size // STFT_HOP
        raise ClipTooShortError(
            f"audio file {str(path)!r} is {samples.size / STFT_SAMPLE_RATE:.3f} s long: the "
            f"OGM-GE STFT tiles a clip 3 times into a {STFT_SECONDS} s crop, which a clip under "
            f"{STFT_SECONDS / 3:g} s does not fill: it gives {got} instead of {full} frames and "
            "could not be batched; drop the clip from the split lists, or use the fbank recipe "
            "(padded to 1024 frames)"
        )
    return ogm_stft_features(samples)


def fbank_from_wav(path: str | os.PathLike[str]) -> np.ndarray:
    """AST / MMPareto features of a file at its own rate: every channel read with
    ``load_wav_channels`` (as ``torchaudio.load``), then ``fbank_features`` (global mean
    removed, channel 0)."""
    samples, sr = load_wav_channels(path)
    return fbank_features(samples, sr)
