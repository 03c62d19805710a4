"""The Gradio Space (space/): the prediction function and the long-recording timeline on good and bad input, the app
served on 127.0.0.1 and called through gradio_client and through Chromium, the Space card, and what deploy.py uploads.

Everything runs offline: a tiny MER model and a tiny character-level CTC model (standing in for Whisper) are built
from configs and saved to a temporary directory; the example clips are spoken by espeak-ng, and the long recording is
made of the synthetic corpus's utterances with known pauses.
"""

from __future__ import annotations

import ast
import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas
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
from example_clips import EXAMPLES, make_example_clips  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from huggingface_hub import SpaceCard  # noqa: E402
from huggingface_hub.errors import RepositoryNotFoundError  # noqa: E402
from recognizer import EmotionRecognizer, InputError  # noqa: E402

from dataset_scripts.long_recording import LongRecording, build_long_recording  # noqa: E402
from mer.timeline import Timeline  # noqa: E402
from modeling_mer import asr_mer  # noqa: E402

# gradio's queue calls a pandas option that pandas 3 deprecates; not ours to fix. (Older pandas lacks the warning
# class, and naming a missing class in a filter stops the whole test session.)
PANDAS_4_WARNING = hasattr(pandas.errors, "Pandas4Warning")
pytestmark = [pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")] if PANDAS_4_WARNING else []
MAX_SECONDS = 3.0  # a short limit, so cropping is tested with a short clip
MAX_TIMELINE_MINUTES = 1.0  # a short limit, so refusing a long recording is tested with a short one


# --- fixtures -----------------------------------------------------------------------------------------------------
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
        server_port=_free_port(),
        prevent_thread_lock=True,
        quiet=True,
        max_file_size=space_app.MAX_UPLOAD_SIZE,
    )
    yield url, demo
    demo.close()


@pytest.fixture(scope="module")
def client(served) -> Client:
    return Client(served[0], verbose=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _write(path: Path, wave: np.ndarray, rate: int, subtype: str = "PCM_16") -> Path:
    sf.write(path, wave, rate, subtype=subtype)
    return path


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _convert(source: Path, target: Path, *ffmpeg_args: str) -> Path:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(source), *ffmpeg_args, str(target)], check=True
    )
    return target


def _speech(clips, seconds: float | None = None) -> np.ndarray:
    """The happy clip at its native rate (22.05 kHz), tiled to `seconds` when given."""
    wave, rate = sf.read(clips["happy"], dtype="float32")
    return wave if seconds is None else np.resize(wave, int(seconds * rate))


