"""`mer timeline`: a long recording cut into speech segments by real Silero VAD, each transcribed by real Whisper
tiny.en and classified, written as a table and a picture, with memory bounded whatever the recording's length."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile

from dataset_scripts.long_recording import build_long_recording
from mer.serving import timeline as timeline_module
from mer.serving.cli import main
from mer.serving.inference import load_pipeline
from mer.serving.timeline import RecordingTooLong, segment_lengths, write_timeline
from mer.serving.vad import boundary_scores
from mer.training.speech_recognition import word_error_rate


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


PEAK_MEMORY = """
import json, resource, sys
from mer.serving.inference import load_pipeline
from mer.serving.timeline import write_timeline
model, asr_model, recording, out = sys.argv[1:]
pipe = load_pipeline(model, asr_model=asr_model, runtime="eager", device="cpu")
timeline = write_timeline(pipe, recording, out, progress=True)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps([peak, timeline.duration_seconds, len(timeline.segments)]))
"""


def test_memory_does_not_grow_with_the_recording_and_progress_is_shown(
    saved_mer, real_asr, synthetic_corpus, tmp_path
):
    """The peak resident size of a `mer timeline` process (torch, the VAD, the speech recognizer and ffmpeg's pipe
    included) on five minutes of speech, transcribed and classified, followed by 25 minutes of room noise, and by
    115 minutes: the same segments are classified, and the two-hour recording's peak is within a fifth of what its
    extra 90 minutes take decoded (346 MB as 16 kHz float32) of the half-hour one's (two runs measured -4 and +19
    MiB: the peak is the last batch's, and moves with what the allocator holds)."""
    speech = build_long_recording(synthetic_corpus, tmp_path / "speech.wav", minutes=5, seed=3, pause_seconds=(20, 30))
    runs = []
    for minutes in (25, 115):
        recording = tmp_path / f"speech-then-{minutes}-minutes-of-noise.flac"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-i", str(tmp_path / "speech.wav"), "-f", "lavfi", "-i",
             f"anoisesrc=d={60 * minutes}:c=white:r=16000:a=0.0005", "-filter_complex",
             "[0:a][1:a]concat=n=2:v=0:a=1", str(recording)],
            check=True,
        )  # fmt: skip
        result = subprocess.run(
            [sys.executable, "-c", PEAK_MEMORY, str(saved_mer), real_asr, str(recording), str(recording) + ".out"],
            env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    (half_hour, _, segments), (two_hours, duration, last_segments) = runs
    print(f"peak resident memory: {half_hour / 2**20:.0f} MiB (30 min), {two_hours / 2**20:.0f} MiB (2 h)")
    assert duration == pytest.approx(speech.duration + 115 * 60, abs=0.5)
    assert last_segments == segments >= 0.8 * len(speech.utterances)  # the speech was transcribed and classified
    assert two_hours - half_hour < 0.2 * 90 * 60 * 16000 * 4
    assert "audio" in result.stderr and re.search(r"(\d\.\d\dk)/\1", result.stderr)  # seconds of audio, to the end


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


# --- a killed run, another run's folder, damaged samples, a limit on what the file holds ---------------------------
@pytest.fixture(scope="module")
def short_recording(synthetic_corpus, tmp_path_factory):
    """Six corpus utterances with pauses (16 kHz wav): enough segments for a run to be killed between batches."""
    folder = tmp_path_factory.mktemp("short")
    build_long_recording(synthetic_corpus, folder / "talk.wav", count=6, seed=3)
    return folder / "talk.wav"


def test_a_killed_timeline_resumes_without_classifying_again_what_was_done(
    saved_mer, real_asr, short_recording, tmp_path, monkeypatch, caplog
):
    pipe = load_pipeline(str(saved_mer), asr_model=real_asr, runtime="eager", device="cpu")
    whole = write_timeline(pipe, short_recording, tmp_path / "whole", batch_size=2, progress=False)
    assert len(whole.segments) >= 4

    classified = []
    real_classify = timeline_module._classify

    def killed_after_two(pipe, batch, labels):  # the process dies after its first batch was written
        if classified:
            raise KeyboardInterrupt
        for segment in real_classify(pipe, batch, labels):
            classified.append(segment)
            yield segment

    out = tmp_path / "killed"
    monkeypatch.setattr(timeline_module, "_classify", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        write_timeline(pipe, short_recording, out, batch_size=2, progress=False)
    assert json.loads((out / "timeline.json").read_text())["complete"] is False  # the folder says what it holds
    assert not (out / "timeline.png").exists()
    with (out / "timeline.partial.jsonl").open("a") as partial:
        partial.write('{"start": 9.1, "end": 1')  # and the kill tore the record it was writing

    def counted(pipe, batch, labels):
        classified.extend(batch)
        yield from real_classify(pipe, batch, labels)

    classified.clear()
    monkeypatch.setattr(timeline_module, "_classify", counted)
    resumed = write_timeline(pipe, short_recording, out, batch_size=2, progress=False)

    assert "continuing a killed run" in caplog.text
    assert len(classified) == len(whole.segments) - 2  # the first batch was not classified again
    assert [(s.start, s.end, s.transcript, s.label) for s in resumed.segments] == [
        (s.start, s.end, s.transcript, s.label) for s in whole.segments
    ]
    for mine, reference in zip(resumed.segments, whole.segments, strict=True):
        assert mine.scores == pytest.approx(reference.scores, abs=1e-5)
    with (out / "timeline.csv").open(newline="") as handle:
        assert [float(row["start"]) for row in csv.DictReader(handle)] == [s.start for s in whole.segments]
    saved = json.loads((out / "timeline.json").read_text())
    assert saved["complete"] is True and len(saved["segments"]) == len(whole.segments)
    assert not (out / "timeline.partial.jsonl").exists() and (out / "timeline.png").exists()

    classified.clear()
    again = write_timeline(pipe, short_recording, out, batch_size=2, progress=False)  # finished: nothing to do
    assert classified == [] and len(again.segments) == len(whole.segments)


def _noise(path, seconds: float, rate: int = 16000):
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"anoisesrc=a=0.0005:d={seconds}:r={rate}", str(path)],
        check=True,
    )
    return path


