"""Conversations of real speakers with known turns (`dataset_scripts.conversation`): the reference that speaker turns
in `mer timeline` are measured against."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import soundfile as sf
from release_fixtures import SHARED_DATA

from dataset_scripts.conversation import build_conversation, load_conversation, main


def _speech_level(samples: np.ndarray, start: float, end: float, rate: int) -> float:
    part = samples[int(start * rate) : int(end * rate)]
    return float(np.sqrt(np.mean(part**2))) if part.size else 0.0


def test_turns_alternate_between_the_speakers_and_lie_where_the_truth_says(synthetic_corpus, tmp_path):
    conversation = build_conversation(synthetic_corpus.path, tmp_path / "talk.wav", speakers=3, turns=7, seed=4)
    turns = conversation.turns
    assert len(turns) == 7 and len(set(conversation.speakers)) == 3
    assert all(a.speaker != b.speaker for a, b in pairwise(turns))  # no one follows themself
    assert all(0 < a.end < b.start for a, b in pairwise(turns))  # a pause at every change (0.6-2.5 s)
    assert all(1 <= len(turn.ids) <= 2 and len(turn.ids) == len(turn.texts) == len(turn.labels) for turn in turns)
    ids = [i for turn in turns for i in turn.ids]
    assert len(ids) == len(set(ids))  # each utterance used once
    assert all(i.startswith(turn.speaker.replace("_", "")[:5]) for turn in turns for i in turn.ids)  # Ses01_F: Ses01F_
    samples, rate = sf.read(conversation.wav_path, dtype="float32")
    assert len(samples) / rate == pytest.approx(conversation.duration, abs=1e-3)
    # Speech where the turns are, the noise floor (-60 dBFS) in the pauses between them.
    for a, b in pairwise(turns):
        assert _speech_level(samples, a.start, a.end, rate) > 30 * _speech_level(
            samples, a.end + 0.05, b.start - 0.05, rate
        )
    # The truth reads back, and the RTTM holds one line per turn.
    assert load_conversation(conversation.wav_path) == conversation
    lines = conversation.rttm_path.read_text().splitlines()
    assert len(lines) == 7 and lines[0].split()[:5] == ["SPEAKER", "talk", "1", f"{turns[0].start:.3f}",
                                                       f"{turns[0].end - turns[0].start:.3f}"]  # fmt: skip
    # The same seed gives the same bytes; another seed another conversation.
    again = build_conversation(synthetic_corpus.path, tmp_path / "again.wav", speakers=3, turns=7, seed=4)
    assert again.wav_path.read_bytes() == conversation.wav_path.read_bytes()
    other = build_conversation(synthetic_corpus.path, tmp_path / "other.wav", speakers=3, turns=7, seed=5)
    assert other.turns != conversation.turns


def test_back_to_back_turns_change_speaker_without_a_pause(synthetic_corpus, tmp_path):
    conversation = build_conversation(
        synthetic_corpus.path, tmp_path / "fast.wav", speakers=2, turns=6, pause_seconds=(0, 0), noise_dbfs=None
    )
    assert all(a.end == b.start for a, b in pairwise(conversation.turns))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"speakers": 3, "turns": 2}, r"turns \(2\) must be at least speakers \(3\)"),
        ({"speakers": 0}, "speakers must be an integer >= 1, got 0"),
        ({"pause_seconds": (2.0, 1.0)}, "pause_seconds must be"),
        ({"speakers": 40, "turns": 40}, r"has 10 speaker\(s\) with \d+ or more utterances; 40 asked"),
    ],
)
def test_bad_arguments_are_refused_naming_them(synthetic_corpus, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_conversation(synthetic_corpus.path, tmp_path / "x.wav", **kwargs)
    with pytest.raises(ValueError, match="'nosuch' is not one of"):
        build_conversation(f"nosuch={tmp_path}", tmp_path / "x.wav")


@pytest.mark.skipif(not (SHARED_DATA / "emodb").is_dir(), reason="../shared/data/emodb is not here")
def test_a_conversation_of_real_emodb_speakers(tmp_path):
    conversation = main(["--corpus", f"emodb={SHARED_DATA / 'emodb'}", "--speakers", "4", "--turns", "8",
                         "--out", str(tmp_path / "emodb.flac")])  # fmt: skip
    assert len(conversation.speakers) == 4 and all(s in {"03", "08", "09", "10", "11", "12", "13", "14", "15", "16"}
                                                   for s in conversation.speakers)  # fmt: skip
    print(
        f"{conversation.duration:.1f} s, turns: {[(t.speaker, round(t.end - t.start, 1)) for t in conversation.turns]}"
    )
    samples, rate = sf.read(conversation.wav_path)
    assert rate == 16000 and len(samples) / rate == pytest.approx(conversation.duration, abs=1e-3)