# --- the prediction function --------------------------------------------------------------------------------------
def test_typed_transcript_is_read_and_every_class_gets_a_probability(recognizer, clips):
    analysis = recognizer.analyse(str(clips["happy"]), "  what a wonderful party!\n")

    assert list(analysis.probabilities) == ["neutral", "happy", "angry", "sad"]
    assert sum(analysis.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert all(0.0 < p < 1.0 for p in analysis.probabilities.values())
    assert analysis.transcript == "what a wonderful party!"
    assert analysis.transcribed_by is None
    assert analysis.tokens == ["[CLS]", "what", "a", "wonderful", "party", "!", "[SEP]"]
    assert analysis.notices == []


def test_attention_covers_every_word_and_every_moment_of_the_audio(recognizer, clips):
    analysis = recognizer.analyse(str(clips["neutral"]), "the meeting starts at ten on monday.")
    assert set(analysis.attentions) == {"words → audio", "audio → words"}  # the tiny model fuses both ways
    for weights in analysis.attentions.values():
        assert weights.shape[0] == len(analysis.tokens)
        assert abs(weights.shape[1] * analysis.frame_seconds - analysis.seconds) < 0.03  # the whole clip, 50 frames/s
    np.testing.assert_allclose(analysis.attentions["words → audio"].sum(axis=1), 1.0, rtol=1e-4)
    np.testing.assert_allclose(analysis.attentions["audio → words"].sum(axis=0), 1.0, rtol=1e-4)

    picture = attention_image(analysis)
    assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
    assert picture.shape[1] == 900 and picture.shape[0] > 400
    assert picture.std() > 10  # drawn, not blank


def test_any_common_format_rate_and_channel_layout_is_heard_the_same(recognizer, clips, tmp_path):
    reference = recognizer.analyse(str(clips["happy"]), "what a wonderful party!")  # 22.05 kHz mono int16
    wave, rate = sf.read(clips["happy"], dtype="float32")
    stereo = _convert(
        _write(tmp_path / "stereo.wav", np.stack([wave, wave], axis=1), rate), tmp_path / "44k.wav", "-ar", "44100"
    )
    variants = {
        "wav 44.1 kHz stereo": stereo,
        "flac 48 kHz stereo 24-bit": _convert(stereo, tmp_path / "clip.flac", "-ar", "48000", "-sample_fmt", "s32"),
        "wav 16 kHz float mono": _convert(
            stereo, tmp_path / "f32.wav", "-ar", "16000", "-ac", "1", "-c:a", "pcm_f32le"
        ),
        "ogg vorbis": _convert(stereo, tmp_path / "clip.ogg", "-c:a", "libvorbis"),
        "mp3": _convert(stereo, tmp_path / "clip.mp3"),
    }
    for name, path in variants.items():
        analysis = recognizer.analyse(str(path), "what a wonderful party!")
        assert analysis.seconds == pytest.approx(reference.seconds, abs=0.06), name
        # The same sound, not channels read as time or a wrong rate (lossy codecs add a little delay).
        assert _best_correlation(reference.waveform, analysis.waveform) > 0.9, name


def _best_correlation(reference: np.ndarray, other: np.ndarray, max_shift: int = 1600) -> float:
    """Highest correlation of `other` with `reference` over delays of up to `max_shift / 2` samples either way."""
    length = min(len(reference), len(other)) - max_shift
    window = reference[max_shift // 2 : max_shift // 2 + length]
    products = np.correlate(other[: length + max_shift - 1], window, mode="valid")  # one per delay
    cumulative = np.concatenate([[0.0], np.cumsum(np.square(other, dtype=np.float64))])
    energies = cumulative[length : length + max_shift] - cumulative[:max_shift]  # of each compared segment
    return float(np.max(products / np.sqrt(energies * np.sum(np.square(window)))))


def test_without_a_transcript_the_speech_is_transcribed_once_loaded_and_the_transcript_shown(
    models, clips, tmp_path, monkeypatch
):
    from transformers import pipeline

    loads = []

    def counting_pipeline(*args, **kwargs):
        loads.append(kwargs.get("model"))
        return pipeline(*args, **kwargs)

    monkeypatch.setattr(asr_mer, "transformers_pipeline", counting_pipeline)  # what the shared SpeechRecognizer loads
    recognizer = EmotionRecognizer(models[0], asr_model=models[1])

    recognizer.analyse(str(clips["sad"]), "i am so sorry about the letter.")
    assert loads == []  # a typed transcript never loads speech recognition

    analysis = recognizer.analyse(str(clips["sad"]), "   ")
    expected = pipeline("automatic-speech-recognition", model=models[1])(
        {"raw": analysis.waveform, "sampling_rate": 16000}
    )["text"]
    assert analysis.transcript == " ".join(expected.split()) and expected  # the transcript shown is the one read
    assert analysis.transcribed_by == models[1]
    assert analysis.tokens[0] == "[CLS]" and len(analysis.tokens) > 2

    recognizer.analyse(str(clips["angry"]), None)
    short = _write(tmp_path / "short.wav", _speech(clips), 22050)
    recognizer.timeline(str(short), tmp_path / "timeline")
    assert loads == [models[1]]  # loaded once, on the first request that needed it, and shared by the timeline
    assert recognizer.speech_recognizer() is recognizer.pipeline.speech_recognizer()


def test_without_words_the_notice_says_what_an_audio_only_prediction_of_this_model_is_worth(
    models, clips, tmp_path, monkeypatch
):
    monkeypatch.setattr(asr_mer.SpeechRecognizer, "transcribe", lambda self, waveform: "")
    unmeasured = EmotionRecognizer(models[0], asr_model=models[1]).analyse(str(clips["sad"]), "")
    assert any("never measured" in notice and "chance is 25%" in notice for notice in unmeasured.notices)

    measured_dir = tmp_path / "measured"
    shutil.copytree(models[0], measured_dir)
    config = json.loads((measured_dir / "config.json").read_text())
    config["evaluation"] = {
        "evaluated_on": "fold session1 of IEMOCAP",
        "test": {"wa": 0.8, "ua": 0.79, "num_examples": 1085},
        "test_audio_only": {"wa": 0.52, "ua": 0.48, "num_examples": 1085},
    }
    (measured_dir / "config.json").write_text(json.dumps(config))
    analysis = EmotionRecognizer(str(measured_dir), asr_model=models[1]).analyse(str(clips["sad"]), "")
    assert analysis.transcript == ""
    assert any(
        "predicted from the audio alone" in notice
        and "was 48%, against 79% with words and 25% by chance" in notice
        and "fold session1 of IEMOCAP" in notice
        for notice in analysis.notices
    ), analysis.notices


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: None, "No audio"),
        (lambda tmp: tmp / "missing.wav", "Could not read 'missing.wav' as audio"),
        (lambda tmp: _bytes(tmp / "notes.wav", b"not audio"), "Could not read 'notes.wav'"),
        (lambda tmp: _write(tmp / "empty.wav", np.zeros(0, np.int16), 16000), "empty"),
        (lambda tmp: _write(tmp / "zeros.wav", np.zeros(16000, np.int16), 16000), r"silent \(level -inf dBFS"),
        (
            lambda tmp: _write(tmp / "hiss.wav", 1e-4 * np.random.default_rng(0).standard_normal(16000), 16000),
            "silent",
        ),
        (lambda tmp: _write(tmp / "click.wav", 0.5 * np.ones((300, 2)), 44100), r"too short \(7 ms\).*at least 22 ms"),
    ],
    ids=["none", "missing", "not-audio", "empty", "digital-silence", "quiet-hiss", "too-short"],
)
def test_bad_audio_is_refused_with_a_message_for_the_user(recognizer, tmp_path, make, message):
    with pytest.raises(InputError, match=message) as error:
        recognizer.analyse(make(tmp_path), "hello")
    assert str(tmp_path) not in str(error.value)  # no server paths in what the user reads


