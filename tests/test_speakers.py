"""Telling speakers apart (`mer.serving.speakers`): Resemblyzer's voice encoder, rebuilt here around the weights of
its PyPI wheel, gives the package's own embeddings; clustering numbers speakers in the order they speak; a segment is
cut where its speaker changes; conversations of real actors (`../shared/data`) are told apart."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from dataset_scripts.conversation import build_conversation
from mer.serving.audio import stream_audio
from mer.serving.speakers import (
    WEIGHTS_ENV,
    SpeakerEncoder,
    SpeakerSettings,
    SpeakerWeightsMissing,
    cluster_speakers,
    speaker_runs,
    speaker_turns,
    speaker_weights_path,
)
from mer.serving.vad import speech_segments

REFERENCE = Path(__file__).parent / "data" / "resemblyzer_reference.json"
EMODB = Path(__file__).resolve().parents[2] / "shared" / "data" / "emodb"


def voice(seconds: float = 2.0, pitch: float = 140.0, seed: int = 0) -> np.ndarray:
    """A voiced sound: harmonics of a wavering pitch, a syllable rhythm, a little noise (16 kHz)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = pitch * (1 + 0.08 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    wave = sum(np.sin(k * phase) / k for k in range(1, 30)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2)
    return (0.05 * wave + 0.002 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    return SpeakerEncoder()


def test_the_encoder_gives_resemblyzers_own_embedding(encoder):
    reference = json.loads(REFERENCE.read_text())
    mels = encoder.mel_frames(voice())

    embedding = encoder.embed_frames([mels[:160]])[0]

    assert float(mels[:160].sum()) == pytest.approx(reference["mel_first_160_sum"], rel=1e-4)
    assert float(embedding @ np.array(reference["embedding"])) > 0.9999
    assert np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-5)


def test_windows_cover_the_speech_and_a_short_clip_is_one_window(encoder):
    embeddings, spans = encoder.embed_windows(voice(seconds=5.0))
    assert embeddings.shape == (len(spans), 256)
    assert spans[0][0] == 0 and spans[-1][1] == pytest.approx(5.0, abs=0.02)
    assert all(end - start == pytest.approx(1.6) for start, end in spans)

    short, short_spans = encoder.embed_windows(voice(seconds=0.7))
    assert short.shape == (1, 256) and short_spans[0][1] == pytest.approx(0.7, abs=0.02)


def test_missing_weights_say_how_to_fetch_them(monkeypatch, tmp_path):
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "absent.whl"))
    with pytest.raises(SpeakerWeightsMissing, match="absent.whl, which is not a file"):
        speaker_weights_path()
    monkeypatch.delenv(WEIGHTS_ENV)
    monkeypatch.setattr("mer.serving.speakers.default_weights_dir", lambda: tmp_path)
    monkeypatch.setattr(Path, "home", lambda: tmp_path)
    monkeypatch.setattr("importlib.metadata.distribution", _not_installed)
    with pytest.raises(SpeakerWeightsMissing, match="-m mer.serving.speakers --fetch"):
        SpeakerEncoder()


def _not_installed(name):
    from importlib.metadata import PackageNotFoundError

    raise PackageNotFoundError(name)


def _groups(*sizes: int, seed: int = 0) -> np.ndarray:
    """Unit vectors in tight groups around far-apart directions, group after group."""
    rng = np.random.default_rng(seed)
    rows = []
    for group, size in enumerate(sizes):
        centre = np.zeros(256)
        centre[group * 10 : group * 10 + 10] = 1.0
        rows.append(centre + 0.05 * rng.standard_normal((size, 256)))
    vectors = np.concatenate(rows)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_clusters_are_numbered_in_the_order_speakers_first_speak():
    vectors = _groups(4, 3, 5)
    order = [7, 8, 0, 1, 9, 2, 3, 4, 5, 6, 10, 11]  # the third group speaks first, then the first
    assert cluster_speakers(vectors[order]).tolist() == [0, 0, 1, 1, 0, 1, 1, 2, 2, 2, 0, 0]
    assert cluster_speakers(vectors[order], num_speakers=2).max() == 1
    assert cluster_speakers(vectors[order], max_speakers=2).max() == 1


def test_one_voice_is_one_speaker_and_too_many_speakers_are_refused():
    vectors = _groups(9)
    assert cluster_speakers(vectors).tolist() == [0] * 9
    stray = _groups(8, 2)  # two windows unlike the rest: not a speaker of their own
    assert cluster_speakers(stray).tolist() == [0] * 10
    assert cluster_speakers(stray, num_speakers=2).tolist() == [0] * 8 + [1] * 2
    with pytest.raises(ValueError, match="num_speakers is 12, but the speech gives only 9 windows"):
        cluster_speakers(vectors, num_speakers=12)
    with pytest.raises(ValueError, match="--num-speakers must be a whole number of at least 1, got 0"):
        SpeakerSettings(num_speakers=0)


