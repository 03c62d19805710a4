"""`mer timeline`: a long recording cut into speech segments by real Silero VAD, each transcribed by real Whisper
tiny.en and classified, written as a table and a picture, with memory bounded whatever the recording's length."""

from __future__ import annotations

import csv
import json
import subprocess
import tracemalloc

import pytest

from dataset_scripts.long_recording import build_long_recording
from mer.cli import main
from mer.inference import load_pipeline
from mer.speech_recognition import word_error_rate
from mer.timeline import segment_lengths, write_timeline
from mer.vad import boundary_scores


@pytest.fixture(scope="module")
def recording(synthetic_corpus, tmp_path_factory):
    """About a minute of corpus utterances with known pauses, as 44.1 kHz stereo mp3 (a recording as people have it)
    and its ground truth."""
    folder = tmp_path_factory.mktemp("long")
    truth = build_long_recording(synthetic_corpus, folder / "meeting.wav", count=20, seed=2)
    mp3 = folder / "meeting.mp3"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(folder / "meeting.wav"), "-ac", "2", "-ar", "44100", str(mp3)], check=True
    )
    return mp3, truth


def test_the_timeline_finds_the_known_segments_and_transcribes_and_classifies_each(
    saved_mer, real_asr, recording, tmp_path, capsys
):
    path, truth = recording
    out = tmp_path / "timeline"
    status = main(["timeline", str(path), "--model", str(saved_mer), "--out", str(out), "--asr_model", real_asr,
                   "--runtime", "eager", "--quiet"])  # fmt: skip

    assert status == 0
    table = json.loads((out / "timeline.json").read_text())
    segments = table["segments"]
    known = truth.spans()
    scores = boundary_scores([(s["start"], s["end"]) for s in segments], known, tolerance=0.3)
    print(
        f"segments {len(segments)} / known {len(known)}: precision {scores.precision:.3f} recall {scores.recall:.3f}"
    )
    assert scores.precision >= 0.9 and scores.recall >= 0.9
    assert table["duration_seconds"] == pytest.approx(truth.duration, abs=0.1)
    with (out / "timeline.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(segments)
    assert list(rows[0]) == ["start", "end", "transcript", "transcript_source", "label", "score",
                             "neutral", "happy", "angry", "sad"]  # fmt: skip
    for row in rows:
        assert row["transcript_source"] == "asr" and row["label"] in ("neutral", "happy", "angry", "sad")
        assert abs(sum(float(row[label]) for label in ("neutral", "happy", "angry", "sad")) - 1) < 1e-3
    # Each segment was transcribed by real Whisper: its words are those of the utterance it covers.
    matched = _matched_utterances(segments, truth.utterances)
    errors = word_error_rate([u.text for u in matched.values()], [segments[i]["transcript"] for i in matched])
    print(f"word error rate of the segments' transcripts: {errors.wer:.3f}")
    assert errors.wer < 0.4
    assert (out / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"{len(segments)} speech segments" in capsys.readouterr().out


def _matched_utterances(segments: list[dict], utterances) -> dict[int, object]:
    """Segment index -> the known utterance it covers (most overlap), for segments that cover exactly one."""
    matched = {}
    for index, segment in enumerate(segments):
        inside = [u for u in utterances if min(segment["end"], u.end) - max(segment["start"], u.start) > 0.3]
        if len(inside) == 1:
            matched[index] = inside[0]
    return matched


def test_a_silent_recording_gives_an_empty_timeline_and_a_message(saved_mer, tmp_path, capsys):
    silence = tmp_path / "silence.flac"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "anoisesrc=a=0.0005:d=20:r=48000", str(silence)], check=True
    )
    out = tmp_path / "timeline"
    status = main(["timeline", str(silence), "--model", str(saved_mer), "--out", str(out), "--runtime", "eager",
                   "--quiet"])  # fmt: skip

    assert status == 0
    assert "No speech was found in" in capsys.readouterr().out
    assert json.loads((out / "timeline.json").read_text())["segments"] == []
    assert (out / "timeline.csv").read_text().count("\n") == 1  # the header alone
    assert (out / "timeline.png").exists()


def test_memory_stays_bounded_and_progress_is_shown_for_a_long_recording(saved_mer, tmp_path, capsys):
    # 20 minutes of 48 kHz stereo: 460 MB as float32 if it were decoded whole, 77 MB even at 16 kHz mono.
    long = tmp_path / "long.flac"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "anoisesrc=a=0.0005:d=1200:r=48000", "-ac", "2", str(long)],
        check=True,
    )
    pipe = load_pipeline(str(saved_mer), runtime="eager", device="cpu")
    tracemalloc.start()
    try:
        timeline = write_timeline(pipe, long, tmp_path / "timeline", progress=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"20 minutes of audio: peak Python memory {peak / 2**20:.1f} MiB")
    assert timeline.duration_seconds == pytest.approx(1200, abs=0.5)
    assert peak < 20 * 2**20
    progress = capsys.readouterr().err
    assert "audio" in progress and "1.20k/1.20k" in progress  # the bar counts seconds of audio against the total


def test_a_file_that_is_not_audio_is_refused_naming_it(saved_mer, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a recording")
    status = main(["timeline", str(notes), "--model", str(saved_mer), "--out", str(tmp_path / "t"), "--quiet"])
    assert status == 2
    assert f"Could not read '{notes}' as audio" in capsys.readouterr().err


def test_segment_lengths_follow_the_lengths_the_model_was_trained_on(saved_mer):
    pipe = load_pipeline(str(saved_mer), runtime="eager", device="cpu")
    assert segment_lengths(pipe) == (0.5, 15.0)  # nothing recorded: the segmenter's defaults
    pipe.model.config.training_utterance_seconds = {"p05": 1.1, "median": 2.0, "p95": 3.6}
    assert segment_lengths(pipe) == (0.5, 3.6)
    assert segment_lengths(pipe, max_seconds=500) == (0.5, pipe.max_seconds)  # never beyond the model's input
    with pytest.raises(ValueError, match="max_seconds"):
        segment_lengths(pipe, min_seconds=2.0, max_seconds=3.0)