def test_a_transcript_over_the_limit_is_refused(recognizer, clips):
    with pytest.raises(InputError, match="2001 characters; at most 2000"):
        recognizer.analyse(str(clips["happy"]), "a" * 2001)


def test_a_transcript_longer_than_the_text_encoder_reads_is_cut_with_a_notice(recognizer, clips):
    analysis = recognizer.analyse(str(clips["happy"]), "what a wonderful party! " * 60)  # 300 tokens

    assert len(analysis.tokens) == 128  # the tiny BERT's positions
    assert analysis.notices == ["The transcript is longer than the model reads: only its first 128 tokens were used."]


def test_a_recording_over_the_limit_is_cropped_with_a_notice(recognizer, clips, tmp_path):
    long_clip = _write(tmp_path / "long.wav", _speech(clips, seconds=MAX_SECONDS + 2.5), 22050)

    analysis = recognizer.analyse(str(long_clip), "what a wonderful party!")

    assert analysis.seconds == pytest.approx(MAX_SECONDS)
    assert analysis.notices == ["The recording is longer than 3 s: only its first 3 s were analysed."]


def test_a_whisper_tower_model_is_served_up_to_its_30_second_window(
    models, tiny_whisper, tiny_encoders, clips, tmp_path
):
    from modeling_mer import MERModel, MERProcessor
    from modeling_mer.pipeline_mer import save_with_pipeline

    model_dir = tmp_path / "whisper-mer"
    save_with_pipeline(
        MERModel.from_audio_text_pretrained(tiny_whisper, tiny_encoders[1], fusion_hidden_size=16),
        MERProcessor.from_audio_text_pretrained(tiny_whisper, tiny_encoders[1]),
        model_dir,
    )
    long_clip = _write(tmp_path / "long.wav", _speech(clips, seconds=33.0), 22050)

    analysis = EmotionRecognizer(str(model_dir), asr_model=models[1]).analyse(str(long_clip), "what a wonderful day")

    assert analysis.seconds == pytest.approx(30.0)
    assert analysis.notices == ["The recording is longer than 30 s: only its first 30 s were analysed."]
    assert sum(analysis.probabilities.values()) == pytest.approx(1.0)
    assert {weights.shape[1] for weights in analysis.attentions.values()} == {1500}  # 50 frames/s over 30 s
    assert analysis.frame_seconds == pytest.approx(0.02)


