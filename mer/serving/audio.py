"""Reading people's recordings: any format ffmpeg reads, at any rate and channel count, as mono float32 at the
model's rate, either capped (`decode_audio`: one clip, the rest never decoded) or in bounded chunks
(`stream_audio`: an hour-long interview never held whole).

ffmpeg (Debian's `ffmpeg`, which `make setup` installs) does the decoding, resampling and down-mixing. One clip is
decoded by the model's pipeline (`modeling_mer.pipeline_mer.decode_audio`, which travels with every saved model and
is re-exported here); streaming and probing, which only the commands need, are written here on the same command.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from modeling_mer.pipeline_mer import (
    AudioError,
    FFmpegMissingError,
    check_audio_file,
    decode_audio,
    ffmpeg_decoder,
    ffmpeg_executable,
    ffmpeg_failure,
    file_location,
)

__all__ = ["AudioError", "FFmpegMissingError", "audio_duration", "check_audio_file", "decode_audio", "stream_audio"]

_BYTES_PER_SAMPLE = 4  # float32


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
        location = file_location(path)
        process = subprocess.Popen(ffmpeg_decoder(location, sampling_rate), stdout=subprocess.PIPE, stderr=stderr)
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
            raise ffmpeg_failure(f"'{path}'", location, stderr.read())


def audio_duration(path: str | Path) -> float | None:
    """The file's duration in seconds as its container states it (cheap: nothing is decoded), or None when the
    container does not say or the file is not audio."""
    command = [
        ffmpeg_executable("ffprobe"), "-v", "error", "-show_entries", "format=duration", "-of", "json",
        file_location(path),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        return None
    try:
        return float(json.loads(result.stdout)["format"]["duration"])
    except (KeyError, TypeError, ValueError):
        return None