def test_a_folder_holding_another_recordings_timeline_is_refused_unless_overwritten(saved_mer, tmp_path, capsys):
    first, second = _noise(tmp_path / "first.wav", 3), _noise(tmp_path / "second.wav", 4)
    out = tmp_path / "timeline"
    options = ["--model", str(saved_mer), "--out", str(out), "--runtime", "eager", "--quiet"]
    assert main(["timeline", str(first), *options]) == 0
    before = (out / "timeline.json").read_text()

    assert main(["timeline", str(second), *options]) == 2
    error = capsys.readouterr().err
    assert f"holds the timeline of {first.resolve()}" in error and str(second.resolve()) in error
    assert "--overwrite" in error
    assert (out / "timeline.json").read_text() == before  # nothing was touched

    assert main(["timeline", str(second), *options, "--overwrite"]) == 0
    assert json.loads((out / "timeline.json").read_text())["recording"] == str(second.resolve())


def test_samples_that_are_not_numbers_are_read_as_silence_with_a_warning_naming_the_file_and_time(
    saved_mer, tmp_path, caplog
):
    samples = (0.001 * np.random.default_rng(0).standard_normal(16000 * 5)).astype(np.float32)
    samples[48000:48010] = np.nan
    samples[60000] = np.inf
    damaged = tmp_path / "damaged.wav"
    soundfile.write(damaged, samples, 16000, subtype="FLOAT")
    pipe = load_pipeline(str(saved_mer), runtime="eager", device="cpu")

    timeline = write_timeline(pipe, damaged, tmp_path / "timeline", progress=False)

    assert timeline.non_finite_samples == 11
    assert f"{damaged.resolve()} holds samples that are not numbers (NaN or infinite), the first at 3.00 s" in (
        caplog.text
    )
    assert "11 samples were not numbers" in timeline.summary()
    assert timeline.duration_seconds == pytest.approx(5.0)


