"""Speech segmentation with the real Silero VAD (`mer.serving.vad`) on long recordings built from the synthetic corpus
with known pauses (`dataset_scripts.long_recording`)."""

from __future__ import annotations

import itertools
import json
import math
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
import torch

from dataset_scripts.long_recording import build_long_recording, load_long_recording
from mer.serving import vad
from mer.serving.audio import decode_audio, stream_audio
from mer.serving.vad import SegmentationConfig, boundary_scores, speech_probabilities, speech_segments

RATE = 16_000
LABELS = {"neutral", "happy", "angry", "sad"}


@pytest.fixture(scope="module")
def recording(synthetic_corpus, tmp_path_factory):
    """Two minutes of the synthetic corpus's 4-class utterances with 0.6-2.5 s pauses over -60 dBFS noise."""
    out = tmp_path_factory.mktemp("long") / "long.wav"
    return build_long_recording(synthetic_corpus, out, minutes=2, seed=3)


@pytest.fixture(scope="module")
def recording_audio(recording) -> np.ndarray:
    return decode_audio(recording.wav_path, RATE)[0]


@pytest.fixture(scope="module")
def fluent_speech(synthetic_corpus, tmp_path_factory):
    """Over 40 s of utterances back to back: no pause, no noise."""
    out = tmp_path_factory.mktemp("fluent") / "fluent.wav"
    built = build_long_recording(synthetic_corpus, out, count=26, seed=5, pause_seconds=(0, 0), noise_dbfs=None)
    return built, decode_audio(out, RATE)[0]


def spans(segments) -> list[tuple[float, float]]:
    return [(s.start, s.end) for s in segments]


def chunked(audio: np.ndarray, size: int):
    return (audio[i : i + size] for i in range(0, len(audio), size))


def low_noise(seconds: float, dbfs: float = -60.0, seed: int = 0) -> np.ndarray:
    return (10 ** (dbfs / 20) * np.random.default_rng(seed).standard_normal(round(seconds * RATE))).astype(np.float32)


# --- the long recording -------------------------------------------------------------------------------------------
def test_long_recording_places_four_class_utterances_with_the_drawn_pauses(recording, synthetic_corpus):
    assert load_long_recording(recording.wav_path) == recording
    info = sf.info(str(recording.wav_path))
    assert (info.samplerate, info.channels, info.subtype) == (RATE, 1, "PCM_16")
    assert math.isclose(info.frames / RATE, recording.duration)
    assert 120 <= recording.duration < 130 and len(recording.utterances) >= 25
    corpus = {u.id: u for u in synthetic_corpus.utterances}
    starts = [u.start for u in recording.utterances]
    ends = [0.0] + [u.end for u in recording.utterances]
    pauses = np.array(starts) - np.array(ends[:-1])
    assert pauses.min() >= 0.6 - 1e-9 and pauses.max() <= 2.5 + 1e-9
    assert recording.duration - recording.utterances[-1].end >= 0.6 - 1e-9
    for placed in recording.utterances:
        assert placed.label in LABELS and corpus[placed.id].raw_label == placed.raw_label
        assert placed.raw_label in {"neu", "hap", "exc", "ang", "sad"}
        assert 0.5 < placed.end - placed.start < corpus[placed.id].end - corpus[placed.id].start + 1e-6  # trimmed


