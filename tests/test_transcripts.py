"""Speech recognition's transcripts of a whole corpus (train.py --transcripts asr/both): cached once per corpus and
model, resumed after a kill, empty ones kept and counted, the word error rate per fold, and unusable models refused.
A stand-in recogniser makes most tests fast; one uses the real Whisper tiny.en of ../shared/models when present."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import datasets
import pytest

from dataset_scripts.iemocap import load_iemocap
from mer.training.arguments import Arguments
from mer.training.protocol import load_corpus, plan_folds
from mer.training.speech_recognition import SpeechRecognizer, word_error_rate
from mer.training.transcripts import ASR_TEXT_COLUMN, transcribe_corpus

REPO = Path(__file__).resolve().parents[1]
SHARED_WHISPER = REPO.parent / "shared" / "models" / "whisper-tiny.en"
COLUMNS = ("audio", "text", "label")


class StandIn:
    """A recogniser that 'hears' the first words of the gold transcript of utterances longer than 1.5 s and nothing
    in shorter ones, counts what it is asked, and can stop (as a kill would) after `fail_after` utterances."""

    backend = "stand-in"
    sampling_rate = 16000

    def __init__(self, model: str = "stand-in", fail_after: int | None = None):
        self.model, self.fail_after, self.heard = model, fail_after, 0

    def load(self):
        return self

    def transcribe_batch(self, waveforms) -> list[str]:
        texts = []
        for wave in waveforms:
            if self.fail_after is not None and self.heard >= self.fail_after:
                raise KeyboardInterrupt("killed")
            self.heard += 1
            texts.append(f"words {len(wave) // 1600}" if len(wave) > 1.5 * self.sampling_rate else "")
        return texts


@pytest.fixture
def folds(tiny_corpus, tmp_path, monkeypatch) -> dict[str, datasets.Dataset]:
    """The tiny corpus's folds, with a datasets cache (and so a transcript cache) of this test's own."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    return dict(load_iemocap(tiny_corpus.path, "4class", cache_dir=tmp_path / "builder"))


def test_a_killed_pass_resumes_and_a_rerun_transcribes_nothing(folds):
    total = sum(map(len, folds.values()))
    with pytest.raises(KeyboardInterrupt):
        transcribe_corpus(folds, COLUMNS, StandIn(fail_after=13), "tiny")

    resumed = StandIn()
    with_asr, report = transcribe_corpus(folds, COLUMNS, resumed, "tiny")
    assert resumed.heard == total - 8  # the first batch of 8 was written before the kill; the rest is transcribed
    assert report.transcribed == total - 8 and report.seconds > 0

    again = StandIn()
    cached, cached_report = transcribe_corpus(folds, COLUMNS, again, "tiny")
    assert again.heard == 0 and cached_report.transcribed == 0 and cached_report.seconds == 0
    uninterrupted = StandIn()
    expected = [uninterrupted.transcribe_batch([w])[0] for w in _waves(folds["session2"])]
    assert cached["session2"][ASR_TEXT_COLUMN] == with_asr["session2"][ASR_TEXT_COLUMN] == expected
    assert cached["session2"]["text"] == folds["session2"]["text"]  # the gold transcripts stay beside them

    # Another model has a cache of its own.
    other = StandIn(model="another")
    transcribe_corpus(folds, COLUMNS, other, "tiny")
    assert other.heard == total


def test_a_line_cut_short_by_a_kill_is_transcribed_again(folds):
    _, report = transcribe_corpus(folds, COLUMNS, StandIn(), "tiny")
    part = report.cache / "part-0.jsonl"
    lines = part.read_text().splitlines()
    part.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:10])  # the last line half written
    recogniser = StandIn()
    transcribe_corpus(folds, COLUMNS, recogniser, "tiny")
    assert recogniser.heard == 1
    assert all(json.loads(line) for line in part.read_text().splitlines()[-1:])


def test_empty_transcripts_are_kept_counted_and_scored_per_fold(folds, caplog):
    with_asr, report = transcribe_corpus(folds, COLUMNS, StandIn(), "tiny")
    for fold, dataset in with_asr.items():
        texts = dataset[ASR_TEXT_COLUMN]
        assert report.empty[fold] == texts.count("")
        assert report.word_errors[fold] == word_error_rate(dataset["text"], texts)
    assert sum(report.empty.values()) > 0 and "heard no words in" in caplog.text
    summary = report.report()
    assert summary["empty_transcripts"] == report.empty
    assert set(summary["word_error_rate"]) == set(folds)
    assert 0 < summary["word_error_rate_all_folds"] <= 1.5


def test_training_reads_speech_recognitions_transcripts_with_asr(tiny_corpus, tmp_path, monkeypatch):
    train = _train_module()
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    monkeypatch.setattr(train, "SpeechRecognizer", lambda model, backend, device: StandIn(model))
    accelerator = SimpleNamespace(device="cpu", process_index=0, num_processes=1, wait_for_everyone=lambda: None)
    for transcripts, column in (("asr", ASR_TEXT_COLUMN), ("both", "text")):
        args = Arguments(data_dir=str(tiny_corpus.path), transcripts=transcripts, asr_model="stand-in", folds=["1"])
        corpus = load_corpus(args)
        report = train.add_asr_transcripts(accelerator, args, corpus)
        assert corpus.columns[1] == column and report["model"] == "stand-in"
        split = plan_folds(corpus, args)[0]
        for dataset in (split.train, split.validation, split.test):  # every split has both transcripts
            assert {"text", ASR_TEXT_COLUMN} <= set(dataset.column_names)


def test_an_unusable_speech_recognition_model_is_refused_naming_the_setting(folds, tmp_path):
    with pytest.raises(ValueError, match=r"--transcripts asr needs a speech-recognition model, but --asr_model "):
        Arguments(data_dir="unused", transcripts="asr", asr_model=str(tmp_path / "missing")).check()
    with pytest.raises(ValueError, match="--transcripts must be one of"):
        Arguments(data_dir="unused", transcripts="whisper").check()
    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    with pytest.raises(ValueError, match=rf"--asr_model {not_a_model}: not a usable speech-recognition model"):
        transcribe_corpus(folds, COLUMNS, SpeechRecognizer(str(not_a_model)), "tiny")
    gold = Arguments(data_dir="unused")
    gold.check()
    assert gold.asr_model is None  # gold transcripts need no speech recognition


@pytest.mark.skipif(not SHARED_WHISPER.is_dir(), reason=f"the real Whisper tiny.en is not at {SHARED_WHISPER}")
def test_real_whisper_transcribes_the_synthetic_speech(folds):
    session = {"session1": folds["session1"]}
    with_asr, report = transcribe_corpus(session, COLUMNS, SpeechRecognizer(str(SHARED_WHISPER)), "tiny")
    texts = with_asr["session1"][ASR_TEXT_COLUMN]
    assert report.backend == "transformers" and all(texts)
    # espeak-ng's voice is far from the speech Whisper learnt from; most words still come through.
    assert report.word_errors["session1"].wer < 0.6, list(zip(texts, folds["session1"]["text"], strict=True))


def _waves(dataset: datasets.Dataset) -> list:
    from mer.training.transcripts import _waveform

    return [_waveform(dataset, row, "audio", 16000) for row in range(len(dataset))]


def _train_module():
    """train.py, imported from its path (it is a script, not part of the package)."""
    import importlib.util
    import sys

    if "train" not in sys.modules:
        spec = importlib.util.spec_from_file_location("train", REPO / "train.py")
        sys.modules["train"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules["train"])
    return sys.modules["train"]