def test_a_limit_on_the_duration_holds_for_the_samples_decoded_not_for_the_header(saved_mer, tmp_path):
    pipe = load_pipeline(str(saved_mer), runtime="eager", device="cpu")
    long = _noise(tmp_path / "long.wav", 75)
    with pytest.raises(RecordingTooLong, match=f"{long.resolve()} holds more than 60 s of audio"):
        write_timeline(pipe, long, tmp_path / "timeline", progress=False, max_duration_seconds=60)
    assert write_timeline(pipe, long, tmp_path / "t2", progress=False, max_duration_seconds=90).complete


def _timeline_of(model: Path, real_asr: str, recording, out: Path) -> dict:
    """`mer timeline` of the recording by `model` (eager) into `out`; its timeline.json."""
    path, _ = recording
    status = main(["timeline", str(path), "--model", str(model), "--out", str(out), "--asr_model", real_asr,
                   "--runtime", "eager", "--quiet"])  # fmt: skip
    assert status == 0
    return json.loads((out / "timeline.json").read_text())


def test_a_model_with_dimensions_draws_and_writes_them_over_time(
    saved_mer_with_dimensions, real_asr, recording, tmp_path, capsys
):
    out = tmp_path / "timeline"
    table = _timeline_of(saved_mer_with_dimensions, real_asr, recording, out)
    assert table["dimensions"] == ["valence", "arousal"]
    with (out / "timeline.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[-2:] == ["valence", "arousal"] and len(rows) == len(table["segments"])
    for row, segment in zip(rows, table["segments"], strict=True):
        for name in ("valence", "arousal"):
            assert 0.0 <= segment["dimensions"][name] <= 1.0
            assert float(row[name]) == pytest.approx(segment["dimensions"][name], abs=1e-4)
    speech = sum(s["end"] - s["start"] for s in table["segments"])
    mean = sum(s["dimensions"]["arousal"] * (s["end"] - s["start"]) for s in table["segments"]) / speech
    assert f"arousal {mean:.2f} (on [0, 1])" in capsys.readouterr().out
    figure = timeline_module.timeline_figure(timeline_module.Timeline.from_json(table))
    try:  # probabilities, the dimensions under them, the words
        assert len(figure.axes) == 3
        assert [text.get_text() for text in figure.axes[1].get_legend().get_texts()] == ["valence", "arousal"]
    finally:
        timeline_module._close(figure)


def test_a_dimensions_only_model_draws_and_writes_its_dimensions_alone(
    saved_dimensions_only_mer, real_asr, recording, tmp_path, capsys
):
    out = tmp_path / "timeline"
    table = _timeline_of(saved_dimensions_only_mer, real_asr, recording, out)
    assert table["labels"] == [] and table["dimensions"] == ["arousal", "valence"] and table["segments"]
    assert all(s["label"] is None and s["scores"] == {} and set(s["dimensions"]) == {"arousal", "valence"}
               for s in table["segments"])  # fmt: skip
    with (out / "timeline.csv").open(newline="") as handle:
        header = next(csv.reader(handle))
    assert header == ["start", "end", "transcript", "transcript_source", "arousal", "valence"]
    printed = capsys.readouterr().out
    assert "classified in" in printed and "Speech-weighted mean arousal" in printed and "):" not in printed
    figure = timeline_module.timeline_figure(timeline_module.Timeline.from_json(table))
    try:  # the dimensions on top, the words under them: no probabilities to draw
        assert len(figure.axes) == 2 and figure.axes[0].get_ylabel() == "dimension (0-1)"
        assert figure.axes[0].get_title().endswith(f"{len(table['segments'])} speech segments")
    finally:
        timeline_module._close(figure)


# --- speakers ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Turn:
    speaker: str
    start: float
    end: float


@pytest.fixture(scope="module")
def conversation(tmp_path_factory):
    """Two espeak-ng voices, a man's and a woman's, taking eight turns with pauses of 0 to 1 s between them (at 0,
    the speaker changes inside one speech segment); the truth is each turn's voice, start and end. To a speaker
    encoder trained on people, synthetic voices are closer than two people (cosine 0.73): the tests say how many."""
    folder = tmp_path_factory.mktemp("conversation")
    sentences = [
        "Good morning, I wanted to talk about the report you sent yesterday.",
        "Of course, I have a few minutes before the next meeting starts.",
        "The numbers in the second table do not match the ones we agreed on.",
        "That is strange, I copied them straight from the spreadsheet.",
        "Could you check again and send me the corrected version today?",
        "Yes, I will look at it right after lunch and write to you.",
        "Thank you, that would help me prepare for the board tomorrow.",
        "No problem at all, I am sorry for the confusion it caused.",
    ]
    voices, pauses = ("en-us+m3", "en-us+f2"), (0.0, 0.7, 0.4, 1.0)
    pieces, turns, now, rate = [], [], 0.0, 22050
    for index, text in enumerate(sentences):
        spoken = folder / f"turn{index}.wav"
        subprocess.run(["espeak-ng", "-v", voices[index % 2], "-w", str(spoken), text], check=True)
        wave, rate = soundfile.read(spoken, dtype="float32")
        turns.append(_Turn(voices[index % 2], now, now + len(wave) / rate))
        pause = np.zeros(int(pauses[index % 4] * rate), dtype=np.float32)
        pieces += [wave, pause]
        now += (len(wave) + len(pause)) / rate
    soundfile.write(folder / "talk.wav", np.concatenate(pieces), rate)
    return SimpleNamespace(wav_path=folder / "talk.wav", turns=turns)


def test_speakers_name_each_segment_draw_a_lane_each_and_are_summed_up(
    saved_mer_with_dimensions, real_asr, conversation, tmp_path, capsys
):
    out = tmp_path / "timeline"
    command = ["timeline", str(conversation.wav_path), "--model", str(saved_mer_with_dimensions), "--out", str(out)]
    status = main([*command, "--asr_model", real_asr, "--runtime", "eager", "--quiet", "--num-speakers", "2"])

    assert status == 0
    saved = json.loads((out / "timeline.json").read_text())
    segments = saved["segments"]
    found = list(dict.fromkeys(segment["speaker"] for segment in segments))
    assert found == ["speaker_1", "speaker_2"]
    # Each true turn's time goes mostly to one found speaker, and the two turns' speakers to different ones.
    heard = {}
    for turn in conversation.turns:
        overlap = {name: 0.0 for name in found}
        for segment in segments:
            overlap[segment["speaker"]] += max(0.0, min(turn.end, segment["end"]) - max(turn.start, segment["start"]))
        best = max(overlap, key=overlap.get)
        assert overlap[best] >= 0.8 * sum(overlap.values())
        heard.setdefault(turn.speaker, set()).add(best)
    assert sorted(map(len, heard.values())) == [1, 1] and len(set.union(*heard.values())) == 2

    with (out / "timeline.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[:3] == ["start", "end", "speaker"]
    assert [row["speaker"] for row in rows] == [segment["speaker"] for segment in segments]
    with (out / "speakers.csv").open(newline="") as handle:
        summary = list(csv.DictReader(handle))
    assert list(summary[0]) == ["speaker", "speaking_seconds", "turns", "share_neutral", "share_happy", "share_angry",
                                "share_sad", "valence", "arousal"]  # fmt: skip
    assert [row["speaker"] for row in summary] == found
    for row, listed in zip(summary, saved["speaker_summary"], strict=True):
        mine = [s for s in segments if s["speaker"] == row["speaker"]]
        assert float(row["speaking_seconds"]) == pytest.approx(sum(s["end"] - s["start"] for s in mine), abs=0.01)
        assert sum(float(row[f"share_{label}"]) for label in ("neutral", "happy", "angry", "sad")) == pytest.approx(1)
        assert 0 <= float(row["arousal"]) <= 1 and listed["turns"] == int(row["turns"]) >= 1
    assert sum(int(row["turns"]) for row in summary) >= len(conversation.turns) - 2
    assert 0 < saved["speaker_seconds"] < saved["processing_seconds"]
    assert (out / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "2 speakers (found in" in capsys.readouterr().out


def test_without_speakers_the_timeline_is_as_before_and_a_killed_run_keeps_its_speaker_turns(
    saved_mer, real_asr, conversation, tmp_path, monkeypatch
):
    from mer.serving.speakers import SpeakerEncoder, SpeakerSettings

    pipe = load_pipeline(str(saved_mer), asr_model=real_asr, runtime="eager", device="cpu")
    plain = write_timeline(pipe, conversation.wav_path, tmp_path / "plain", progress=False)
    assert {segment.speaker for segment in plain.segments} == {None}
    assert not (tmp_path / "plain" / "speakers.csv").exists()

    settings, encoder = SpeakerSettings(num_speakers=2), SpeakerEncoder()
    real_classify = timeline_module._classify

    def killed(pipe, batch, labels):
        raise KeyboardInterrupt
        yield

    out = tmp_path / "killed"
    monkeypatch.setattr(timeline_module, "_classify", killed)
    with pytest.raises(KeyboardInterrupt):
        write_timeline(pipe, conversation.wav_path, out, progress=False, speakers=settings, speaker_encoder=encoder)
    assert (out / "speaker_turns.json").exists()

    class Unused:
        def embed_windows(self, waveform):
            raise AssertionError("the speaker pass ran again")

    monkeypatch.setattr(timeline_module, "_classify", real_classify)
    resumed = write_timeline(
        pipe, conversation.wav_path, out, progress=False, speakers=settings, speaker_encoder=Unused()
    )
    assert resumed.complete and {segment.speaker for segment in resumed.segments} == {"speaker_1", "speaker_2"}
    speech = sum(s.end - s.start for s in resumed.segments)
    assert speech == pytest.approx(sum(s.end - s.start for s in plain.segments), abs=0.05)  # cut, not lost

    with pytest.raises(ValueError, match="differs in speakers"):  # another speaker setting is another run
        write_timeline(pipe, conversation.wav_path, out, progress=False, speakers=SpeakerSettings(num_speakers=3))


def test_more_speakers_than_the_speech_holds_is_refused(saved_mer, real_asr, short_recording, tmp_path, capsys):
    status = main(["timeline", str(short_recording), "--model", str(saved_mer), "--out", str(tmp_path / "t"),
                   "--asr_model", real_asr, "--quiet", "--num-speakers", "500"])  # fmt: skip
    assert status != 0
    assert "num_speakers is 500, but the speech gives only" in capsys.readouterr().err


def test_an_enrolled_voice_names_its_speaker(saved_mer, real_asr, conversation, tmp_path, capsys):
    clip = tmp_path / "him.wav"
    subprocess.run(["espeak-ng", "-v", "en-us+m3", "-w", str(clip), "This is my voice, as I read this sentence to "
                    "you slowly and clearly, so that you know it."], check=True)  # fmt: skip
    out = tmp_path / "named"
    status = main(["timeline", str(conversation.wav_path), "--model", str(saved_mer), "--out", str(out),
                   "--asr_model", real_asr, "--quiet", "--num-speakers", "2", "--enroll", f"him={clip}"])  # fmt: skip

    assert status == 0
    segments = json.loads((out / "timeline.json").read_text())["segments"]
    assert list(dict.fromkeys(segment["speaker"] for segment in segments)) == ["him", "speaker_1"]

    short = tmp_path / "short.wav"
    subprocess.run(["espeak-ng", "-v", "en-us+m3", "-w", str(short), "Hi."], check=True)
    status = main(["timeline", str(conversation.wav_path), "--model", str(saved_mer), "--out", str(tmp_path / "x"),
                   "--asr_model", real_asr, "--quiet", "--enroll", f"him={short}"])  # fmt: skip
    assert status == 2 and "short.wav holds" in capsys.readouterr().err
