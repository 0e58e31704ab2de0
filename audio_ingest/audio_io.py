"""Audio files and sample conversion: read WAV/FLAC/OGG (soundfile), resample, PCM16 bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 16_000


class AudioFileError(ValueError):
    """A file that is not readable audio."""


def read_audio(path: Path) -> tuple[npt.NDArray[np.float32], int]:
    """(samples as frames x channels float32 in [-1, 1], sample rate)."""
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioFileError(f"{path}: not readable audio (WAV, FLAC or OGG): {exc}") from exc
    if data.size == 0:
        raise AudioFileError(f"{path}: no audio samples")
    samples: npt.NDArray[np.float32] = np.asarray(data, dtype=np.float32)
    return samples, int(rate)


def resample(x: npt.NDArray[np.float32], rate_in: int, rate_out: int) -> npt.NDArray[np.float32]:
    """Band-limited resampling of a 1-d signal (windowed-sinc low-pass, then interpolation)."""
    if rate_in == rate_out or x.size == 0:
        return x.astype(np.float32, copy=False)
    if rate_out < rate_in:  # remove what the new rate cannot carry, before decimating
        cutoff = 0.5 * rate_out / rate_in  # cycles per input sample
        taps = np.arange(-32, 33)
        kernel = 2 * cutoff * np.sinc(2 * cutoff * taps) * np.hamming(taps.size)
        x = np.convolve(x, kernel / kernel.sum(), mode="same")
    n_out = int(round(x.size * rate_out / rate_in))
    t = np.arange(n_out) * (rate_in / rate_out)
    out: npt.NDArray[np.float32] = np.interp(t, np.arange(x.size), x).astype(np.float32)
    return out


def pcm16_to_float(data: bytes) -> npt.NDArray[np.float32]:
    """Little-endian signed 16-bit PCM to float32 in [-1, 1)."""
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def float_to_pcm16(x: npt.NDArray[np.float32]) -> bytes:
    return (np.clip(x, -1.0, 1.0 - 1 / 32768) * 32768.0).astype("<i2").tobytes()
