"""The Space's long-recording tab without the UI: the emotion timeline of a recording's speech segments,
and what it refuses.
"""

from __future__ import annotations

import csv

import numpy as np
import pandas
import pytest
from space_fixtures import InputError, space_app, space_recognizer, write_audio, write_bytes

pytest_plugins = ("space_fixtures",)  # its fixtures: models, recognizer, clips, the served app
# gradio's queue calls a pandas option that pandas 3 deprecates; not ours to fix. (Older pandas lacks the warning
# class, and naming a missing class in a filter stops the whole test session.)
PANDAS_4_WARNING = hasattr(pandas.errors, "Pandas4Warning")
pytestmark = [pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")] if PANDAS_4_WARNING else []


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
    timeline = recognizer.timeline(str(write_audio(tmp_path / "room.wav", noise, 16000)), tmp_path / "out")

    assert timeline.segments == [] and space_app.timeline_table(timeline) == []
    assert timeline.summary() == "No speech was found in room.wav (8.0 s): the timeline is empty."


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: None, "No audio: record with the microphone or upload a file"),
        (lambda tmp: tmp / "missing.wav", r"Could not read 'missing.wav' as audio \(no such file\)"),
        (lambda tmp: write_bytes(tmp / "notes.mp3", b"not audio"), "Could not read 'notes.mp3' as audio"),
        (
            lambda tmp: write_audio(tmp / "long.wav", np.zeros(8000 * 75, np.int16), 8000),
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
    long_file = write_audio(tmp_path / "long.wav", np.zeros(8000 * 75, np.int16), 8000)
    with pytest.raises(
        InputError, match="The recording lasts more than 1 minute; the timeline takes at most 1 minute"
    ):
        recognizer.timeline(str(long_file), tmp_path / "out")  # counted up to the limit, not to its end
    short_file = write_audio(tmp_path / "short.wav", np.zeros(8000 * 5, np.int16), 8000)
    assert recognizer.timeline(str(short_file), tmp_path / "out").duration_seconds == pytest.approx(5.0)