@pytest.mark.parametrize("runtime", ["eager", "int8"])
def test_the_pipeline_the_commands_and_the_space_give_one_answer_on_one_clip(models, clips, tmp_path, runtime):
    """One door: the Space, `mer predict` and (on the eager runtime, the only one a model's own files hold) the
    one-liner on the model's own copy of the pipeline classify the same clip and words through the same code."""
    from transformers import pipeline

    from mer.cli import main
    from modeling_mer.pipeline_mer import PIPELINE_TASK

    clip, words = clips["angry"], "how dare you say that to me"
    space = EmotionRecognizer(models[0], asr_model=models[1], runtime=runtime).analyse(str(clip), words)
    (tmp_path / "words.csv").write_text(f"path,transcript\n{clip},{words}\n")
    output = tmp_path / "predictions.csv"
    status = main(["predict", str(clip), "--model", models[0], "--runtime", runtime, "--output", str(output),
                   "--transcripts", str(tmp_path / "words.csv"), "--quiet"])  # fmt: skip
    assert status == 0
    with output.open(newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["transcript_source"] == "given" and row["runtime"] == runtime
    answers = {"space": space.probabilities, "mer predict": {k: float(row[f"score_{k}"]) for k in space.probabilities}}
    if runtime == "eager":
        one_liner = pipeline(PIPELINE_TASK, model=models[0], trust_remote_code=True, device="cpu")
        answers["pipeline"] = {item["label"]: item["score"] for item in one_liner(str(clip), text=words)["labels"]}
    for name, answer in answers.items():
        assert answer == pytest.approx(space.probabilities, abs=1e-6), name
    assert max(space.probabilities.values()) - min(space.probabilities.values()) > 1e-3  # answers that can differ


def test_example_clips_are_spoken_by_espeak_and_each_can_be_analysed(recognizer, clips):
    assert sorted(clips) == sorted(clip.name for clip in EXAMPLES) == ["angry", "happy", "neutral", "sad"]
    for clip in EXAMPLES:
        info = sf.info(clips[clip.name])
        assert info.samplerate == 22050 and info.channels == 1 and 0.5 < info.duration < 4
        assert recognizer.analyse(str(clips[clip.name]), clip.text).transcript == clip.text


def test_settings_come_from_the_environment_only():
    assert space_app.Settings.from_env({}) == space_app.Settings(
        model=space_app.DEFAULT_MODEL,
        asr_model="openai/whisper-small.en",
        max_seconds=60.0,
        concurrency_limit=1,
        max_timeline_minutes=30.0,
    )
    settings = space_app.Settings.from_env(
        {
            "MER_MODEL": "runs/demo",
            "MER_ASR_MODEL": "asr",
            "MER_MAX_SECONDS": "12.5",
            "MER_CONCURRENCY": "2",
            "MER_MAX_TIMELINE_MINUTES": "90",
            "MER_RUNTIME": "eager",
            "MER_MODEL_REVISION": "0a1b2c3",
        }
    )
    assert settings == space_app.Settings("runs/demo", "asr", 12.5, 2, 90.0, "eager", revision="0a1b2c3")
    with pytest.raises(ValueError, match="MER_MAX_SECONDS must be a positive float, got '-1'"):
        space_app.Settings.from_env({"MER_MAX_SECONDS": "-1"})
    with pytest.raises(ValueError, match="MER_CONCURRENCY must be a positive int, got 'two'"):
        space_app.Settings.from_env({"MER_CONCURRENCY": "two"})
    with pytest.raises(ValueError, match="MER_MAX_TIMELINE_MINUTES must be a positive float, got '0'"):
        space_app.Settings.from_env({"MER_MAX_TIMELINE_MINUTES": "0"})


def test_on_a_cpu_the_model_runs_int8_with_the_answers_of_eager(recognizer, models, clips):
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    assert recognizer.runtime == "int8"
    assert any(isinstance(module, DynamicQuantizedLinear) for module in recognizer.model.modules())
    eager = EmotionRecognizer(models[0], asr_model=models[1], max_seconds=MAX_SECONDS, runtime="eager")
    for name, clip in clips.items():
        expected = eager.analyse(str(clip), name).probabilities
        got = recognizer.analyse(str(clip), name).probabilities
        assert max(got, key=got.get) == max(expected, key=expected.get)
    with pytest.raises(ValueError, match="not 'onnx'"):
        EmotionRecognizer(models[0], asr_model=models[1], runtime="onnx")


# --- the long-recording timeline ----------------------------------------------------------------------------------
def test_a_long_recording_becomes_a_timeline_of_its_speech_segments(long_recording, long_timeline):
    from PIL import Image

    timeline, out_dir = long_timeline
    segments = timeline.segments
    assert 40 < long_recording.duration < 60 and timeline.duration_seconds == pytest.approx(long_recording.duration)
    assert segments and all(a.end <= b.start for a, b in zip(segments, segments[1:], strict=False))  # in time order
    assert 0 <= segments[0].start and segments[-1].end <= long_recording.duration
    for utterance in long_recording.utterances:  # every utterance's middle lies in a segment, at the right time
        middle = (utterance.start + utterance.end) / 2
        assert any(s.start <= middle <= s.end for s in segments), (utterance, segments)
    assert {segment.transcript_source for segment in segments} == {"asr"}
    assert all(segment.label in timeline.labels for segment in segments)

    rows = space_app.timeline_table(timeline)
    assert len(rows) == len(segments)
    assert [row[:4] for row in rows] == [[s.start, s.end, s.transcript, s.label] for s in segments]
    with (out_dir / "timeline.csv").open(newline="", encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) == len(segments)
    with Image.open(out_dir / "timeline.png") as picture:
        assert picture.format == "PNG" and picture.width > 800 and np.asarray(picture.convert("L")).std() > 10
    assert timeline.summary().startswith(f"{len(segments)} speech segments ")
    assert timeline.recording == "meeting.wav"  # the file's name, no server folders


def test_a_recording_without_speech_gives_an_empty_timeline_not_an_error(recognizer, tmp_path):
    noise = 10 ** (-60 / 20) * np.random.default_rng(0).standard_normal(8 * 16000)  # a quiet room, nobody speaking
    timeline = recognizer.timeline(str(_write(tmp_path / "room.wav", noise, 16000)), tmp_path / "out")

    assert timeline.segments == [] and space_app.timeline_table(timeline) == []
    assert timeline.summary() == "No speech was found in room.wav (8.0 s): the timeline is empty."


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: None, "No audio: record with the microphone or upload a file"),
        (lambda tmp: tmp / "missing.wav", r"Could not read 'missing.wav' as audio \(no such file\)"),
        (lambda tmp: _bytes(tmp / "notes.mp3", b"not audio"), "Could not read 'notes.mp3' as audio"),
        (
            lambda tmp: _write(tmp / "long.wav", np.zeros(8000 * 75, np.int16), 8000),
            "The recording lasts 1.2 minutes; the timeline takes at most 1 minute",
        ),
    ],
    ids=["no-audio", "missing", "not-audio", "too-long"],
)
def test_the_timeline_refuses_what_it_cannot_take_with_a_message_for_the_user(recognizer, tmp_path, make, message):
    with pytest.raises(InputError, match=message) as error:
        recognizer.timeline(make(tmp_path), tmp_path / "out")
    assert str(tmp_path) not in str(error.value)


@pytest.mark.parametrize("header_says", [None, 30.0], ids=["header-silent", "header-lies"])
def test_a_too_long_recording_whose_header_does_not_say_or_lies_is_refused_from_its_samples(
    recognizer, tmp_path, monkeypatch, header_says
):
    monkeypatch.setattr(space_recognizer, "audio_duration", lambda path: header_says)  # a raw stream, a forged mp3
    long_file = _write(tmp_path / "long.wav", np.zeros(8000 * 75, np.int16), 8000)
    with pytest.raises(
        InputError, match="The recording lasts more than 1 minute; the timeline takes at most 1 minute"
    ):
        recognizer.timeline(str(long_file), tmp_path / "out")  # counted up to the limit, not to its end
    short_file = _write(tmp_path / "short.wav", np.zeros(8000 * 5, np.int16), 8000)
    assert recognizer.timeline(str(short_file), tmp_path / "out").duration_seconds == pytest.approx(5.0)