def test_many_windows_are_clustered_within_bounded_memory():
    vectors = _groups(3000, 2500)
    found = cluster_speakers(vectors)  # beyond 4000 windows, a subset is clustered and the rest assigned
    assert found[:3000].tolist() == [0] * 3000 and found[3000:].tolist() == [1] * 2500


def test_a_segment_is_cut_where_its_speaker_changes_and_a_stray_window_is_absorbed():
    spans = np.array([(0.8 * i, 0.8 * i + 1.6) for i in range(10)])
    speakers = np.array([0, 0, 0, 0, 1, 0, 0, 1, 1, 1])

    runs = speaker_runs(spans, speakers, duration=8.8, min_seconds=1.0)

    assert [run[2] for run in runs] == [0, 1]
    assert runs[0][0] == 0.0 and runs[-1][1] == 8.8
    assert runs[0][1] == pytest.approx((spans[6].mean() + spans[7].mean()) / 2)


def _time_accuracy(conversation, turns) -> float:
    """Share of the true speaking time given to the right speaker, under the best one-to-one naming."""
    truths = sorted({turn.speaker for turn in conversation.turns})
    found = sorted({turn["speaker"] for turn in turns})
    overlap = np.zeros((len(truths), len(found)))
    for true in conversation.turns:
        for turn in turns:
            shared = min(true.end, turn["end"]) - max(true.start, turn["start"])
            overlap[truths.index(true.speaker), found.index(turn["speaker"])] += max(shared, 0.0)
    rows, columns = linear_sum_assignment(-overlap)
    return overlap[rows, columns].sum() / sum(turn.end - turn.start for turn in conversation.turns)


def _turns(conversation, encoder, settings):
    segments = speech_segments(stream_audio(conversation.wav_path, 16000, 30.0), 16000)
    return speaker_turns(segments, encoder, settings, min_seconds=0.5)


@pytest.mark.skipif(not EMODB.is_dir(), reason="needs ../shared/data/emodb (real emotional speech)")
def test_real_actors_in_conversation_are_told_apart_and_one_actor_stays_one(encoder, tmp_path):
    corpus = f"emodb={EMODB}"
    alone = [
        _turns(build_conversation(corpus, tmp_path / f"alone{seed}.wav", speakers=1, turns=6, seed=seed), encoder,
               SpeakerSettings())
        for seed in range(6)
    ]  # fmt: skip
    counts = [len({turn["speaker"] for turn in turns}) for turns in alone]
    print(f"EmoDB monologues: speakers found {counts}")
    assert counts.count(1) >= 5  # one actor across emotions: rarely two voices

    accuracies = []
    for seed in range(3):
        conversation = build_conversation(corpus, tmp_path / f"pair{seed}.wav", speakers=2, turns=6, seed=seed)
        accuracies.append(_time_accuracy(conversation, _turns(conversation, encoder, SpeakerSettings(num_speakers=2))))
    print(f"EmoDB pairs, two speakers given: speaking time to the right speaker {np.round(accuracies, 3).tolist()}")
    assert np.mean(accuracies) >= 0.65


def test_enrolled_voices_name_the_speakers_they_match_and_the_others_are_numbered():
    from mer.serving.speakers import _names

    vectors = _groups(4, 4, 4)
    numbers = np.repeat([0, 1, 2], 4)
    centre_of_second = vectors[4:8].mean(axis=0) / np.linalg.norm(vectors[4:8].mean(axis=0))
    unlike = np.zeros(256)
    unlike[200:210] = 1 / np.sqrt(10)  # a voice that is not in the recording

    names = _names(vectors, numbers, {"alice": centre_of_second, "bob": unlike})

    assert names == ["speaker_1", "alice", "speaker_2"]


def test_an_enrolment_clip_without_enough_speech_is_refused_naming_it(encoder, tmp_path):
    import soundfile

    from mer.serving.speakers import enrolment

    noise = tmp_path / "noise.wav"
    soundfile.write(noise, 0.01 * np.random.default_rng(0).standard_normal(48000).astype(np.float32), 16000)
    with pytest.raises(ValueError, match=r"--enroll carol=.*noise.wav holds 0.00 s of speech"):
        enrolment(encoder, [("carol", str(noise))])
    with pytest.raises(ValueError, match="the name 'speaker_3' is empty, given twice, or of the form speaker_N"):
        SpeakerSettings(enrol=(("speaker_3", str(noise)),))
    with pytest.raises(ValueError, match="given twice"):
        SpeakerSettings(enrol=(("dan", "a.wav"), ("dan", "b.wav")))