def test_long_recording_has_the_noise_floor_in_its_pauses_and_is_reproducible(
    recording, recording_audio, synthetic_corpus, tmp_path
):
    first = recording.utterances[0]
    pause = recording_audio[: int(first.start * RATE)]
    assert 20 * np.log10(np.sqrt(np.mean(pause**2))) == pytest.approx(-60, abs=1)
    speech = recording_audio[int(first.start * RATE) : int(first.end * RATE)]
    assert np.abs(speech[:10]).max() > 10 ** (-50 / 20) * 0.5  # trimmed: the speech starts at once
    assert json.loads(recording.truth_path.read_text())["corpus"] == str(synthetic_corpus.path.resolve())

    again = build_long_recording(str(synthetic_corpus.path), tmp_path / "again.wav", minutes=2, seed=3)
    assert again.wav_path.read_bytes() == recording.wav_path.read_bytes() and again.utterances == recording.utterances
    other = build_long_recording(synthetic_corpus, tmp_path / "other.wav", count=3, seed=4)
    assert len(other.utterances) == 3 and other.utterances[0].id != recording.utterances[0].id


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({}, "minutes"),
        ({"minutes": 1, "count": 2}, "minutes"),
        ({"minutes": -1}, "minutes"),
        ({"count": 0}, "count"),
        ({"count": 2, "pause_seconds": (2.0, 1.0)}, "pause_seconds"),
        ({"count": 2, "noise_dbfs": 3.0}, "noise_dbfs"),
        ({"count": 2, "sampling_rate": 0}, "sampling_rate"),
    ],
)
def test_long_recording_names_a_bad_argument(synthetic_corpus, tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=name):
        build_long_recording(synthetic_corpus, tmp_path / "x.wav", **kwargs)


# --- segmentation against the known utterances --------------------------------------------------------------------
def test_segments_match_the_known_utterances(recording, capsys):
    segments = list(speech_segments(stream_audio(recording.wav_path, RATE, chunk_seconds=7.3)))
    scores = boundary_scores(spans(segments), recording.spans(), tolerance=0.3)
    with capsys.disabled():
        print(f"\nboundaries within 0.3 s on {recording.duration:.0f} s: {scores}")
    assert scores.precision >= 0.9 and scores.recall >= 0.9
    for segment in segments:
        assert len(segment.waveform) == round((segment.end - segment.start) * RATE)
        assert segment.waveform.dtype == np.float32
    assert all(a.end <= b.start for a, b in itertools.pairwise(segments))


def test_chunk_size_does_not_change_the_segments(recording_audio):
    reference = spans(speech_segments(chunked(recording_audio, 30 * RATE)))
    for size in (RATE, 12_345, 100):
        got = spans(speech_segments(chunked(recording_audio, size)))
        assert len(got) == len(reference)
        assert np.abs(np.array(got) - np.array(reference)).max() <= vad.WINDOW_SAMPLES / RATE


@pytest.fixture
def one_torch_thread():
    """The stock model's tiny per-window ops on two intra-op threads of a busy 2-core machine take seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_probabilities_match_silero_stock_model_window_by_window(recording_audio, monkeypatch, one_torch_thread):
    audio = recording_audio[: 10 * RATE]
    fast = np.concatenate(list(speech_probabilities(chunked(audio, 777))))
    monkeypatch.setattr(vad, "_sequence_model_available", lambda: False)  # silero's TorchScript model, one window
    stock = np.concatenate(list(speech_probabilities(chunked(audio, 5000))))
    assert fast.shape == stock.shape == (math.ceil(len(audio) / vad.WINDOW_SAMPLES),)
    np.testing.assert_allclose(fast, stock, atol=1e-4)
    assert fast.max() > 0.9 and fast.min() < 0.1


# --- nothing to find ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dbfs", [None, -70.0, -60.0, -45.0])
def test_silence_and_low_noise_give_no_segments(dbfs):
    audio = np.zeros(60 * RATE, dtype=np.float32) if dbfs is None else low_noise(60, dbfs)
    assert list(speech_segments(chunked(audio, 10 * RATE))) == []
    assert list(speech_segments([])) == []


def test_clicks_and_lone_snippets_are_not_segments_but_a_snippet_near_speech_joins_it(recording, recording_audio):
    first = recording.utterances[0]
    utterance = recording_audio[int(first.start * RATE) : int(first.end * RATE)]
    snippet = utterance[len(utterance) // 2 : len(utterance) // 2 + int(0.3 * RATE)]  # 0.3 s of speech
    audio = low_noise(40)
    audio[5 * RATE : 5 * RATE + 2] = (0.9, -0.9)  # a click
    audio[10 * RATE : 10 * RATE + 1600] += low_noise(0.1, -6, seed=1)  # a 0.1 s burst of loud noise
    audio[15 * RATE : 15 * RATE + snippet.size] += snippet  # a lone word fragment, far from speech
    assert list(speech_segments([audio])) == []

    start = 22 * RATE
    audio[start : start + utterance.size] += utterance
    near = start + utterance.size + int(0.7 * RATE)  # a pause longer than min_silence, shorter than merge_pause
    audio[near : near + snippet.size] += snippet
    (segment,) = speech_segments([audio])
    assert segment.start == pytest.approx(start / RATE, abs=0.3)
    assert segment.end == pytest.approx((near + snippet.size) / RATE, abs=0.3)


# --- long speech --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("max_seconds", [15.0, 6.0])
def test_speech_without_pauses_is_split_at_quiet_points_within_max_seconds(fluent_speech, max_seconds):
    built, audio = fluent_speech
    assert built.duration > 40
    segments = list(speech_segments(chunked(audio, 3 * RATE), max_seconds=max_seconds))
    assert len(segments) >= math.ceil(built.duration / max_seconds)
    assert max(s.duration for s in segments) <= max_seconds + 1e-9
    covered = sum(s.duration for s in segments)
    assert covered >= 0.97 * built.duration
    assert all(a.end <= b.start for a, b in itertools.pairwise(segments))
    frames = audio[: len(audio) // 800 * 800].reshape(-1, 800)  # 50 ms
    typical = np.median(np.sqrt(np.mean(frames**2, axis=1)))
    for cut in (s.end for s in segments[:-1]):  # the cuts fall at quiet moments, not inside a loud vowel
        around = audio[int(cut * RATE) - 400 : int(cut * RATE) + 400]
        assert np.sqrt(np.mean(around**2)) < 0.75 * typical


class ProbabilityAsAudio:
    """A stand-in for Silero whose speech probability of a window is the window's mean sample."""

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        return windows.mean(axis=1).astype(np.float32)