# --- the app, served and called through gradio_client ------------------------------------------------------------
def test_the_api_returns_the_label_distribution(client, recognizer, clips):
    result = client.predict(handle_file(str(clips["angry"])), "i really hate this awful job.", api_name="/predict")

    direct = recognizer.analyse(str(clips["angry"]), "i really hate this awful job.").probabilities
    assert result["label"] == max(direct, key=direct.get)
    assert {c["label"]: c["confidence"] for c in result["confidences"]} == pytest.approx(direct, abs=1e-6)
    # The caller gives audio and a transcript; nothing chooses the model.
    parameters = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/predict"]["parameters"]
    assert [p["parameter_name"] for p in parameters] == ["audio_path", "transcript"]


def test_the_ui_endpoint_returns_distribution_transcript_picture_and_notices(client, models, clips, tmp_path):
    from PIL import Image

    long_clip = _write(tmp_path / "long.wav", _speech(clips, seconds=MAX_SECONDS + 1), 22050)

    label, transcript, picture, details = client.predict(handle_file(str(long_clip)), "", api_name="/analyse")

    assert {c["label"] for c in label["confidences"]} == {"neutral", "happy", "angry", "sad"}
    assert transcript  # the tiny CTC model's (nonsense) transcript, shown because none was typed
    assert f"transcribed by `{models[1]}`" in details
    assert "only its first 3 s were analysed" in details
    with Image.open(picture) as image:
        assert image.format == "PNG" and image.width == 900 and image.height > 400


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: None, "No audio: record with the microphone or upload a file"),
        (lambda tmp: _write(tmp / "zeros.wav", np.zeros(8000, np.int16), 16000), "The recording is silent"),
        (lambda tmp: _write(tmp / "click.wav", np.ones(100, np.float32), 16000), "The recording is too short"),
        (lambda tmp: _bytes(tmp / "x.wav", b"RIFF....WAVEjunk"), "Could not read 'x.wav'"),
    ],
    ids=["no-audio", "silent", "too-short", "unreadable"],
)
def test_bad_input_reaches_the_client_as_a_readable_error_and_the_app_keeps_serving(
    client, clips, tmp_path, make, message
):
    path = make(tmp_path)
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(str(path)) if path else None, "hello", api_name="/predict")
    assert client.predict(handle_file(str(clips["sad"])), "hello", api_name="/predict")["label"]


