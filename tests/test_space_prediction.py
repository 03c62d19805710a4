"""The Space's prediction function on good and bad input: one utterance, with its transcript or transcribed,
its attention picture, and its agreement with the commands.
"""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pandas
import pytest
import soundfile as sf
from space_fixtures import (
    EXAMPLES,
    MAX_SECONDS,
    EmotionRecognizer,
    InputError,
    asr_mer,
    attention_image,
    convert_audio,
    dimension_image,
    happy_speech,
    save_tiny_mer,
    space_app,
    write_audio,
    write_bytes,
)

pytest_plugins = ("space_fixtures",)  # its fixtures: models, recognizer, clips, the served app
# gradio's queue calls a pandas option that pandas 3 deprecates; not ours to fix. (Older pandas lacks the warning
# class, and naming a missing class in a filter stops the whole test session.)
PANDAS_4_WARNING = hasattr(pandas.errors, "Pandas4Warning")
pytestmark = [pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")] if PANDAS_4_WARNING else []


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
    two_channels = write_audio(tmp_path / "stereo.wav", np.stack([wave, wave], axis=1), rate)
    stereo = convert_audio(two_channels, tmp_path / "44k.wav", "-ar", "44100")
    variants = {
        "wav 44.1 kHz stereo": stereo,
        "flac 48 kHz stereo 24-bit": convert_audio(
            stereo, tmp_path / "clip.flac", "-ar", "48000", "-sample_fmt", "s32"
        ),
        "wav 16 kHz float mono": convert_audio(
            stereo, tmp_path / "f32.wav", "-ar", "16000", "-ac", "1", "-c:a", "pcm_f32le"
        ),
        "ogg vorbis": convert_audio(stereo, tmp_path / "clip.ogg", "-c:a", "libvorbis"),
        "mp3": convert_audio(stereo, tmp_path / "clip.mp3"),
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
    short = write_audio(tmp_path / "short.wav", happy_speech(clips), 22050)
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
        (lambda tmp: write_bytes(tmp / "notes.wav", b"not audio"), "Could not read 'notes.wav'"),
        (lambda tmp: write_audio(tmp / "empty.wav", np.zeros(0, np.int16), 16000), "empty"),
        (lambda tmp: write_audio(tmp / "zeros.wav", np.zeros(16000, np.int16), 16000), r"silent \(level -inf dBFS"),
        (
            lambda tmp: write_audio(tmp / "hiss.wav", 1e-4 * np.random.default_rng(0).standard_normal(16000), 16000),
            "silent",
        ),
        (
            lambda tmp: write_audio(tmp / "click.wav", 0.5 * np.ones((300, 2)), 44100),
            r"too short \(7 ms\).*at least 22 ms",
        ),
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
    long_clip = write_audio(tmp_path / "long.wav", happy_speech(clips, seconds=MAX_SECONDS + 2.5), 22050)

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
    long_clip = write_audio(tmp_path / "long.wav", happy_speech(clips, seconds=33.0), 22050)

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

    from mer.serving.cli import main
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


def test_a_model_with_dimensions_shows_the_utterance_in_the_arousal_valence_plane(models, clips, tmp_path):
    saved = save_tiny_mer(tmp_path / "mer", dimensions=["arousal", "valence"])
    with_dimensions = EmotionRecognizer(str(saved), asr_model=models[1], max_seconds=MAX_SECONDS)
    assert with_dimensions.dimensions == ["arousal", "valence"]
    analysis = with_dimensions.analyse(str(clips["happy"]), "what a wonderful party!")
    expected = with_dimensions.pipeline(str(clips["happy"]), text="what a wonderful party!")["dimensions"]
    assert analysis.dimensions == pytest.approx(expected, abs=1e-5) and set(expected) == {"arousal", "valence"}
    other = with_dimensions.analyse(str(clips["sad"]), "i am so sorry about the dog.").dimensions
    assert max(abs(other[name] - analysis.dimensions[name]) for name in other) > 1e-2  # another clip, other values

    demo = space_app.build_demo(with_dimensions, examples_dir=tmp_path / "examples")
    analyse = next(fn.fn for fn in demo.fns.values() if fn.api_name == "analyse")
    *_, details, plane = analyse(str(clips["happy"]), "what a wonderful party!")
    assert f"Arousal {analysis.dimensions['arousal']:.2f} · Valence {analysis.dimensions['valence']:.2f}" in details
    assert plane.ndim == 3 and plane.shape[2] == 3 and plane.std() > 0  # a picture, not a blank
    # One dimension alone, or one the plane does not show, gets a bar.
    assert dimension_image({"dominance": 0.3}).shape[2] == 3
    both = dimension_image({"arousal": 0.9, "valence": 0.2, "dominance": 0.5})
    assert both.shape[0] > dimension_image({"arousal": 0.9, "valence": 0.2}).shape[0]


def test_a_dimensions_only_model_shows_its_dimensions_and_no_classes(models, clips, tmp_path):
    saved = save_tiny_mer(tmp_path / "mer", dimensions=["arousal", "valence"], id2label={})
    only = EmotionRecognizer(str(saved), asr_model=models[1], max_seconds=MAX_SECONDS, runtime="eager")
    assert only.labels == [] and only.dimensions == ["arousal", "valence"]
    analysis = only.analyse(str(clips["happy"]), "what a wonderful party!")
    expected = only.pipeline(str(clips["happy"]), text="what a wonderful party!")["dimensions"]
    assert analysis.probabilities == {} and analysis.dimensions == pytest.approx(expected, abs=1e-5)
    assert "never measured" in only.audio_only_notice() and "valence" in only.audio_only_notice()

    demo = space_app.build_demo(only, examples_dir=tmp_path / "examples")
    functions = {fn.api_name: fn.fn for fn in demo.fns.values()}
    transcript, attention, details, plane = functions["analyse"](str(clips["happy"]), "what a wonderful party!")
    assert transcript == "what a wonderful party!" and plane.ndim == 3 and plane.std() > 0
    assert f"Arousal {analysis.dimensions['arousal']:.2f}" in details
    assert functions["predict"](str(clips["happy"]), "what a wonderful party!") == pytest.approx(expected, abs=1e-5)
    assert "places what it hears on **arousal, valence**" in space_app._introduction(only)

    timeline = only.timeline(str(clips["sad"]), tmp_path / "timeline")
    assert space_app.timeline_columns(only.labels, only.dimensions) == [
        "start", "end", "transcript", "arousal", "valence"
    ]  # fmt: skip
    rows = space_app.timeline_table(timeline)
    assert rows and all(len(row) == 5 and 0 <= row[3] <= 1 and 0 <= row[4] <= 1 for row in rows)


def test_a_model_without_dimensions_keeps_the_four_outputs(recognizer, clips, tmp_path):
    assert recognizer.dimensions == []
    demo = space_app.build_demo(recognizer, examples_dir=tmp_path / "examples")
    analyse = next(fn.fn for fn in demo.fns.values() if fn.api_name == "analyse")
    assert len(analyse(str(clips["happy"]), "what a wonderful party!")) == 4