def random_pattern(rng: np.random.Generator) -> np.ndarray:
    """Runs of speech (0.6-1) and pauses (0-0.3), some with stretches in Silero's hysteresis band (0.4)."""
    scores: list[float] = []
    while len(scores) < 2500:
        if rng.random() < 0.5:
            scores += [rng.uniform(0.6, 1.0)] * int(rng.exponential(60))
        else:
            scores += [rng.uniform(0.0, 0.3)] * int(rng.exponential(20))
        if rng.random() < 0.1:
            scores += [0.4] * int(rng.integers(1, 10))
    return np.array(scores, dtype=np.float32)


def test_segments_keep_their_promises_on_random_speech_patterns(monkeypatch):
    monkeypatch.setattr(vad, "_new_model", ProbabilityAsAudio)
    rng = np.random.default_rng(0)
    for _ in range(60):
        config = SegmentationConfig(
            min_silence_seconds=rng.choice([0.1, 0.5]),
            min_seconds=rng.choice([0.0, 0.5, 1.0]),
            max_seconds=rng.choice([3.0, 15.0]),
            speech_pad_seconds=rng.choice([0.0, 0.1, 0.3]),
            merge_pause_seconds=rng.choice([0.0, 1.0, 3.0]),
        )
        scores = random_pattern(rng)
        audio = np.repeat(scores, vad.WINDOW_SAMPLES)[: -int(rng.integers(1, vad.WINDOW_SAMPLES))]
        segments = list(speech_segments([audio], config=config))
        for size in (RATE, int(rng.integers(100, 5000))):  # the chunking changes nothing
            assert spans(speech_segments(chunked(audio, size), config=config)) == spans(segments), config
        assert all(a.end <= b.start for a, b in itertools.pairwise(segments))
        covered = np.zeros(len(scores), dtype=bool)
        for segment in segments:
            start, end = round(segment.start * RATE), round(segment.end * RATE)
            assert 0 < end - start <= config.max_seconds * RATE and end <= len(audio)
            np.testing.assert_array_equal(segment.waveform, audio[start:end])
            covered[start // vad.WINDOW_SAMPLES : -(-end // vad.WINDOW_SAMPLES)] = True
        whole = scores[: len(audio) // vad.WINDOW_SAMPLES]  # the last window, cut short, is padded with zeros
        speech = np.flatnonzero(np.diff(np.concatenate(([0], whole >= 0.5, [0]))))
        for first, last in speech.reshape(-1, 2):  # no stretch of speech of min_seconds is lost
            if (last - first) * vad.WINDOW_SAMPLES > config.min_seconds * RATE + vad.WINDOW_SAMPLES:
                assert covered[first:last].all(), (config, first, last)


# --- bounded memory -----------------------------------------------------------------------------------------------
def repeated(audio: np.ndarray, seconds: float, pulled: list[int]):
    """`seconds` of `audio` over and over, in 10 s chunks, counting the chunks pulled; nothing is stored."""
    size = 10 * RATE
    for index in range(math.ceil(seconds * RATE / size)):
        pulled[0] += 1
        offset = index * size % (len(audio) - size)
        yield audio[offset : offset + size]


def peak_memory(audio: np.ndarray, seconds: float) -> tuple[int, int]:
    pulled = [0]
    tracemalloc.start()
    try:
        count = sum(1 for _ in speech_segments(repeated(audio, seconds, pulled)))
        return tracemalloc.get_traced_memory()[1], count
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_recording(recording_audio):
    # 30 min of speech and pauses (Silero alone needs several seconds for it on one core); 2 h behaves the same.
    short_peak, short_count = peak_memory(recording_audio, 5 * 60)
    long_peak, long_count = peak_memory(recording_audio, 30 * 60)
    assert long_count > 5 * short_count > 0
    assert long_peak < 1.3 * short_peak, (short_peak, long_peak)
    assert long_peak < 16 * 2**20  # two chunks and a few pending segments, not 30 minutes (115 MB)


def test_segments_come_while_the_stream_is_read(recording_audio):
    pulled = [0]
    stream = speech_segments(repeated(recording_audio, 3600, pulled))
    first = next(stream)
    assert first.end < 10 and pulled[0] <= 2  # the first segment comes after a chunk or two, not after the hour
    stream.close()


# --- bad input ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": 1.5}, "threshold"),
        ({"min_silence_seconds": 0}, "min_silence_seconds"),
        ({"min_seconds": -1}, "min_seconds"),
        ({"max_seconds": 0.8}, "max_seconds"),
        ({"max_seconds": float("inf")}, "max_seconds"),
        ({"speech_pad_seconds": float("nan")}, "speech_pad_seconds"),
        ({"merge_pause_seconds": -0.5}, "merge_pause_seconds"),
    ],
)
def test_bad_parameters_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SegmentationConfig(**kwargs)
    with pytest.raises(ValueError, match=name):
        speech_segments(iter(()), **kwargs)  # at once, before any audio is read