def test_an_unexpected_failure_reaches_the_client_as_a_readable_error(client, recognizer, clips, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory at 0x7f...")

    monkeypatch.setattr(recognizer.pipeline, "_forward", broken)
    with pytest.raises(AppError, match="Something went wrong while analysing this recording") as error:
        client.predict(handle_file(str(clips["happy"])), "hello", api_name="/predict")
    assert "CUDA" not in str(error.value)


def test_simultaneous_requests_wait_in_the_queue_instead_of_running_together(client, recognizer, clips, monkeypatch):
    running, most, lock = [0], [0], threading.Lock()
    analyse = recognizer.analyse

    def slow_analyse(*args, **kwargs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.3)
        try:
            return analyse(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(recognizer, "analyse", slow_analyse)
    jobs = [
        client.submit(handle_file(str(clips["happy"])), "hi", api_name=name) for name in ("/predict", "/analyse") * 2
    ]
    results = [job.result(timeout=60) for job in jobs]

    assert len(results) == 4 and most[0] == 1  # UI and API share one model slot (MER_CONCURRENCY=1)


def test_the_timeline_endpoint_returns_picture_table_csv_and_summary(client, long_recording, long_timeline):
    from PIL import Image

    expected, _ = long_timeline
    picture, table, csv_file, summary = client.predict(handle_file(str(long_recording.wav_path)), api_name="/timeline")

    assert table["headers"] == space_app.TIMELINE_COLUMNS
    assert len(table["data"]) == len(expected.segments)
    assert [row[:4] for row in table["data"]] == [row[:4] for row in space_app.timeline_table(expected)]
    assert [row[4] for row in table["data"]] == pytest.approx([s.score for s in expected.segments], abs=1e-3)
    with Image.open(picture) as image:
        assert image.format == "PNG"
    with open(csv_file, newline="", encoding="utf-8") as handle:
        assert [row["label"] for row in csv.DictReader(handle)] == [s.label for s in expected.segments]
    assert summary.startswith(f"{len(expected.segments)} speech segments ")
    parameters = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/timeline"]["parameters"]
    assert [p["parameter_name"] for p in parameters] == ["audio_path"]  # the progress tracker is no parameter


def test_the_timeline_endpoint_answers_silence_with_an_empty_table_and_refuses_a_long_recording(client, tmp_path):
    silence = _write(tmp_path / "silence.wav", np.zeros(5 * 16000, np.int16), 16000)
    picture, table, csv_file, summary = client.predict(handle_file(str(silence)), api_name="/timeline")
    assert (picture, table["data"], csv_file) == (None, [], None)
    assert summary == "No speech was found in silence.wav (5.0 s): the timeline is empty."

    too_long = _write(tmp_path / "long.wav", np.zeros(8000 * 75, np.int16), 8000)
    with pytest.raises(AppError, match="The recording lasts 1.2 minutes; the timeline takes at most 1 minute"):
        client.predict(handle_file(str(too_long)), api_name="/timeline")


# --- the Space folder and its deployment --------------------------------------------------------------------------
def test_the_space_card_and_requirements_pin_the_locked_versions_and_name_the_models():
    locked = locked_versions((REPO / "requirements.lock").read_text())
    card = SpaceCard.load(SPACE_DIR / "README.md").data
    assert (card.sdk, card.sdk_version, card.app_file) == ("gradio", str(locked["gradio"]), "app.py")
    assert card.models == [space_app.DEFAULT_MODEL, space_recognizer.DEFAULT_ASR_MODEL]
    assert card.title and len(card.short_description) <= 60
    pins = locked_versions((SPACE_DIR / "requirements.txt").read_text())
    assert {"torch", "transformers", "numpy", "matplotlib", "huggingface-hub"} <= set(pins)
    assert {"silero-vad", "onnxruntime", "faster-whisper", "tqdm"} <= set(pins)  # the timeline's, and fast ASR
    assert {name: version for name, version in pins.items() if locked.get(name) != version} == {}
    assert {"ffmpeg", "espeak-ng"} <= set((SPACE_DIR / "packages.txt").read_text().split())


PROJECT_PACKAGES = ("mer", "modeling_mer")  # what deploy.py may upload from outside space/


def _imported_files(path: Path) -> set[Path]:
    """The files of the Space's siblings and of `PROJECT_PACKAGES` that `path` imports anywhere in its code (inside
    functions too), with the `__init__.py` of every package on the way."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative to the file's own package
                package = path.parent.relative_to(REPO).parts
                module = ".".join([*package[: len(package) - node.level + 1], *([module] if module else [])])
            names.add(module)
            names |= {f"{module}.{alias.name}" for alias in node.names}  # `from mer import audio` imports a module
    files = set()
    for name in names:
        parts = name.split(".")
        if len(parts) == 1 and (SPACE_DIR / f"{name}.py").is_file():
            files.add(SPACE_DIR / f"{name}.py")
        elif parts[0] in PROJECT_PACKAGES:
            for depth in range(1, len(parts) + 1):
                for candidate in (
                    REPO.joinpath(*parts[:depth], "__init__.py"),
                    REPO.joinpath(*parts[:depth]).with_suffix(".py"),
                ):
                    if candidate.is_file():
                        files.add(candidate)
    return files


def _third_party_imports(path: Path) -> set[str]:
    """The top-level names of what `path` imports from outside the standard library, the Space and the project."""
    tree = ast.parse(path.read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and not node.level}
    tops = {name.split(".")[0] for name in names}
    siblings = {file.stem for file in SPACE_DIR.glob("*.py")}
    return tops - set(sys.stdlib_module_names) - siblings - set(PROJECT_PACKAGES) - {"__future__"}


def _uploaded_files() -> set[Path]:
    return {SPACE_DIR / name for name in space_deploy.APP_FILES} | {REPO / name for name in space_deploy.PROJECT_FILES}


def test_deploy_uploads_every_module_the_app_imports_and_only_those():
    uploaded = _uploaded_files()
    reached, todo = set(), [SPACE_DIR / "app.py"]
    while todo:  # everything the app imports, following imports through the project's modules
        path = todo.pop()
        for imported in _imported_files(path) - reached:
            assert imported in uploaded, f"{path.relative_to(REPO)} imports {imported.relative_to(REPO)}, not uploaded"
            reached.add(imported)
            todo.append(imported)
    assert {str(path.relative_to(REPO)) for path in reached if path.parent != SPACE_DIR} == set(
        space_deploy.PROJECT_FILES
    )  # no project module the app does not need
    assert {path for path in uploaded if path.suffix == ".py"} == reached | {SPACE_DIR / "app.py"}
    assert "dev_models.py" not in space_deploy.APP_FILES and "deploy.py" not in space_deploy.APP_FILES


def test_the_space_requirements_cover_what_the_uploaded_modules_import():
    from importlib.metadata import packages_distributions

    distributions = packages_distributions()
    pins = set(locked_versions((SPACE_DIR / "requirements.txt").read_text())) | {"gradio"}  # gradio: sdk_version
    for path in sorted(path for path in _uploaded_files() if path.suffix == ".py"):
        for name in _third_party_imports(path):
            names = {dist.lower().replace("_", "-") for dist in distributions.get(name, [name])}
            assert names & pins, f"{path.relative_to(REPO)} imports {name}, which space/requirements.txt lacks"


COMMITS = {None: "0123456789abcdef0123456789abcdef01234567", "v1.0": "fedcba9876543210fedcba9876543210fedcba98"}


class RecordingHfApi:
    """Stands in for `huggingface_hub.HfApi`: records every call, and the files of each uploaded folder."""

    def __init__(self, *args, **kwargs):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        folder = Path(kwargs["folder_path"])
        files = {
            path.relative_to(folder).as_posix(): path.read_text(encoding="utf-8")
            for path in folder.rglob("*")
            if path.is_file()
        }
        self.calls.append(("upload_folder", kwargs["repo_id"], {**kwargs, "files": files}))
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/spaces/{kwargs['repo_id']}/commit/1"})

    def add_space_variable(self, repo_id, key, value, **kwargs):
        self.calls.append(("add_space_variable", repo_id, {"key": key, "value": value}))

    def model_info(self, repo_id, revision=None, **kwargs):
        if repo_id.endswith("unpublished"):
            url = f"https://huggingface.co/api/models/{repo_id}"
            response = httpx.Response(404, request=httpx.Request("GET", url))
            raise RepositoryNotFoundError(f"404 Client Error: Repository Not Found for url: {url}", response=response)
        self.calls.append(("model_info", repo_id, {"revision": revision}))
        return type("ModelInfo", (), {"sha": COMMITS[revision]})  # the commit the revision is at


def test_deploy_creates_the_space_and_uploads_only_the_app(monkeypatch, capsys):
    api = RecordingHfApi()
    monkeypatch.setattr(space_deploy, "HfApi", lambda *args, **kwargs: api)

    space_deploy.main(["--space_id", "someone/mer-demo", "--model", "someone/mer-iemocap"])

    info, (create, _, create_kwargs), (upload, repo, upload_kwargs), *variables = api.calls
    assert info == ("model_info", "someone/mer-iemocap", {"revision": None})
    assert (create, create_kwargs) == (
        "create_repo",
        {"repo_type": "space", "space_sdk": "gradio", "private": False, "exist_ok": True},
    )
    assert (upload, repo, upload_kwargs["repo_type"]) == ("upload_folder", "someone/mer-demo", "space")
    files = upload_kwargs["files"]
    assert sorted(files) == sorted(space_deploy.APP_FILES + space_deploy.PROJECT_FILES)
    assert files["app.py"] == (SPACE_DIR / "app.py").read_text()
    assert files["mer/timeline.py"] == (REPO / "mer" / "timeline.py").read_text()  # under the repository's paths
    card = SpaceCard(upload_kwargs["files"]["README.md"]).data
    assert card.models == ["someone/mer-iemocap", "openai/whisper-small.en"] and card.sdk == "gradio"
    assert upload_kwargs["delete_patterns"] == ["*.py"]  # modules the app no longer has do not linger
    assert [kwargs for _, _, kwargs in variables] == [  # the model and the commit it is at now: pinned
        {"key": "MER_MODEL", "value": "someone/mer-iemocap"},
        {"key": "MER_MODEL_REVISION", "value": COMMITS[None]},
    ]
    assert "https://huggingface.co/spaces/someone/mer-demo" in capsys.readouterr().out


def test_deploy_pins_the_default_model_too_and_the_revision_asked_for(monkeypatch):
    api = RecordingHfApi()
    space_deploy.deploy("someone/mer-demo", api=api)
    default_model = SpaceCard.load(SPACE_DIR / "README.md").data.models[0]
    variables = {kwargs["key"]: kwargs["value"] for name, _, kwargs in api.calls if name == "add_space_variable"}
    assert variables == {"MER_MODEL": default_model, "MER_MODEL_REVISION": COMMITS[None]}

    api = RecordingHfApi()
    space_deploy.deploy("someone/mer-demo", model="someone/mer-iemocap", revision="v1.0", api=api)
    variables = {kwargs["key"]: kwargs["value"] for name, _, kwargs in api.calls if name == "add_space_variable"}
    assert variables["MER_MODEL_REVISION"] == COMMITS["v1.0"]  # a tag becomes its commit


def test_deploy_refuses_a_model_it_cannot_find_before_uploading_anything(monkeypatch, capsys):
    api = RecordingHfApi()
    monkeypatch.setattr(space_deploy, "HfApi", lambda *args, **kwargs: api)
    with pytest.raises(SystemExit):
        space_deploy.main(["--space_id", "someone/mer-demo", "--model", "someone/unpublished"])
    assert "Cannot pin the model someone/unpublished on the Hub (RepositoryNotFoundError" in capsys.readouterr().err
    assert api.calls == []


def test_deploy_refuses_a_local_model_directory(models, monkeypatch, capsys):
    api = RecordingHfApi()
    monkeypatch.setattr(space_deploy, "HfApi", lambda *args, **kwargs: api)
    with pytest.raises(SystemExit):
        space_deploy.main(["--space_id", "someone/mer-demo", "--model", models[0]])
    assert "is a local path; a Space loads its models from the Hub" in capsys.readouterr().err
    assert api.calls == []


# `python app.py` with the project's editable install out of reach, as on the Space: mer and modeling_mer can only
# come from beside app.py (the script's folder, first on sys.path; here the current directory).
_RUN_WITHOUT_THE_PROJECT = (
    "import runpy, sys; "
    "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in getattr(f, '__module__', '').lower()]; "
    "sys.argv = ['app.py']; runpy.run_path('app.py', run_name='__main__')"
)


def _uploaded_space(folder: Path) -> Path:
    """What deploy.py uploads, written out to `folder` (as the Space's repository holds it)."""
    api = RecordingHfApi()
    space_deploy.deploy("someone/mer-demo", api=api)
    (upload,) = [kwargs for name, _, kwargs in api.calls if name == "upload_folder"]
    for name, text in upload["files"].items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.mark.parametrize("layout", ["repository", "uploaded"])
def test_python_app_py_serves_the_model_named_by_mer_model_in_the_repository_and_as_uploaded(
    layout, models, clips, tmp_path
):
    if layout == "repository":  # `make space`: the project's modules come from its editable install
        command, cwd = [sys.executable, str(SPACE_DIR / "app.py")], REPO
    else:  # the Space: from the modules deploy.py uploads beside app.py, and nowhere else
        command, cwd = [sys.executable, "-c", _RUN_WITHOUT_THE_PROJECT], _uploaded_space(tmp_path / "space")
    port = _free_port()
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {
        **os.environ,
        "MER_MODEL": models[0],
        "MER_ASR_MODEL": models[1],
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "TMPDIR": str(temp),
    }
    log = tmp_path / "app.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=log_file)
        try:
            client = _connect(f"http://127.0.0.1:{port}/", process, log, timeout=120)
            result = client.predict(handle_file(str(clips["happy"])), "what a wonderful party!", api_name="/predict")
            assert {c["label"] for c in result["confidences"]} == {"neutral", "happy", "angry", "sad"}
            *_, summary = client.predict(handle_file(str(clips["happy"])), api_name="/timeline")  # VAD, ASR, plot
            assert summary.startswith("1 speech segments")
            assert list(temp.glob("mer-space-*/timelines/*/timeline.png"))  # while it serves, its files are kept
        finally:
            process.terminate()  # SIGTERM, as a Space is stopped
            process.wait(timeout=30)
    assert f"Loaded {models[0]}" in log.read_text()
    assert not list(temp.glob("mer-*")), "the app left its folders behind when it stopped"


def _connect(url: str, process: subprocess.Popen, log: Path, timeout: float) -> Client:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the app exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            return Client(url, verbose=False)
        except Exception:  # not listening yet
            time.sleep(0.5)
    raise AssertionError(f"the app did not answer at {url} within {timeout} s: {log.read_text()[-2000:]}")


# --- the app in a real browser (Debian's Chromium, headless) ------------------------------------------------------
@pytest.fixture(scope="module")
def page(served):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: install the Debian package chromium (make setup)")
    from playwright.sync_api import sync_playwright

    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        page = browser.new_page(viewport={"width": 1280, "height": 1200})
        page.set_default_timeout(30_000)
        yield page
        browser.close()


def test_in_the_browser_upload_type_submit_and_read_the_emotion_and_the_attention_picture(
    page, served, recognizer, clips
):
    text = "i really hate this awful job."
    page.goto(served[0])
    page.locator("#audio-input input[type=file]").set_input_files(str(clips["angry"]))
    page.locator('#audio-input [data-testid="download-link"][href$="angry.wav"]').wait_for()  # uploaded
    page.locator("#transcript-input textarea").fill(text)
    page.locator("#submit").click()

    shown = page.locator('#emotion-output [data-testid="label-output-value"]')
    shown.wait_for()
    expected = recognizer.analyse(str(clips["angry"]), text).probabilities
    assert shown.inner_text() == max(expected, key=expected.get)
    names = page.locator("#emotion-output dt").all_inner_texts()
    percents = page.locator("#emotion-output dd").all_inner_texts()
    assert dict(zip(names, percents, strict=True)) == {name: f"{round(100 * p)}%" for name, p in expected.items()}
    assert page.locator("#transcript-output textarea").input_value() == text
    assert "transcript typed" in page.locator("#details-output").inner_text()

    picture = page.locator("#attention-output img")
    picture.scroll_into_view_if_needed()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=picture.element_handle())
    assert picture.evaluate("img => [img.naturalWidth, img.naturalHeight]")[0] == 900
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)


def test_in_the_browser_submitting_without_audio_shows_a_readable_error(page, served):
    page.goto(served[0])
    page.locator("#transcript-input textarea").fill("hello")
    page.locator("#submit").click()

    toast = page.locator('[data-testid="toast-body"].error [data-testid="toast-text"]')
    assert toast.inner_text() == "No audio: record with the microphone or upload a file, then submit."
    assert "Traceback" not in page.content()


def test_in_the_browser_a_long_recording_becomes_a_timeline_picture_and_table(
    page, served, long_recording, long_timeline
):
    expected, _ = long_timeline
    page.goto(served[0])
    page.get_by_role("tab", name="Long recording").click()
    page.locator("#timeline-audio-input input[type=file]").set_input_files(str(long_recording.wav_path))
    page.locator('#timeline-audio-input [data-testid="download-link"][href$="meeting.wav"]').wait_for()  # uploaded
    page.locator("#timeline-submit").click()

    picture = page.locator("#timeline-picture img")
    picture.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=picture.element_handle())
    assert picture.evaluate("img => img.naturalWidth") > 800
    grid = page.locator('#timeline-table [role="grid"]')
    assert grid.get_attribute("aria-rowcount") == str(len(expected.segments) + 1)  # the header and one per segment
    first = page.locator('#timeline-table [role="row"][aria-rowindex="2"] [role="gridcell"]').all_inner_texts()
    assert [cell.strip() for cell in first[:4]] == [
        f"{expected.segments[0].start:g}",
        f"{expected.segments[0].end:g}",
        expected.segments[0].transcript,
        expected.segments[0].label,
    ]
    assert page.locator("#timeline-summary").inner_text().startswith(f"{len(expected.segments)} speech segments ")
    assert page.locator('#timeline-csv [data-testid="download-link"]').get_attribute("download") == "timeline.csv"
    page.screenshot(path=str(SCREENSHOT.with_name("space-timeline-screenshot.png")), full_page=True)
