"""An emotion timeline of a long recording: voice activity detection cuts it into speech segments of lengths the
model was trained on, each segment is transcribed and classified, and a folder gets the table (CSV and JSON) and a
picture of the emotion probabilities over time with the words under them.

The recording is decoded, segmented and classified chunk by chunk: memory stays bounded whatever its length (only
the segments of one batch are held), and the CSV grows as segments are classified.

The folder always says what it holds: `timeline.json` is written first (naming the recording, its size and the
model, with `"complete": false`) and again when the run ends. A killed run of the same recording with the same model
and settings resumes: the segments already classified (kept exactly in `timeline.partial.jsonl` until the end) are
not classified again. A folder holding another recording's or another model's timeline is refused unless
`overwrite` is set. Samples that are not numbers (NaN or infinite, from a damaged float file) are read as silence,
with a warning naming the recording and the time of the first.

With speakers (`speakers`, `mer timeline --speakers auto`), a first pass over the recording finds who speaks when
(`mer.serving.speakers`: speaker embeddings, clustered), kept in `speaker_turns.json` so that a killed run does not
do it again; the second pass cuts each speech segment where the speaker changes and classifies the pieces. Each
segment then names its speaker, the picture draws a lane per speaker, and `speakers.csv` (and the JSON's
`speaker_summary`) gives each speaker's speaking time, turns, share of time in each emotion and mean dimensions.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from mer.serving.audio import audio_duration, stream_audio
from mer.serving.speakers import SpeakerEncoder, SpeakerSettings, speaker_turns
from mer.serving.tables import spreadsheet_safe
from mer.serving.vad import (
    DEFAULT_MAX_SECONDS,
    DEFAULT_MIN_SECONDS,
    VAD_SAMPLING_RATE,
    SegmentationConfig,
    SpeechSegment,
    speech_segments,
)
from modeling_mer.pipeline_mer import MERPipeline

__all__ = [
    "RecordingTooLong", "SpeakerSegment", "Timeline", "TimelineSegment", "classify_segments", "segment_lengths",
    "speaker_summary", "timeline_figure", "write_timeline",
]  # fmt: skip

logger = logging.getLogger(__name__)

_CHUNK_SECONDS = 30.0  # decoded at a time: 30 s of 16 kHz float32 is 1.9 MB
_MAX_WORDS_SHOWN = 40  # characters of a segment's transcript drawn under it (what fits the panel)
_MAX_SEGMENTS_WITH_WORDS = 200  # beyond this, words would overlap: the picture leaves them to the table
_FILES = (
    "timeline.json",
    "timeline.csv",
    "timeline.png",
    "timeline.partial.jsonl",
    "speaker_turns.json",
    "speakers.csv",
)
# What makes two runs the same run: a killed one resumes only when all of these agree.
_IDENTITY = (
    "recording", "recording_bytes", "labels", "model_fingerprint", "asr_model", "min_seconds", "max_seconds",
    "speakers",
)  # fmt: skip


class RecordingTooLong(ValueError):
    """The recording holds more audio than the caller allows (counted from the decoded samples, not the header)."""


@dataclass(frozen=True)
class TimelineSegment:
    """One classified speech segment: where it lies (seconds from the recording's start), what was said, the
    model's probabilities for each class and, for a model that predicts them, its dimensions (each on [0, 1]). A
    dimensions-only model's segments have no `label` or `score` (None) and no `scores` (empty)."""

    start: float
    end: float
    transcript: str
    transcript_source: str  # "asr" (transcribed) or "given"
    label: str | None
    score: float | None
    scores: dict[str, float]
    dimensions: dict[str, float] | None = None
    speaker: str | None = None  # with speakers: who speaks (``speaker_1``, ... or an enrolled name)


@dataclass(frozen=True, eq=False)
class SpeakerSegment(SpeechSegment):
    """A speech segment, or the part of one, that one speaker speaks."""

    speaker: str | None = None


@dataclass
class Timeline:
    """A recording's segments, in time order, with what made them."""

    recording: str
    labels: list[str]
    model: str
    model_fingerprint: str
    asr_model: str | None
    min_seconds: float
    max_seconds: float
    recording_bytes: int | None = None
    duration_seconds: float = 0.0
    processing_seconds: float = 0.0
    complete: bool = False
    non_finite_samples: int = 0  # NaN or infinite samples, read as silence
    segments: list[TimelineSegment] = field(default_factory=list)
    dimensions: list[str] = field(default_factory=list)  # what the model predicts beside the classes
    speakers: dict | None = None  # the speaker settings (`SpeakerSettings`), or None: no speakers
    speaker_seconds: float = 0.0  # of `processing_seconds`, what the speaker pass took
    speaker_summary: list[dict] = field(default_factory=list)

    @property
    def real_time_factor(self) -> float:
        """Processing time over the recording's duration (below 1: faster than real time)."""
        return self.processing_seconds / self.duration_seconds if self.duration_seconds else math.nan

    def summary(self) -> str:
        """What a user reads when the command ends."""
        damaged = (
            f" {self.non_finite_samples} samples were not numbers (NaN or infinite) and were read as silence."
            if self.non_finite_samples
            else ""
        )
        if not self.segments:
            return (
                f"No speech was found in {self.recording} ({self.duration_seconds:.1f} s): the timeline is empty."
                + damaged
            )
        speech = sum(segment.end - segment.start for segment in self.segments)
        counts = {label: sum(s.label == label for s in self.segments) for label in self.labels}
        shares = ", ".join(f"{label} {count}" for label, count in counts.items() if count)
        return (
            f"{len(self.segments)} speech segments ({speech:.1f} s of speech in {self.duration_seconds:.1f} s) "
            f"classified in {self.processing_seconds:.1f} s (real-time factor {self.real_time_factor:.3f})"
            f"{f': {shares}' if shares else ''}.{self._dimensions_summary(speech)}{self._speakers_summary()}{damaged}"
        )

    def _speakers_summary(self) -> str:
        """`` 2 speakers (found in 3.1 s): speaker_1 41.2 s in 6 turns, ...``, or nothing."""
        if self.speakers is None:
            return ""
        listed = ", ".join(
            f"{row['speaker']} {row['speaking_seconds']:.1f} s in {row['turns']} turn{'s' * (row['turns'] != 1)}"
            for row in self.speaker_summary
        )
        count = len(self.speaker_summary)
        return f" {count} speaker{'s' * (count != 1)} (found in {self.speaker_seconds:.1f} s): {listed}."

    def _dimensions_summary(self, speech: float) -> str:
        """`` Speech-weighted mean arousal 0.62, valence 0.41 (on [0, 1]).``, or nothing."""
        if not self.dimensions or speech <= 0:
            return ""
        spans = [(s.dimensions, s.end - s.start) for s in self.segments]
        listed = ", ".join(
            f"{name} {sum(values[name] * span for values, span in spans) / speech:.2f}" for name in self.dimensions
        )
        return f" Speech-weighted mean {listed} (on [0, 1])."

    def to_json(self) -> dict:
        record = asdict(self)
        record["real_time_factor"] = self.real_time_factor
        return record

    @classmethod
    def from_json(cls, record: dict) -> Timeline:
        fields = {name: value for name, value in record.items() if name in cls.__dataclass_fields__}
        fields["segments"] = [TimelineSegment(**segment) for segment in record.get("segments", [])]
        return cls(**fields)


def segment_lengths(pipe: MERPipeline, min_seconds: float | None = None, max_seconds: float | None = None):
    """`(min_seconds, max_seconds)` of the segments (`mer.serving.vad.SegmentationConfig`: speech, and whole segments):
    as given, else the segmenter's shortest, and the 95th percentile of the lengths the model was trained on when its
    config records them (train.py's `training_utterance_seconds`), else the segmenter's longest; never beyond the
    longest input the pipeline reads (the audio encoder's window), and never too short to split a long run in two.

    Raises:
        ValueError: lengths the segmenter refuses (naming them).
    """
    trained = getattr(pipe.model.config, "training_utterance_seconds", None) or {}
    min_seconds = DEFAULT_MIN_SECONDS if min_seconds is None else float(min_seconds)
    if max_seconds is None:
        shortest = 2 * (min_seconds + SegmentationConfig.speech_pad_seconds)
        max_seconds = max(trained.get("p95", DEFAULT_MAX_SECONDS), shortest)
    max_seconds = min(float(max_seconds), pipe.max_seconds)
    SegmentationConfig(min_seconds=min_seconds, max_seconds=max_seconds)  # checks them, naming the bad one
    return min_seconds, max_seconds


def classify_segments(
    pipe: MERPipeline, segments: Iterable[SpeechSegment], batch_size: int = 8
) -> Iterator[TimelineSegment]:
    """Transcribes and classifies `segments` (16 kHz) in batches, yielding each as soon as its batch is done."""
    labels = pipe.labels
    batch: list[SpeechSegment] = []
    for segment in segments:
        batch.append(segment)
        if len(batch) == batch_size:
            yield from _classify(pipe, batch, labels)
            batch = []
    if batch:
        yield from _classify(pipe, batch, labels)


def _classify(pipe: MERPipeline, batch: list[SpeechSegment], labels: list[str]) -> Iterator[TimelineSegment]:
    inputs = [{"array": segment.waveform, "sampling_rate": VAD_SAMPLING_RATE} for segment in batch]
    for segment, result in zip(batch, pipe(inputs, batch_size=len(inputs)), strict=True):
        scores = {item["label"]: item["score"] for item in result.get("labels", [])}  # none: dimensions only
        top = max(scores, key=scores.get) if scores else None
        yield TimelineSegment(
            start=round(segment.start, 3),
            end=round(segment.end, 3),
            transcript=result["transcript"],
            transcript_source="asr" if result["transcribed_by"] else "given",
            label=top,
            score=scores.get(top),
            scores={label: scores[label] for label in labels},
            dimensions=result.get("dimensions"),
            speaker=getattr(segment, "speaker", None),
        )


def write_timeline(
    pipe: MERPipeline,
    recording: str | Path,
    out_dir: str | Path,
    batch_size: int = 8,
    min_seconds: float | None = None,
    max_seconds: float | None = None,
    progress: bool = True,
    overwrite: bool = False,
    max_duration_seconds: float | None = None,
    speakers: SpeakerSettings | None = None,
    speaker_encoder: SpeakerEncoder | None = None,
) -> Timeline:
    """Builds the timeline of `recording` and writes `timeline.csv` (row by row, as segments are classified),
    `timeline.json` and `timeline.png` into `out_dir`. A recording without speech gives an empty timeline. A killed
    run of the same recording and model in `out_dir` is continued; a finished one is returned as it is.

    `max_duration_seconds` stops a recording that holds more audio than that, whatever its header says.

    `speakers` finds who speaks when first (with `speaker_encoder`, by default Resemblyzer's), splits segments where
    the speaker changes, names each segment's speaker, and writes `speakers.csv`.

    Raises:
        mer.serving.audio.AudioError: the recording cannot be read (naming it).
        ValueError: bad segment lengths (see `segment_lengths`), or `out_dir` holds another timeline (naming its
            recording and model) and `overwrite` is not set.
        RecordingTooLong: the recording holds more than `max_duration_seconds` of audio.
        mer.serving.speakers.SpeakerWeightsMissing: speakers are asked for and the encoder's weights are absent.
    """
    recording, out_dir = Path(recording), Path(out_dir)
    min_seconds, max_seconds = segment_lengths(pipe, min_seconds, max_seconds)
    labels = pipe.labels
    timeline = Timeline(
        recording=str(recording.resolve()),
        labels=labels,
        model=str(pipe.model.config.name_or_path),
        model_fingerprint=getattr(pipe, "fingerprint", ""),
        asr_model=pipe.speech_recognizer().model,
        min_seconds=min_seconds,
        max_seconds=max_seconds,
        recording_bytes=recording.stat().st_size,
        dimensions=pipe.dimensions,
        # As timeline.json holds them (lists, not tuples), so that a killed run's settings compare equal.
        speakers=json.loads(json.dumps(asdict(speakers))) if speakers is not None else None,
    )
    done = _resume(timeline, out_dir, overwrite)
    if timeline.complete:
        logger.warning("%s already holds the finished timeline of %s: nothing to do.", out_dir, recording)
        return timeline
    started = time.perf_counter() - timeline.processing_seconds
    total = audio_duration(recording)

    def speech(description: str, warn: bool = True):
        bar = tqdm(total=total, unit="s", unit_scale=True, disable=not progress, dynamic_ncols=True, desc=description)
        chunks = stream_audio(recording, VAD_SAMPLING_RATE, _CHUNK_SECONDS)
        decoded = _counted(chunks, timeline, bar, max_duration_seconds, warn=warn)
        return (
            bar,
            decoded,
            speech_segments(decoded, VAD_SAMPLING_RATE, min_seconds=min_seconds, max_seconds=max_seconds),
        )

    if speakers is not None:
        turns = _speaker_pass(timeline, out_dir, speakers, speaker_encoder, partial(speech, "speakers"))
        bar, decoded, segments = speech("emotion", warn=False)
        segments = _by_speaker(segments, turns)
    else:
        bar, decoded, segments = speech("audio")
    todo = (segment for segment in segments if segment.end > done + 1e-6)  # what a killed run had not classified
    with bar, closing(decoded), _Writer(out_dir, labels, timeline) as writer:
        for segment in classify_segments(pipe, todo, batch_size):
            timeline.segments.append(segment)
            writer.write(segment, time.perf_counter() - started)
            bar.set_postfix_str(f"{len(timeline.segments)} segments", refresh=False)
    timeline.processing_seconds = time.perf_counter() - started
    timeline.complete = True
    if speakers is not None:
        timeline.speaker_summary = speaker_summary(timeline)
        _write_speakers_csv(out_dir / "speakers.csv", timeline)
    figure = timeline_figure(timeline)
    figure.savefig(out_dir / "timeline.png", dpi=110)
    _close(figure)
    _write_json(out_dir, timeline)
    (out_dir / "timeline.partial.jsonl").unlink(missing_ok=True)
    return timeline


def _speaker_pass(timeline: Timeline, out_dir: Path, settings: SpeakerSettings, encoder, speech) -> list[dict]:
    """The recording's speaker turns (`mer.serving.speakers.speaker_turns`): those a killed run of this timeline
    found (`speaker_turns.json`), else found now and kept there. `speech(warn)` gives the progress bar, the decoded
    chunks and the speech segments of a pass over the recording."""
    path = out_dir / "speaker_turns.json"
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
        timeline.speaker_seconds = float(kept["seconds"])
        return kept["turns"]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # none yet, or cut short by a kill: found again
    started = time.perf_counter()
    encoder = encoder if encoder is not None else SpeakerEncoder()
    bar, decoded, segments = speech()
    with bar, closing(decoded):
        turns = speaker_turns(segments, encoder, settings, timeline.min_seconds)
    timeline.speaker_seconds = time.perf_counter() - started
    staging = path.with_suffix(".json.partial")
    staging.write_text(json.dumps({"seconds": timeline.speaker_seconds, "turns": turns}) + "\n", encoding="utf-8")
    staging.replace(path)
    return turns


def _by_speaker(segments: Iterable[SpeechSegment], turns: list[dict]) -> Iterator[SpeakerSegment]:
    """Each segment cut at the speaker turns that fall inside it (both come from the same pass of the voice activity
    detector over the same audio, so the turns' edges are the segments' own), each piece naming its speaker."""
    position = 0
    for segment in segments:
        while position < len(turns) and turns[position]["end"] <= segment.start + 1e-3:
            position += 1
        inside = []
        for turn in turns[position:]:
            if turn["start"] >= segment.end - 1e-3:
                break
            inside.append(turn)
        if not inside:  # cannot happen for the turns of this recording; kept whole, with no speaker
            yield SpeakerSegment(segment.start, segment.end, segment.waveform)
            continue
        bounds = [0, *(round((turn["start"] - segment.start) * VAD_SAMPLING_RATE) for turn in inside[1:])]
        bounds.append(len(segment.waveform))
        for turn, first, last in zip(inside, bounds, bounds[1:], strict=False):
            yield SpeakerSegment(
                segment.start + first / VAD_SAMPLING_RATE,
                segment.start + last / VAD_SAMPLING_RATE,
                segment.waveform[first:last].copy(),
                turn["speaker"],
            )


def speaker_summary(timeline: Timeline) -> list[dict]:
    """Per speaker, in the order they first speak: speaking time (s), turns (runs of consecutive segments), the share
    of their speaking time in each emotion (each segment counted under its top class), and the time-weighted mean of
    each dimension the model predicts."""
    rows: dict[str, dict] = {}
    previous = None
    for segment in timeline.segments:
        row = rows.setdefault(
            segment.speaker,
            {"speaker": segment.speaker, "speaking_seconds": 0.0, "turns": 0, "emotion_seconds": {}, "sums": {}},
        )
        span = segment.end - segment.start
        row["speaking_seconds"] += span
        row["turns"] += segment.speaker != previous
        previous = segment.speaker
        if segment.label is not None:
            row["emotion_seconds"][segment.label] = row["emotion_seconds"].get(segment.label, 0.0) + span
        for name in timeline.dimensions:
            row["sums"][name] = row["sums"].get(name, 0.0) + segment.dimensions[name] * span
    summary = []
    for row in rows.values():
        seconds = row["speaking_seconds"]
        summary.append(
            {
                "speaker": row["speaker"],
                "speaking_seconds": round(seconds, 3),
                "turns": row["turns"],
                "emotion_shares": {
                    label: round(row["emotion_seconds"].get(label, 0.0) / seconds, 4) for label in timeline.labels
                },
                "dimensions": {name: round(row["sums"][name] / seconds, 4) for name in timeline.dimensions},
            }
        )
    return summary


def _write_speakers_csv(path: Path, timeline: Timeline) -> None:
    """`speaker_summary` as a table: a `share_<class>` column per class and a column per dimension."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        rows = csv.writer(handle, lineterminator="\n")
        rows.writerow(["speaker", "speaking_seconds", "turns", *(f"share_{label}" for label in timeline.labels),
                       *timeline.dimensions])  # fmt: skip
        for row in timeline.speaker_summary:
            rows.writerow(
                [spreadsheet_safe(row["speaker"]), row["speaking_seconds"], row["turns"],
                 *(row["emotion_shares"][label] for label in timeline.labels),
                 *(row["dimensions"][name] for name in timeline.dimensions)]
            )  # fmt: skip


def _resume(timeline: Timeline, out_dir: Path, overwrite: bool) -> float:
    """Readies `out_dir` for `timeline`: takes over what a killed run of the same recording and model classified
    (into `timeline.segments`), or what a finished one holds (then `timeline.complete`), or starts afresh, and
    returns the end (seconds) of the last segment already done.

    Raises:
        ValueError: `out_dir` holds another run's files, and `overwrite` is not set.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    held = [name for name in _FILES if (out_dir / name).exists()]
    if overwrite or not held:
        for name in held:
            (out_dir / name).unlink()
        _write_json(out_dir, timeline)
        return 0.0
    try:
        earlier = json.loads((out_dir / "timeline.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        earlier = None
    if not isinstance(earlier, dict) or any(earlier.get(key) != getattr(timeline, key) for key in _IDENTITY):
        raise ValueError(_other_run(out_dir, timeline, earlier, held))
    if earlier.get("complete"):
        finished = Timeline.from_json(earlier)
        timeline.__dict__.update(finished.__dict__)
        return math.inf
    segments, seconds = _partial_segments(out_dir / "timeline.partial.jsonl")
    timeline.segments, timeline.processing_seconds = segments, seconds
    logger.warning(
        "%s: continuing a killed run of %s (%d segments were classified).", out_dir, timeline.recording, len(segments)
    )
    return segments[-1].end if segments else 0.0


def _other_run(out_dir: Path, timeline: Timeline, earlier: dict | None, held: list[str]) -> str:
    if earlier is None:
        what = f"files of another run ({', '.join(held)}) and no readable timeline.json"
    else:
        model = f"{earlier.get('model')} ({earlier.get('model_fingerprint')})"
        what = f"the timeline of {earlier.get('recording')} by {model}"
        differs = [key for key in _IDENTITY if earlier.get(key) != getattr(timeline, key)]
        what += f", which differs in {', '.join(differs)}"
    return (
        f"--out {out_dir} holds {what}; this run is {timeline.recording} by {timeline.model} "
        f"({timeline.model_fingerprint}). Choose another --out, or pass --overwrite to replace it."
    )


def _partial_segments(path: Path) -> tuple[list[TimelineSegment], float]:
    """The segments a killed run kept, in order, and the seconds it had spent; a last line cut short by the kill is
    dropped (its segment is done again)."""
    segments, seconds = [], 0.0
    if not path.exists():
        return segments, seconds
    lines = path.read_text(encoding="utf-8", errors="replace").rstrip("\x00").split("\n")
    for line in lines[:-1]:  # the text after the last newline is a record the kill cut short, if anything
        try:
            record = json.loads(line)
            seconds = float(record.pop("processing_seconds"))
            segments.append(TimelineSegment(**record))
        except (ValueError, TypeError, KeyError, AttributeError):
            break  # a torn record: it and what follows are done again
    return segments, seconds


def _write_json(out_dir: Path, timeline: Timeline) -> None:
    staging = out_dir / "timeline.json.partial"
    staging.write_text(json.dumps(timeline.to_json(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    staging.replace(out_dir / "timeline.json")


class _Writer:
    """Appends each classified segment to `timeline.partial.jsonl` (exact, flushed to disk: what a resumed run reads)
    and to `timeline.csv` (rounded, spreadsheet-safe: what people read), which starts with the segments already
    done."""

    def __init__(self, out_dir: Path, labels: list[str], timeline: Timeline):
        self.labels, self.dimensions = labels, timeline.dimensions
        self.partial = (out_dir / "timeline.partial.jsonl").open("w", encoding="utf-8")
        self.table = (out_dir / "timeline.csv").open("w", newline="", encoding="utf-8")
        self.rows = csv.writer(self.table, lineterminator="\n")
        classes = ["label", "score", *labels] if labels else []  # a dimensions-only model has none
        self.speakers = timeline.speakers is not None
        speaker = ["speaker"] if self.speakers else []
        header = ["start", "end", *speaker, "transcript", "transcript_source", *classes, *self.dimensions]
        self.rows.writerow(header)
        for segment in timeline.segments:  # what a killed run had done
            self.write(segment, timeline.processing_seconds)

    def write(self, segment: TimelineSegment, processing_seconds: float) -> None:
        record = {**asdict(segment), "processing_seconds": round(processing_seconds, 3)}
        self.partial.write(json.dumps(record, ensure_ascii=False) + "\n")
        classes = (
            [segment.label, f"{segment.score:.4f}", *(f"{segment.scores[label]:.4f}" for label in self.labels)]
            if self.labels
            else []
        )
        self.rows.writerow(
            [segment.start, segment.end, *([spreadsheet_safe(segment.speaker or "")] if self.speakers else []),
             spreadsheet_safe(segment.transcript), segment.transcript_source, *classes,
             *(f"{segment.dimensions[name]:.4f}" for name in self.dimensions)]
        )  # fmt: skip
        for handle in (self.partial, self.table):
            handle.flush()
        os.fsync(self.partial.fileno())

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *_) -> None:
        self.partial.close()
        self.table.close()


def _counted(chunks: Iterable, timeline: Timeline, bar: tqdm, limit: float | None, warn: bool = True) -> Iterator:
    """The decoded chunks, counted into `timeline.duration_seconds` and the bar, with samples that are not numbers
    set to silence (said once, unless `warn` is off: a second pass over the recording); stops with
    `RecordingTooLong` past `limit` seconds."""
    timeline.duration_seconds, timeline.non_finite_samples = 0.0, 0
    for chunk in chunks:
        bad = ~np.isfinite(chunk)
        if bad.any():
            if warn and not timeline.non_finite_samples:
                first = timeline.duration_seconds + int(np.argmax(bad)) / VAD_SAMPLING_RATE
                logger.warning(
                    "%s holds samples that are not numbers (NaN or infinite), the first at %.2f s: they are read as "
                    "silence.", timeline.recording, first,
                )  # fmt: skip
            timeline.non_finite_samples += int(bad.sum())
            chunk = np.where(bad, np.float32(0.0), chunk)
        seconds = len(chunk) / VAD_SAMPLING_RATE
        timeline.duration_seconds += seconds
        if limit is not None and timeline.duration_seconds > limit:
            raise RecordingTooLong(
                f"{timeline.recording} holds more than {limit:g} s of audio (whatever its header says)."
            )
        bar.update(seconds)
        yield chunk


def timeline_figure(timeline: Timeline):
    """The probabilities of each class over time (stacked, one bar per speech segment; gaps are silence), the
    dimensions under them for a model that predicts them (each segment's value as a level over its span; alone at
    the top for a dimensions-only model), and each segment's words at the bottom (left to the table when there are
    too many segments to read them)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    duration = max(timeline.duration_seconds, max((s.end for s in timeline.segments), default=0.0), 1.0)
    width = min(max(8.0, duration / 8), 30.0)
    show_words = 0 < len(timeline.segments) <= _MAX_SEGMENTS_WITH_WORDS
    show_scores = bool(timeline.labels)
    show_dimensions = bool(timeline.dimensions) and (bool(timeline.segments) or not show_scores)
    lanes = list(dict.fromkeys(segment.speaker for segment in timeline.segments)) if timeline.speakers else []
    lane_height = 0.4 + 0.35 * len(lanes)
    ratios = [*([3] if show_scores else []), *([2] if show_dimensions else []), *([lane_height] if lanes else []),
              *([3] if show_words else [])]  # fmt: skip
    height = 1.3 + 2.2 * show_scores + 2.2 * show_dimensions + 0.7 * lane_height * bool(lanes) + 3 * show_words
    figure, axes = plt.subplots(
        len(ratios), 1, figsize=(width, height),
        sharex=True, squeeze=False, gridspec_kw={"height_ratios": ratios},
    )  # fmt: skip
    if show_scores:
        _plot_scores(axes[0][0], timeline, plt.get_cmap("tab10"))
    if show_dimensions:
        _plot_dimensions(axes[int(show_scores)][0], timeline, plt.get_cmap("Dark2"))
    if lanes:
        _plot_speakers(axes[int(show_scores) + int(show_dimensions)][0], timeline, lanes, plt.get_cmap("tab10"))
    axes[0][0].set_xlim(0, duration)
    title = f"{Path(timeline.recording).name}: {len(timeline.segments)} speech segments"
    axes[0][0].set_title(title if timeline.segments else f"{Path(timeline.recording).name}: no speech found")
    if show_words:
        words_axis = axes[-1][0]
        words_axis.set_ylim(0, 1)
        words_axis.set_yticks([])
        for spine in ("top", "right", "left"):
            words_axis.spines[spine].set_visible(False)
        for segment in timeline.segments:
            text = segment.transcript or "(no words)"
            text = text if len(text) <= _MAX_WORDS_SHOWN else text[: _MAX_WORDS_SHOWN - 1] + "…"
            words_axis.text((segment.start + segment.end) / 2, 0.02, text, rotation=90, ha="center", va="bottom",
                            fontsize=7, clip_on=True)  # fmt: skip
    axes[-1][0].set_xlabel("time (s)")
    figure.tight_layout()
    return figure


def _plot_scores(axis, timeline: Timeline, colours) -> None:
    """Each segment's class probabilities, stacked over its span (gaps are silence)."""
    starts = np.array([segment.start for segment in timeline.segments])
    widths = np.array([segment.end - segment.start for segment in timeline.segments])
    bottoms = np.zeros(len(timeline.segments))
    for index, label in enumerate(timeline.labels):
        heights = np.array([segment.scores[label] for segment in timeline.segments])
        axis.bar(starts, heights, width=widths, bottom=bottoms, align="edge", color=colours(index % 10), label=label,
                 linewidth=0)  # fmt: skip
        bottoms = bottoms + heights
    if timeline.segments:
        axis.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    axis.set_ylim(0, 1)
    axis.set_ylabel("probability")


def _plot_dimensions(axis, timeline: Timeline, colours) -> None:
    """Each dimension as a level over each segment's span (gaps are silence: no value), on [0, 1]."""
    for index, name in enumerate(timeline.dimensions):
        colour = colours(index % 8)
        values = [segment.dimensions[name] for segment in timeline.segments]
        starts, ends = [s.start for s in timeline.segments], [s.end for s in timeline.segments]
        axis.hlines(values, starts, ends, colors=colour, linewidth=2.5, label=name)
        centres = [(start + end) / 2 for start, end in zip(starts, ends, strict=True)]
        axis.plot(centres, values, color=colour, linewidth=0.6, alpha=0.5)
    axis.set_ylim(0, 1)
    axis.set_ylabel("dimension (0-1)")
    axis.axhline(0.5, color="0.8", linewidth=0.5, zorder=0)
    if timeline.segments:
        axis.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)


def _plot_speakers(axis, timeline: Timeline, lanes: list[str], colours) -> None:
    """A lane per speaker, top to bottom in the order they first speak: each of their segments as a bar in the
    colour of its top class (grey for a dimensions-only model)."""
    for row, speaker in enumerate(lanes):
        mine = [segment for segment in timeline.segments if segment.speaker == speaker]
        colour = [colours(timeline.labels.index(s.label) % 10) if s.label in timeline.labels else "0.55" for s in mine]
        axis.broken_barh([(s.start, s.end - s.start) for s in mine], (row - 0.4, 0.8), facecolors=colour)
    axis.set_yticks(range(len(lanes)), [speaker or "(unknown)" for speaker in lanes], fontsize=8)
    axis.set_ylim(len(lanes) - 0.5, -0.5)
    axis.set_ylabel("speaker")


def _close(figure) -> None:
    from matplotlib import pyplot as plt

    plt.close(figure)