def test_an_unknown_knob_is_refused():
    with pytest.raises(TypeError, match="max_length"):
        speech_segments(iter(()), max_length=10)


@pytest.mark.parametrize("rate", [8000, 22_050, 44_100])
def test_other_sampling_rates_are_refused_by_name(rate):
    with pytest.raises(ValueError, match=f"sampling_rate.*{rate}"):
        speech_segments([np.zeros(rate, dtype=np.float32)], rate)
    with pytest.raises(ValueError, match=f"sampling_rate.*{rate}"):
        speech_probabilities([], sampling_rate=rate)


def test_multichannel_chunks_are_refused():
    with pytest.raises(ValueError, match=r"1-D.*\(2, 16000\)"):
        list(speech_segments([np.zeros((2, RATE), dtype=np.float32)]))


def test_boundary_scores_match_one_to_one_within_the_tolerance():
    reference = [(1.0, 3.0), (4.0, 6.0), (8.0, 9.0)]
    predicted = [(0.8, 3.2), (0.9, 3.1), (4.5, 6.0), (8.1, 8.9), (20.0, 21.0)]
    scores = boundary_scores(predicted, reference, tolerance=0.3)
    assert (scores.matched, scores.predicted, scores.reference) == (2, 5, 3)
    assert (scores.precision, scores.recall) == (0.4, pytest.approx(2 / 3))
    assert boundary_scores([], []).precision == boundary_scores([], []).recall == 1.0
    with pytest.raises(ValueError, match="tolerance"):
        boundary_scores(predicted, reference, tolerance=-1)
