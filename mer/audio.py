"""Reading people's recordings: any format ffmpeg reads, at any rate and channel count, as mono float32 at the
model's rate, either capped (`decode_audio`: one clip, the rest never decoded) or in bounded chunks
(`stream_audio`: an hour-long interview never held whole).

ffmpeg (Debian's `ffmpeg`, which `make setup` installs) does the decoding, resampling and down-mixing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["AudioError", "FFmpegMissingError", "audio_duration", "check_audio_file", "decode_audio", "stream_audio"]

_BYTES_PER_SAMPLE = 4  # float32


class AudioError(ValueError):
    """A file cannot be read as audio; the message names the file and gives ffmpeg's reason."""


class FFmpegMissingError(RuntimeError):
    """ffmpeg (or ffprobe) is not installed."""


def _executable(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise FFmpegMissingError(
            f"{name} is not installed: MER decodes audio with ffmpeg (Debian/Ubuntu: apt-get install ffmpeg)."
        )
    return found


def _source(path: str | Path) -> str:
    """ffmpeg's name for a local file, whatever the file's name looks like (never a URL, a protocol or "-")."""
    return f"file:{Path(path).resolve()}"


def _decoder(path: str | Path, sampling_rate: int, max_seconds: float | None) -> list[str]:
    limit = [] if max_seconds is None else ["-t", f"{max_seconds + 1:.3f}"]
    return [
        _executable("ffmpeg"), "-nostdin", "-v", "error", *limit, "-i", _source(path),
        "-vn", "-ac", "1", "-ar", str(sampling_rate), "-f", "f32le", "-acodec", "pcm_f32le", "-",
    ]  # fmt: skip


def _failure(path: str | Path, stderr: bytes) -> AudioError:
    lines = stderr.decode(errors="replace").strip().splitlines() or ["unknown format"]
    reason = lines[-1].replace(_source(path), "").strip(" :")
    return AudioError(f"Could not read '{path}' as audio ({reason}).")


def check_audio_file(path: str | Path) -> None:
    """Raises `AudioError` (naming `path`) when it is missing, a directory or empty: what can be said before
    decoding."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"Could not read '{path}' as audio (no such file).")
    if path.is_dir():
        raise AudioError(f"Could not read '{path}' as audio (it is a directory).")
    if path.stat().st_size == 0:
        raise AudioError(f"Could not read '{path}' as audio (the file is empty: 0 bytes).")


def decode_audio(path: str | Path, sampling_rate: int, max_seconds: float | None = None) -> tuple[np.ndarray, bool]:
    """Decodes a file into mono float32 at `sampling_rate` (channels averaged).

    At most `max_seconds` are returned (all of it when None); the rest is not even decoded, so a long file costs
    no memory.

    Returns:
        `(waveform, cropped)`: `cropped` is True when the file is longer than `max_seconds`.

    Raises:
        AudioError: the file is missing, empty or not audio.
        FFmpegMissingError: ffmpeg is not installed.
    """
    check_audio_file(path)
    result = subprocess.run(_decoder(path, sampling_rate, max_seconds), capture_output=True, check=False)
    if result.returncode != 0:
        raise _failure(path, result.stderr)
    waveform = np.frombuffer(result.stdout, dtype="<f4").astype(np.float32)
    if max_seconds is None:
        return waveform, False
    max_samples = int(max_seconds * sampling_rate)
    return waveform[:max_samples], len(waveform) > max_samples


def stream_audio(path: str | Path, sampling_rate: int, chunk_seconds: float = 30.0) -> Iterator[np.ndarray]:
    """Decodes a file of any length chunk by chunk: mono float32 at `sampling_rate`, `chunk_seconds` per chunk (the
    last one shorter). Memory stays at one chunk whatever the file's length.

    Raises:
        AudioError: the file is missing, empty or not audio (raised where the decoder fails, possibly after some
            chunks were yielded).
        FFmpegMissingError: ffmpeg is not installed.
    """
    check_audio_file(path)
    chunk_bytes = max(1, int(chunk_seconds * sampling_rate)) * _BYTES_PER_SAMPLE
    with tempfile.TemporaryFile() as stderr:  # a file, not a pipe: ffmpeg never blocks on a full stderr pipe
        process = subprocess.Popen(_decoder(path, sampling_rate, None), stdout=subprocess.PIPE, stderr=stderr)
        try:
            while True:
                data = process.stdout.read(chunk_bytes)
                if not data:
                    break
                data = data[: len(data) - len(data) % _BYTES_PER_SAMPLE]
                yield np.frombuffer(data, dtype="<f4").astype(np.float32)
        finally:
            process.stdout.close()
            if process.poll() is None:  # the caller stopped early
                process.kill()
            returncode = process.wait()
        if returncode != 0:
            stderr.seek(0)
            raise _failure(path, stderr.read())


def audio_duration(path: str | Path) -> float | None:
    """The file's duration in seconds as its container states it (cheap: nothing is decoded), or None when the
    container does not say or the file is not audio."""
    command = [
        _executable("ffprobe"), "-v", "error", "-show_entries", "format=duration", "-of", "json", _source(path),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        return None
    try:
        return float(json.loads(result.stdout)["format"]["duration"])
    except (KeyError, TypeError, ValueError):
        return None
