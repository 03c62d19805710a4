"""Speech segments of a recording of any length, by Silero VAD, sized for an utterance-level emotion model.

`speech_segments(chunks)` reads mono float32 chunks at 16 kHz (as `mer.serving.audio.stream_audio` yields them, any
chunk size) and yields a `SpeechSegment` as soon as each one is final, so that the caller transcribes and classifies it
and lets it go. How a recording becomes segments (the knobs are `SegmentationConfig`'s):

1. Silero VAD scores every 32 ms window (512 samples) with a speech probability; its recurrent state and context
   are carried from chunk to chunk, so the chunk size does not change the result.
2. Speech starts at a window scoring at least `threshold` and ends once the score has stayed below
   `threshold - 0.15` (Silero's hysteresis) for `min_silence_seconds`: that stretch is a *run*.
3. A run shorter than `min_seconds` is joined to the nearer neighbouring run when the pause to it is at most
   `merge_pause_seconds` and the joined segment fits `max_seconds`; otherwise it is dropped (a click, a cough, a lone
   "mm"). Runs that are long enough are never joined: a pause of `min_silence_seconds` separates utterances.
4. A run too long for `max_seconds` is cut at its quietest point: a pause too short to end it if there is one, else
   the quietest gap between words (lowest speech probability plus relative level, averaged over 96 ms). Both pieces
   keep at least `min_seconds`.
5. Each segment gets `speech_pad_seconds` of audio either side, never overlapping its neighbour's.

Memory stays bounded whatever the recording's length: only the audio of the pending segments (a little over
``2 * max_seconds`` at most) and the caller's current chunk are kept, and speech probabilities only for the run being
built.

Speed: Silero's sequence model (`load_silero_vad(sequence=True)`: ONNX Runtime, one thread) scores a block of windows
per call and gives the stock streaming model's probabilities (to 1e-6) several hundred times faster than real time
on one core. With a silero-vad without it (6.2.3 has it) or without onnxruntime, the stock TorchScript model is called
window by window instead: the same segments, several times slower.

`boundary_scores` compares segments with known ones (precision and recall of matched boundaries), for the tests
and the benchmarks.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import inspect
import logging
import math
import numbers
import warnings
from collections import deque
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch

__all__ = [
    "DEFAULT_MAX_SECONDS",
    "DEFAULT_MIN_SECONDS",
    "MIN_SPEECH_SECONDS",
    "VAD_SAMPLING_RATE",
    "WINDOW_SAMPLES",
    "BoundaryScores",
    "SegmentationConfig",
    "SpeechSegment",
    "boundary_scores",
    "speech_probabilities",
    "speech_problem",
    "speech_seconds",
    "speech_segments",
]

logger = logging.getLogger(__name__)

VAD_SAMPLING_RATE = 16_000  # the only rate Silero's sequence model takes; `stream_audio` resamples anything to it
WINDOW_SAMPLES = 512  # Silero's window at 16 kHz: 32 ms
_CONTEXT_SAMPLES = 64  # Silero prefixes each window with the previous window's last 64 samples
_STATE_SHAPE = (1, 1, 128)  # the sequence model's LSTM state (h and c)
_BLOCK_WINDOWS = 512  # windows per ONNX call: 16 s of audio, 1.2 MB of input, however large the caller's chunk
_HYSTERESIS = 0.15  # Silero's: once speech has started, it continues until the score falls below threshold - 0.15
_SMOOTHING_WINDOWS = 3  # cuts follow 96 ms averages, so that one dip inside a word does not win


@dataclasses.dataclass(frozen=True, eq=False)
class SpeechSegment:
    """One segment of speech, cut out of the recording.

    Attributes:
        start: seconds from the recording's start to the first sample of `waveform`.
        end: seconds to the sample after its last one, so ``end - start == len(waveform) / 16000``.
        waveform: float32 mono samples at 16 kHz, the speech padded by `speech_pad_seconds` either side (its own
            copy: it keeps none of the caller's chunks alive).
    """

    start: float
    end: float
    waveform: np.ndarray

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclasses.dataclass(frozen=True)
class SegmentationConfig:
    """How speech runs become segments; every length is in seconds. The defaults suit utterance-level emotion models
    trained on IEMOCAP-like utterances (1-15 s, a few hundred ms of silence at the edges).

    Raises:
        ValueError: naming the parameter and its value, for a threshold outside (0, 1), a negative or non-finite
            length, a zero `min_silence_seconds`, or a `max_seconds` too short to split (below
            ``2 * (min_seconds + speech_pad_seconds)``).
    """

    # Silero's own default, tuned on its benchmarks; lower it for quiet or far-field speech.
    threshold: float = 0.5
    # Pauses inside a sentence are mostly shorter; between sentences and turns, longer. Silero's 0.1 s cuts between
    # words; faster-whisper's 2 s (made for speech recognition) joins several turns, mixing their emotions.
    min_silence_seconds: float = 0.5
    # Speech shorter than this is joined to a neighbour or dropped: clicks, breaths and coughs are much shorter,
    # IEMOCAP's shortest utterances are about this long, and less than that carries little emotion.
    min_seconds: float = 0.5
    # IEMOCAP's utterances average about 4.5 s and rarely run past 15 s: longer speech is split into pieces of the
    # lengths the model was trained on. Well inside Whisper's 30 s window.
    max_seconds: float = 15.0
    # 0.1 s keeps soft onsets, plosive releases and final fricatives whole (Silero's 30 ms clips some) while keeping
    # boundaries within a word of the speech.
    speech_pad_seconds: float = 0.1
    # A short run joins a neighbour at most this far away: a hesitant "well, ..." stays with its sentence; across
    # a longer pause it is a separate (and dropped) sound.
    merge_pause_seconds: float = 1.0

    def __post_init__(self) -> None:
        if not (isinstance(self.threshold, numbers.Real) and 0 < self.threshold < 1):
            raise ValueError(f"threshold must be a speech probability in (0, 1), got {self.threshold!r}")
        for name in ("min_silence_seconds", "min_seconds", "max_seconds", "speech_pad_seconds", "merge_pause_seconds"):
            value = getattr(self, name)
            if not (isinstance(value, numbers.Real) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
        if self.min_silence_seconds == 0:
            raise ValueError("min_silence_seconds must be > 0 (the silence that ends speech), got 0")
        shortest_max = 2 * (self.min_seconds + self.speech_pad_seconds)
        if self.max_seconds <= 0 or self.max_seconds < shortest_max:
            raise ValueError(
                f"max_seconds must be > 0 and at least 2 * (min_seconds + speech_pad_seconds) = {shortest_max:g}, so "
                f"that a long run splits into two padded pieces of min_seconds; got max_seconds={self.max_seconds!r}"
            )


DEFAULT_MIN_SECONDS: float = SegmentationConfig.min_seconds
DEFAULT_MAX_SECONDS: float = SegmentationConfig.max_seconds


def speech_probabilities(chunks: Iterable[np.ndarray], sampling_rate: int = VAD_SAMPLING_RATE) -> Iterator[np.ndarray]:
    """Silero's speech probability of every 512-sample window (32 ms) of a stream, computed as chunks arrive.

    Args:
        chunks: 1-D float32 arrays of consecutive samples, any sizes.
        sampling_rate: must be 16000.

    Returns:
        An iterator of float32 arrays whose concatenation holds one probability per window, in order; the last
        window is padded with zeros. The chunk sizes do not change the values (the model's state runs across chunks).

    Raises:
        ValueError: `sampling_rate` is not 16000 (at once), or a chunk is not 1-D (when it is read).
    """
    _check_rate(sampling_rate)
    return _probabilities(chunks, _WindowScorer(_new_model()))


# The least speech a clip must hold to be classified: Silero's own shortest speech (`min_speech_duration_ms` 250).
# Less is a click, a cough or a syllable cut off: speech recognition would invent words for it, and no emotion can
# be heard in it.
MIN_SPEECH_SECONDS = 0.25


def speech_seconds(waveform: np.ndarray, sampling_rate: int, threshold: float = SegmentationConfig.threshold) -> float:
    """Seconds of a clip that Silero scores as speech: its 32 ms windows scoring at least `threshold` (the
    timeline's default). A clip at another rate is resampled to 16 kHz first."""
    if sampling_rate != VAD_SAMPLING_RATE:
        from modeling_mer.processing_mer import resample

        waveform = resample(waveform, sampling_rate, VAD_SAMPLING_RATE)
    scores = speech_probabilities([np.asarray(waveform, dtype=np.float32)], VAD_SAMPLING_RATE)
    windows = sum(int((block >= threshold).sum()) for block in scores)
    return windows * WINDOW_SAMPLES / VAD_SAMPLING_RATE


def speech_problem(waveform: np.ndarray, sampling_rate: int, name: str = "The recording") -> str | None:
    """Why a clip cannot be classified as speech, in the words `mer predict` and the Space share, or None: Silero
    finds no speech in it, or less than `MIN_SPEECH_SECONDS`. `name` names the clip in the message."""
    seconds = speech_seconds(waveform, sampling_rate)
    if seconds == 0:
        return f"{name} holds no speech: the voice-activity detector (Silero VAD) found none in it."
    if seconds < MIN_SPEECH_SECONDS:
        return (
            f"{name} holds only {seconds:.2f} s of speech by the voice-activity detector (Silero VAD): at least "
            f"{MIN_SPEECH_SECONDS:g} s is needed to hear an emotion."
        )
    return None


def speech_segments(
    chunks: Iterable[np.ndarray],
    sampling_rate: int = VAD_SAMPLING_RATE,
    config: SegmentationConfig | None = None,
    **knobs: float,
) -> Iterator[SpeechSegment]:
    """Segments of speech of a stream of audio, yielded in order as each becomes final (see the module docstring).

    Chunks are consumed lazily and copied, so the caller may reuse its buffer. A segment comes with the chunk that
    makes it final: usually the one holding the end of its speech plus ``min_silence_seconds + merge_pause_seconds``,
    later when a short run that may still join it follows.

    Args:
        chunks: 1-D float32 arrays of consecutive samples, any sizes (`mer.serving.audio.stream_audio(path, 16000)`).
        sampling_rate: must be 16000.
        config: the segmentation's knobs (default `SegmentationConfig()`).
        knobs: `SegmentationConfig` fields that replace `config`'s, e.g. ``max_seconds=20.0``.

    Returns:
        An iterator of `SpeechSegment`s that do not overlap, each at most `max_seconds` long and with at least
        `min_seconds` of speech. A recording without speech gives none.

    Raises:
        ValueError: `sampling_rate` is not 16000 or a knob is out of range (at once, naming it), or a chunk is not
            1-D (when it is read).
        TypeError: a knob that `SegmentationConfig` does not have.
    """
    _check_rate(sampling_rate)
    config = dataclasses.replace(config or SegmentationConfig(), **knobs)
    return _segments(chunks, _Segmenter(config, sampling_rate))


def _probabilities(chunks: Iterable[np.ndarray], windows: _WindowScorer) -> Iterator[np.ndarray]:
    for chunk in chunks:
        probabilities, _ = windows.push(_checked_chunk(chunk))
        if probabilities.size:
            yield probabilities
    last, _ = windows.finish()
    if last.size:
        yield last


def _segments(chunks: Iterable[np.ndarray], segmenter: _Segmenter) -> Iterator[SpeechSegment]:
    for chunk in chunks:
        yield from segmenter.feed(_checked_chunk(chunk))
    yield from segmenter.finish()


@dataclasses.dataclass(frozen=True)
class BoundaryScores:
    """How well segments match known ones: a match has both its start and its end within `tolerance` seconds.

    `precision` is matched / predicted (1.0 when nothing was predicted), `recall` matched / reference (1.0 when
    there was nothing to find).
    """

    precision: float
    recall: float
    matched: int
    predicted: int
    reference: int
    tolerance: float

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 0.0 if total == 0 else 2 * self.precision * self.recall / total


def boundary_scores(
    predicted: Iterable[tuple[float, float]], reference: Iterable[tuple[float, float]], tolerance: float = 0.3
) -> BoundaryScores:
    """Matches predicted segments to reference ones one to one and scores the matching.

    A predicted `(start, end)` matches a reference one when ``|start - start'| <= tolerance`` and
    ``|end - end'| <= tolerance``. Each reference, in time order, takes the earliest unmatched predicted segment
    that matches it: when neither side overlaps itself, that is a largest possible matching.

    Raises:
        ValueError: a negative or non-finite `tolerance`, or a segment whose end is before its start.
    """
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be a finite number of seconds >= 0, got {tolerance!r}")
    predicted, reference = _sorted_intervals(predicted, "predicted"), _sorted_intervals(reference, "reference")
    used = [False] * len(predicted)
    first, matched = 0, 0
    for start, end in reference:
        while first < len(predicted) and predicted[first][0] < start - tolerance:
            first += 1  # starts too early for this reference, and references only start later
        candidate = first
        while candidate < len(predicted) and predicted[candidate][0] <= start + tolerance:
            if not used[candidate] and abs(predicted[candidate][1] - end) <= tolerance:
                used[candidate] = True
                matched += 1
                break
            candidate += 1
    return BoundaryScores(
        precision=matched / len(predicted) if predicted else 1.0,
        recall=matched / len(reference) if reference else 1.0,
        matched=matched,
        predicted=len(predicted),
        reference=len(reference),
        tolerance=tolerance,
    )


def _sorted_intervals(segments: Iterable[tuple[float, float]], name: str) -> list[tuple[float, float]]:
    intervals = sorted((float(start), float(end)) for start, end in segments)
    for start, end in intervals:
        if not end >= start:
            raise ValueError(f"{name} segment ({start}, {end}) ends before it starts")
    return intervals


def _check_rate(sampling_rate: int) -> None:
    if sampling_rate != VAD_SAMPLING_RATE:
        raise ValueError(
            f"sampling_rate must be {VAD_SAMPLING_RATE} (Silero VAD's sequence model), got {sampling_rate}; decode "
            f"the recording at {VAD_SAMPLING_RATE} Hz, e.g. mer.serving.audio.stream_audio(path, {VAD_SAMPLING_RATE})"
        )


def _checked_chunk(chunk: np.ndarray) -> np.ndarray:
    chunk = np.array(chunk, dtype=np.float32)  # a copy, C-contiguous
    if chunk.ndim != 1:
        raise ValueError(f"audio chunks must be 1-D (mono samples), got an array of shape {chunk.shape}")
    return chunk


# --- the model ----------------------------------------------------------------------------------------------------
def _import_silero():
    """`silero_vad`, imported without its side effect: importing `silero_vad.model` sets torch's thread count to 1,
    which is the caller's business."""
    threads = torch.get_num_threads()
    try:
        import silero_vad
    finally:
        torch.set_num_threads(threads)
    return silero_vad


def _load_silero(**kwargs):
    """`load_silero_vad(**kwargs)` without its deprecation chatter (importlib.resources.path, torch.jit.load)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return _import_silero().load_silero_vad(**kwargs)


def _sequence_model_available() -> bool:
    silero = _import_silero()
    takes_sequence = "sequence" in inspect.signature(silero.load_silero_vad).parameters  # 6.2.3 has it, 6.0 not
    return takes_sequence and importlib.util.find_spec("onnxruntime") is not None


@functools.cache
def _sequence_session():
    """The sequence model's ONNX session: stateless (the state goes in and out of each call), so one is shared."""
    return _load_silero(sequence=True).session


def _new_model():
    """A scorer of (windows, 512) float32 blocks with its own state: the sequence model, else the stock one."""
    if _sequence_model_available():
        return _SequenceModel(_sequence_session())
    logger.warning("Silero VAD's sequence model needs silero-vad 6.2.3 and onnxruntime; using the slower stock model")
    return _StockModel(_load_silero())


class _SequenceModel:
    """Silero's sequence model fed blocks of windows, its LSTM state and 64-sample context carried between calls, as
    the stock model carries them between windows."""

    def __init__(self, session) -> None:
        self._session = session
        self._hidden = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._cell = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._context = np.zeros(_CONTEXT_SAMPLES, dtype=np.float32)

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        scores = []
        for first in range(0, len(windows), _BLOCK_WINDOWS):
            block = windows[first : first + _BLOCK_WINDOWS]  # (n, 512)
            contexts = np.empty((len(block), _CONTEXT_SAMPLES), dtype=np.float32)
            contexts[0] = self._context
            contexts[1:] = block[:-1, -_CONTEXT_SAMPLES:]
            self._context = block[-1, -_CONTEXT_SAMPLES:].copy()
            framed = np.concatenate((contexts, block), axis=1)  # (n, 576)
            inputs = {"input": framed, "h": self._hidden, "c": self._cell}
            probabilities, self._hidden, self._cell = self._session.run(["speech_probs", "hn", "cn"], inputs)
            scores.append(probabilities.reshape(-1))
        return np.concatenate(scores) if len(scores) > 1 else scores[0]


class _StockModel:
    """Silero's stock TorchScript model, one window per call (it keeps its state and context itself)."""

    def __init__(self, model) -> None:
        self._model = model
        model.reset_states()

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        # Without optimized execution: the profiling executor's passes cost seconds on the first calls (and again
        # after a reset of the state) and make this small model no faster.
        with torch.inference_mode(), torch.jit.optimized_execution(False):
            scores = [self._model(window, VAD_SAMPLING_RATE).item() for window in torch.from_numpy(windows)]
        return np.array(scores, dtype=np.float32)


class _WindowScorer:
    """Cuts a stream of chunks into whole windows (the remainder waits for the next chunk); gives each window's
    speech probability and RMS level."""

    def __init__(self, model) -> None:
        self._model = model
        self._remainder = np.zeros(0, dtype=np.float32)

    def push(self, chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        samples = np.concatenate((self._remainder, chunk)) if self._remainder.size else chunk
        count = samples.size // WINDOW_SAMPLES
        self._remainder = samples[count * WINDOW_SAMPLES :].copy()
        return self._score(samples[: count * WINDOW_SAMPLES].reshape(count, WINDOW_SAMPLES))

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """Scores the last, partial window padded with zeros (as Silero's `get_speech_timestamps` does)."""
        window = np.zeros((1 if self._remainder.size else 0, WINDOW_SAMPLES), dtype=np.float32)
        window.reshape(-1)[: self._remainder.size] = self._remainder
        self._remainder = np.zeros(0, dtype=np.float32)
        return self._score(window)

    def _score(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not len(windows):
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.float32)
        return self._model(windows), np.sqrt(np.mean(np.square(windows), axis=1))


# --- runs and segments (all positions in samples) -----------------------------------------------------------------
Span = tuple[int, int]  # [start, end) in samples


class _RunDetector:
    """Speech runs from window scores: hysteresis, the silence that ends a run, and the cut of a run that outgrows
    the longest segment. The cut is decided once the run is `min_seconds` past that length and still in speech (a
    pause that may end it is waited out, at most `min_silence_seconds`), so that both pieces have min_seconds."""

    def __init__(self, config: SegmentationConfig, rate: int) -> None:
        self._threshold = config.threshold
        self._negative = max(config.threshold - _HYSTERESIS, 0.01)
        self._min_silence = round(config.min_silence_seconds * rate)
        self._min_speech = round(config.min_seconds * rate)
        self._max_speech = round(config.max_seconds * rate) - 2 * round(config.speech_pad_seconds * rate)
        self.start: int | None = None  # the open run's first sample; None between runs
        self._silence: int | None = None  # first sample of the silence that may end the open run
        self._origin = 0  # first sample of the window of `_scores[0]` (a multiple of 512; `start` may lie inside it)
        self._scores: list[float] = []  # speech probability of each window of the open run
        self._levels: list[float] = []  # and its RMS level, which tells the quiet moments of fluent speech

    def step(self, position: int, score: float, level: float) -> list[Span]:
        """Takes the speech probability and RMS level of the window starting at sample `position`; returns the runs
        (or pieces of runs) it closes."""
        if self.start is None:
            if score >= self._threshold:
                self.start, self._origin, self._silence = position, position, None
                self._scores, self._levels = [score], [level]
            return []
        self._scores.append(score)
        self._levels.append(level)
        if score >= self._threshold:
            self._silence = None
        elif score < self._negative and self._silence is None:
            self._silence = position
        now = position + WINDOW_SAMPLES
        if self._silence is not None and now - self._silence >= self._min_silence:
            return self.close(self._silence)
        if self._silence is None and now - self.start >= self._max_speech + self._min_speech:
            return [self._cut_open_run()]  # in speech: what follows the cut has min_seconds already
        return []

    def close(self, end: int) -> list[Span]:
        """Ends the open run at sample `end`; returns it, in two pieces cut at its quietest point when too long."""
        start, length = self.start, (end - self.start if self.start is not None else 0)
        pieces: list[Span] = [] if length <= 0 else [(start, end)]
        if length > self._max_speech:
            earliest = start + max(self._min_speech, length - self._max_speech)
            latest = start + min(self._max_speech, length - self._min_speech)
            cut = self._origin + _quietest(self._scores, self._levels, earliest - self._origin, latest - self._origin)
            pieces = [(start, cut), (cut, end)]
        self.start, self._silence, self._scores, self._levels = None, None, [], []
        return pieces

    def finish(self, total: int) -> list[Span]:
        """Closes the open run at the end of a recording of `total` samples (or where its last silence began)."""
        if self.start is None:
            return []
        return self.close(min(total, self._silence if self._silence is not None else total))

    def _cut_open_run(self) -> Span:
        start, offset = self.start, self.start - self._origin
        cut = _quietest(self._scores, self._levels, offset + self._max_speech // 2, offset + self._max_speech)
        window = cut // WINDOW_SAMPLES  # the quiet window is kept, half in each piece
        self._scores, self._levels = self._scores[window:], self._levels[window:]
        self._origin += window * WINDOW_SAMPLES
        self.start = self._origin + cut % WINDOW_SAMPLES
        return (start, self.start)


def _quietest(scores: list[float], levels: list[float], earliest: int, latest: int) -> int:
    """The centre of the quietest window whose centre lies from `earliest` to `latest`, all in samples from the
    start of the window of `scores[0]` (`scores[i]`, `levels[i]`: the window starting at ``i * 512``).

    Quietest: the lowest sum of the speech probability and the RMS level relative to the loudest candidate, both
    averaged over 96 ms. A pause (probability near 0) wins over any moment of speech; in fluent speech, where the
    probability stays near 1, the level finds the gaps between words. The latest of equals wins.
    """
    half = WINDOW_SAMPLES // 2
    last = min((latest - half) // WINDOW_SAMPLES, len(scores) - 1)
    first = min(max(-(-(earliest - half) // WINDOW_SAMPLES), 0), last)
    kernel = np.full(_SMOOTHING_WINDOWS, 1 / _SMOOTHING_WINDOWS)
    probability = np.convolve(np.asarray(scores), kernel, mode="same")[first : last + 1]
    level = np.convolve(np.asarray(levels), kernel, mode="same")[first : last + 1]
    cost = probability + level / max(float(level.max()), 1e-12)
    index = first + len(cost) - 1 - int(np.argmin(cost[::-1]))
    return index * WINDOW_SAMPLES + half


class _RunMerger:
    """Decides which runs become segments: a short run waits for the next one, then joins the nearer neighbour within
    reach or is dropped; a long run is held until no short run can still join it; segments are padded on the way
    out, never over their neighbours."""

    def __init__(self, config: SegmentationConfig, rate: int) -> None:
        self._min_speech = round(config.min_seconds * rate)
        self._max_speech = round(config.max_seconds * rate) - 2 * round(config.speech_pad_seconds * rate)
        self._merge_pause = round(config.merge_pause_seconds * rate)
        self._pad = round(config.speech_pad_seconds * rate)
        self._kept: Span | None = None  # a run of at least min_seconds, not yet yielded
        self._short: Span | None = None  # a shorter run after `_kept`, waiting for the next run
        self._next_start: int | None = None  # where the first sound after `_kept` starts, once known
        self._emitted_end = 0  # the last segment's end: the next one's padding starts no earlier
        self._total = math.inf  # the recording's length, once known

    def add(self, run: Span) -> list[Span]:
        """Takes a closed run; returns the segments (padded spans) that are now final."""
        if self._short is not None:
            run = self._settle_short(run)
        if run[1] - run[0] < self._min_speech:
            self._short = run
            if self._kept is not None and self._next_start is None:
                self._next_start = run[0]
            return []
        segments = []
        if self._kept is not None:
            segments.append(self._padded(self._kept, run[0] if self._next_start is None else self._next_start))
        self._kept, self._next_start = run, None
        return segments

    def expire(self, horizon: int) -> list[Span]:
        """Yields what no run starting at sample `horizon` or later can join; returns those segments."""
        wait = max(self._merge_pause, 2 * self._pad)  # beyond joining, and the padding cannot meet the next sound
        if self._short is not None and horizon - self._short[1] > wait:
            self._settle_short(None)
        if self._short is not None or self._kept is None or horizon - self._kept[1] <= wait:
            return []
        segment = self._padded(self._kept, self._next_start)
        self._kept, self._next_start = None, None
        return [segment]

    def finish(self, total: int) -> list[Span]:
        """The last segments of a recording of `total` samples."""
        self._total = total
        return self.expire(math.inf)

    def earliest_needed(self) -> int | None:
        """The first sample a pending segment may still need, or None when nothing is pending."""
        first = self._kept or self._short
        return None if first is None else max(first[0] - self._pad, self._emitted_end)

    def _settle_short(self, next_run: Span | None) -> Span | None:
        """Joins the waiting short run to the nearer neighbour within reach (before: `_kept`; after: `next_run`),
        or drops it; returns `next_run`, extended when the short run joined it."""
        short, self._short = self._short, None
        before = after = math.inf
        if self._kept is not None and short[1] - self._kept[0] <= self._max_speech:
            before = short[0] - self._kept[1]
        if next_run is not None and next_run[1] - short[0] <= self._max_speech:
            after = next_run[0] - short[1]
        if after <= self._merge_pause and after < before:
            return (short[0], next_run[1])
        if before <= self._merge_pause:
            self._kept, self._next_start = (self._kept[0], short[1]), None
        return next_run

    def _padded(self, run: Span, next_start: int | None) -> Span:
        start = max(run[0] - self._pad, self._emitted_end)
        end = run[1] + self._pad
        if next_start is not None:  # a closer sound than the padding: the pause is shared half and half
            end = min(end, (run[1] + next_start) // 2)
        end = int(min(end, self._total))
        self._emitted_end = end
        return (start, end)


class _AudioBuffer:
    """The recent audio as the chunks that hold it, from the oldest sample a pending segment may need."""

    def __init__(self) -> None:
        self._chunks: deque[np.ndarray] = deque()
        self._start = 0  # first sample of the first chunk kept
        self.end = 0  # samples received

    def append(self, chunk: np.ndarray) -> None:
        self._chunks.append(chunk)
        self.end += chunk.size

    def trim(self, keep_from: int) -> None:
        while self._chunks and self._start + self._chunks[0].size <= keep_from:
            self._start += self._chunks.popleft().size

    def read(self, start: int, end: int) -> np.ndarray:
        """A copy of samples [start, end), which must not have been trimmed away."""
        pieces, offset = [], self._start
        for chunk in self._chunks:
            low, high = max(start - offset, 0), min(end - offset, chunk.size)
            if high > low:
                pieces.append(chunk[low:high])
            offset += chunk.size
            if offset >= end:
                break
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


class _Segmenter:
    """Chunks in, final segments out: the window scorer, the run detector, the merger and the audio they need."""

    def __init__(self, config: SegmentationConfig, rate: int) -> None:
        self._rate = rate
        self._threshold = config.threshold
        self._pad = round(config.speech_pad_seconds * rate)
        self._windows = _WindowScorer(_new_model())
        self._detector = _RunDetector(config, rate)
        self._merger = _RunMerger(config, rate)
        self._audio = _AudioBuffer()
        self._position = 0  # first sample of the next window to score

    def feed(self, chunk: np.ndarray) -> list[SpeechSegment]:
        self._audio.append(chunk)
        return self._take(self._windows.push(chunk))

    def finish(self) -> list[SpeechSegment]:
        segments = self._take(self._windows.finish())
        total = self._audio.end
        for run in self._detector.finish(total):
            segments += self._cut(self._merger.add(run))
        return segments + self._cut(self._merger.finish(total))

    def _take(self, windows: tuple[np.ndarray, np.ndarray]) -> list[SpeechSegment]:
        scores, levels = windows
        detector, merger, segments = self._detector, self._merger, []
        if detector.start is None and (scores.size == 0 or scores.max() < self._threshold):
            self._position += scores.size * WINDOW_SAMPLES  # silence: nothing for the detector to do
        else:
            position = self._position
            for score, level in zip(scores.tolist(), levels.tolist(), strict=True):
                for run in detector.step(position, score, level):
                    segments += self._cut(merger.add(run))
                position += WINDOW_SAMPLES
            self._position = position
        horizon = self._position if detector.start is None else detector.start  # no later run can start earlier
        segments += self._cut(merger.expire(horizon))
        needed = [horizon - self._pad, merger.earliest_needed()]
        self._audio.trim(max(0, min(n for n in needed if n is not None)))
        return segments

    def _cut(self, spans: Sequence[Span]) -> list[SpeechSegment]:
        rate = self._rate
        return [SpeechSegment(start / rate, end / rate, self._audio.read(start, end)) for start, end in spans]
