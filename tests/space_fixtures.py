"""The Space's test fixtures: a tiny MER model and a tiny character-level CTC model (standing in for Whisper)
built from configs, the recognizer on them, the app's example clips (spoken by espeak-ng), a long recording of
the synthetic corpus's utterances with known pauses, and the app served on 127.0.0.1. Everything runs offline.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
SPACE_DIR = REPO / "space"
SCREENSHOT = REPO / "artifacts" / "space-screenshot.png"
CHROMIUM = "/usr/bin/chromium"
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry calls from tests (there is no network)
sys.path.insert(0, str(SPACE_DIR))
sys.path.insert(0, str(REPO / "scripts"))

import app as space_app  # noqa: E402
import deploy as space_deploy  # noqa: E402
import recognizer as space_recognizer  # noqa: E402
from attention_plot import attention_image  # noqa: E402
from check_lock import locked_versions  # noqa: E402
from dev_models import save_tiny_asr, save_tiny_mer  # noqa: E402
from dimension_plot import dimension_image  # noqa: E402
from example_clips import EXAMPLES, make_example_clips  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from huggingface_hub import SpaceCard  # noqa: E402
from huggingface_hub.errors import RepositoryNotFoundError  # noqa: E402
from recognizer import EmotionRecognizer, InputError  # noqa: E402

from dataset_scripts.long_recording import LongRecording, build_long_recording  # noqa: E402
from mer.serving.timeline import Timeline  # noqa: E402
from modeling_mer import asr_mer  # noqa: E402

__all__ = [
    "AppError",
    "CHROMIUM",
    "Client",
    "EXAMPLES",
    "EmotionRecognizer",
    "InputError",
    "LongRecording",
    "MAX_SECONDS",
    "MAX_TIMELINE_MINUTES",
    "REPO",
    "RepositoryNotFoundError",
    "SCREENSHOT",
    "SPACE_DIR",
    "SpaceCard",
    "Timeline",
    "asr_mer",
    "attention_image",
    "build_long_recording",
    "convert_audio",
    "dimension_image",
    "free_port",
    "handle_file",
    "happy_speech",
    "locked_versions",
    "make_example_clips",
    "save_tiny_asr",
    "save_tiny_mer",
    "space_app",
    "space_deploy",
    "space_recognizer",
    "write_audio",
    "write_bytes",
]

MAX_SECONDS = 3.0  # a short limit, so cropping is tested with a short clip
MAX_TIMELINE_MINUTES = 1.0  # a short limit, so refusing a long recording is tested with a short one


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[str, str]:
    """(mer_dir, asr_dir): a tiny saved MER model and a tiny saved speech-recognition model."""
    root = tmp_path_factory.mktemp("space-models")
    return str(save_tiny_mer(root / "mer")), str(save_tiny_asr(root / "asr"))


@pytest.fixture(scope="module")
def recognizer(models) -> EmotionRecognizer:
    return EmotionRecognizer(
        models[0], asr_model=models[1], max_seconds=MAX_SECONDS, max_timeline_minutes=MAX_TIMELINE_MINUTES
    )


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """The app's example clips (espeak-ng, 22.05 kHz mono), by emotion name."""
    rows = make_example_clips(tmp_path_factory.mktemp("clips"))
    return {Path(path).stem: Path(path) for path, _ in rows}


@pytest.fixture(scope="module")
def long_recording(synthetic_corpus, tmp_path_factory) -> LongRecording:
    """About 45 s of corpus utterances (16 kHz wav) with pauses of 0.6-2.5 s over a -60 dBFS noise floor."""
    return build_long_recording(synthetic_corpus, tmp_path_factory.mktemp("long") / "meeting.wav", minutes=0.7)


@pytest.fixture(scope="module")
def long_timeline(recognizer, long_recording, tmp_path_factory) -> tuple[Timeline, Path]:
    """`(timeline, out_dir)`: the timeline of `long_recording`, made by calling the recognizer directly."""
    out_dir = tmp_path_factory.mktemp("timeline")
    return recognizer.timeline(str(long_recording.wav_path), out_dir), out_dir


@pytest.fixture(scope="module")
def served(recognizer, tmp_path_factory):
    """The app launched on 127.0.0.1 at a free port: yields `(url, demo)`."""
    demo = space_app.build_demo(recognizer, examples_dir=tmp_path_factory.mktemp("served-examples"))
    _, url, _ = demo.launch(
        server_name="127.0.0.1",
        server_port=free_port(),
        prevent_thread_lock=True,
        quiet=True,
        max_file_size=space_app.MAX_UPLOAD_SIZE,
    )
    yield url, demo
    demo.close()


@pytest.fixture(scope="module")
def client(served) -> Client:
    return Client(served[0], verbose=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_audio(path: Path, wave: np.ndarray, rate: int, subtype: str = "PCM_16") -> Path:
    sf.write(path, wave, rate, subtype=subtype)
    return path


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def convert_audio(source: Path, target: Path, *ffmpeg_args: str) -> Path:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(source), *ffmpeg_args, str(target)], check=True
    )
    return target


def happy_speech(clips, seconds: float | None = None) -> np.ndarray:
    """The happy clip at its native rate (22.05 kHz), tiled to `seconds` when given."""
    wave, rate = sf.read(clips["happy"], dtype="float32")
    return wave if seconds is None else np.resize(wave, int(seconds * rate))
