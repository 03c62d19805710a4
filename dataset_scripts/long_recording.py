"""A long recording made of a corpus's utterances with known pauses between them, and its ground truth: for the tests
and the benchmarks of speech segmentation (`mer.serving.vad`) and of `mer timeline`.

    python -m dataset_scripts.long_recording --corpus data/synthetic --minutes 10 --out /tmp/long.wav

writes ``/tmp/long.wav`` (mono, 16-bit) and ``/tmp/long.json`` beside it: where each utterance starts and ends, its id,
transcript and label. The corpus is any directory in the IEMOCAP_full_release layout (the synthetic corpus of
`dataset_scripts.synthetic`, or the real release), read by `dataset_scripts.iemocap.scan_corpus`.

* Only utterances of the project's four classes are used (``4class``: neu, hap and exc, ang, sad), so every stretch
  of speech has a label the model can predict; fru, xxx and the rare codes are skipped.
* Each utterance is trimmed of the silence at its ends (samples below -50 dBFS: espeak-ng writes up to 0.9 s of it),
  so a ground-truth interval is where speech is and the pauses are exactly the drawn ones. A real recording's noise
  floor is above that level, and its utterances keep their annotated extent.
* Before each utterance and after the last comes a pause drawn uniformly from `pause_seconds`; white noise at
  `noise_dbfs` (RMS) runs under the whole recording, as a room's floor does.
* Utterances come in a random order and repeat, in a new order, once all have been used. Everything follows from
  `seed`: the same corpus and seed give the same bytes.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import numbers
from collections.abc import Callable
from dataclasses import asdict, dataclass
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from dataset_scripts.iemocap import scan_corpus
from dataset_scripts.synthetic import CorpusSummary

__all__ = [
    "LongRecording",
    "PlacedUtterance",
    "build_long_recording",
    "check_pause_and_noise",
    "load_long_recording",
    "main",
    "noise_floor",
    "trimmed_speech",
]

logger = logging.getLogger(__name__)

# A turn change in a conversation; all longer than mer.serving.vad's 0.5 s min_silence.
DEFAULT_PAUSE_SECONDS = (0.6, 2.5)
DEFAULT_NOISE_DBFS = -60.0  # a quiet room through a decent microphone
_TRIM_DBFS = -50.0  # below this at an utterance's ends is silence, not speech
_CONFIG = "4class"


@dataclass(frozen=True)
class PlacedUtterance:
    """One utterance where it lies in the recording: `start` / `end` in seconds from its beginning (the speech's
    first sample and the sample after its last), `text` the corpus's transcript, `label` its 4-class name."""

    start: float
    end: float
    id: str
    text: str
    label: str
    raw_label: str


@dataclass(frozen=True)
class LongRecording:
    """A recording written by `build_long_recording` and its ground truth (the JSON file beside it)."""

    wav_path: Path
    truth_path: Path
    sampling_rate: int
    duration: float  # seconds
    seed: int
    utterances: tuple[PlacedUtterance, ...]

    def spans(self) -> list[tuple[float, float]]:
        """`(start, end)` of every utterance, in order: the reference for `mer.serving.vad.boundary_scores`."""
        return [(u.start, u.end) for u in self.utterances]


def build_long_recording(
    corpus: CorpusSummary | str | Path,
    out_path: str | Path,
    *,
    minutes: float | None = None,
    count: int | None = None,
    seed: int = 0,
    pause_seconds: tuple[float, float] = DEFAULT_PAUSE_SECONDS,
    noise_dbfs: float | None = DEFAULT_NOISE_DBFS,
    sampling_rate: int = 16_000,
) -> LongRecording:
    """Writes a long recording of `corpus`'s utterances separated by pauses, and its ground truth beside it.

    The audio is written as it is made, so an hours-long recording takes no more memory than one utterance.

    Args:
        corpus: a `CorpusSummary` or the root of a corpus in the IEMOCAP_full_release layout.
        out_path: the recording to write (its format follows the suffix, e.g. ``.wav`` or ``.flac``, 16-bit); the
            ground truth goes to the same path with the suffix ``.json``.
        minutes: add utterances until the recording is this long (then one last pause); or
        count: use this many utterances. Exactly one of the two.
        seed: everything random (order, pauses, noise) follows from it.
        pause_seconds: `(shortest, longest)` pause, drawn uniformly; ``(0, 0)`` gives speech without pauses.
        noise_dbfs: RMS of the white noise under the whole recording, in dB below full scale; None for digital
            silence in the pauses.
        sampling_rate: of the recording; utterances at another rate are resampled.

    Returns:
        The `LongRecording`, as also written to the JSON file.

    Raises:
        ValueError: naming the bad argument (both or neither of `minutes` and `count`, a non-positive length or
            rate, a pause range that is not ``0 <= shortest <= longest``, a `noise_dbfs` that is not below 0, an
            output path ending in ``.json``), or a corpus without 4-class utterances.
        FileNotFoundError: the corpus root does not exist.
    """
    _check_arguments(minutes, count, pause_seconds, noise_dbfs, sampling_rate)
    out_path = Path(out_path)
    if out_path.suffix.lower() == ".json":
        raise ValueError(f"out_path must be an audio file (its ground truth goes beside it as .json), got {out_path}")
    root = corpus.path if isinstance(corpus, CorpusSummary) else Path(corpus)
    examples = _four_class_utterances(root)
    order_rng, pause_rng, noise_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    noisy = noise_floor(noise_dbfs, noise_rng)
    limit = math.inf if minutes is None else minutes * 60 * sampling_rate

    def pause() -> np.ndarray:
        seconds = pause_rng.uniform(*pause_seconds)
        return np.zeros(round(seconds * sampling_rate), dtype=np.float32)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    placed, position = [], 0
    with sf.SoundFile(out_path, "w", samplerate=sampling_rate, channels=1, subtype="PCM_16") as out:
        for example in _endless(examples, order_rng):
            if len(placed) == count or position >= limit:
                break
            speech = trimmed_speech(Path(example["audio"]), sampling_rate)
            if speech.size == 0:
                continue
            gap = pause()
            out.write(noisy(gap))
            start = position + gap.size
            out.write(noisy(speech))
            position = start + speech.size
            placed.append(_placed(example, start, position, sampling_rate))
        tail = pause()
        out.write(noisy(tail))
        position += tail.size
    recording = LongRecording(
        wav_path=out_path,
        truth_path=out_path.with_suffix(".json"),
        sampling_rate=sampling_rate,
        duration=position / sampling_rate,
        seed=seed,
        utterances=tuple(placed),
    )
    _write_truth(recording, root, pause_seconds, noise_dbfs)
    return recording


def load_long_recording(path: str | Path) -> LongRecording:
    """Reads the ground truth of a recording written by `build_long_recording` (`path`: the recording or its JSON).

    Raises:
        FileNotFoundError: no JSON file beside the recording.
    """
    truth_path = Path(path).with_suffix(".json")
    truth = json.loads(truth_path.read_text(encoding="utf-8"))
    return LongRecording(
        wav_path=truth_path.parent / truth["recording"],
        truth_path=truth_path,
        sampling_rate=truth["sampling_rate"],
        duration=truth["duration"],
        seed=truth["seed"],
        utterances=tuple(PlacedUtterance(**u) for u in truth["utterances"]),
    )


def _check_arguments(
    minutes: float | None,
    count: int | None,
    pause_seconds: tuple[float, float],
    noise_dbfs: float | None,
    sampling_rate: int,
) -> None:
    if (minutes is None) == (count is None):
        raise ValueError(f"give exactly one of minutes and count, got minutes={minutes!r} and count={count!r}")
    if minutes is not None and not (math.isfinite(minutes) and minutes > 0):
        raise ValueError(f"minutes must be > 0, got {minutes!r}")
    if count is not None and not (isinstance(count, numbers.Integral) and count >= 1):
        raise ValueError(f"count must be an integer >= 1, got {count!r}")
    check_pause_and_noise(pause_seconds, noise_dbfs)
    if not (isinstance(sampling_rate, numbers.Integral) and sampling_rate > 0):
        raise ValueError(f"sampling_rate must be a positive integer, got {sampling_rate!r}")


def check_pause_and_noise(pause_seconds: tuple[float, float], noise_dbfs: float | None) -> None:
    """Raises ValueError, naming the argument, for a pause range that is not ``0 <= shortest <= longest`` or a noise
    level that is not below 0 dBFS."""
    shortest, longest = pause_seconds
    if not (math.isfinite(longest) and 0 <= shortest <= longest):
        raise ValueError(
            f"pause_seconds must be (shortest, longest) with 0 <= shortest <= longest, got {pause_seconds}"
        )
    if noise_dbfs is not None and not (math.isfinite(noise_dbfs) and noise_dbfs < 0):
        raise ValueError(f"noise_dbfs must be below 0 dB full scale (or None for silence), got {noise_dbfs!r}")


def noise_floor(noise_dbfs: float | None, rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
    """`samples -> samples` with white noise of RMS `noise_dbfs` (dB full scale) added from `rng` and clipped to
    [-1, 1]; only clipped for None (digital silence)."""
    rms = None if noise_dbfs is None else 10 ** (noise_dbfs / 20)

    def noisy(samples: np.ndarray) -> np.ndarray:
        if rms is not None:
            samples = samples + (rms * rng.standard_normal(samples.size)).astype(np.float32)
        return np.clip(samples, -1.0, 1.0)

    return noisy


def _four_class_utterances(root: Path) -> list[dict]:
    """The corpus's 4-class utterances (`scan_corpus` examples), sorted by id; ones with problems are left out."""
    sessions, problems = scan_corpus(root, _CONFIG)
    if problems:
        logger.warning(
            "%d problem(s) in %s: those utterances are left out (first: %s)", len(problems), root, problems[0]
        )
    examples = sorted((e for kept in sessions.values() for e in kept), key=lambda e: e["id"])
    if not examples:
        raise ValueError(f"no {_CONFIG} utterances (neu, hap, exc, ang, sad) in the corpus at {root}")
    return examples


def _endless(examples: list[dict], rng: np.random.Generator):
    """The examples in a random order, again in a new order once all have been used, for ever."""
    while True:
        for index in rng.permutation(len(examples)):
            yield examples[index]


def trimmed_speech(path: Path, sampling_rate: int) -> np.ndarray:
    """The utterance as mono float32 at `sampling_rate`, without the silence at its ends."""
    samples, rate = sf.read(path, dtype="float32", always_2d=True)
    samples = samples.mean(axis=1)
    if rate != sampling_rate:
        divisor = gcd(rate, sampling_rate)
        samples = resample_poly(samples, sampling_rate // divisor, rate // divisor).astype(np.float32)
    loud = np.flatnonzero(np.abs(samples) >= 10 ** (_TRIM_DBFS / 20))
    return samples[loud[0] : loud[-1] + 1] if loud.size else samples[:0]


def _placed(example: dict, start: int, end: int, sampling_rate: int) -> PlacedUtterance:
    return PlacedUtterance(
        start=start / sampling_rate,
        end=end / sampling_rate,
        id=example["id"],
        text=example["text"],
        label=example["label"],
        raw_label=example["raw_label"],
    )


def _write_truth(
    recording: LongRecording, corpus_root: Path, pause_seconds: tuple[float, float], noise_dbfs: float | None
) -> None:
    truth = {
        "recording": recording.wav_path.name,
        "sampling_rate": recording.sampling_rate,
        "duration": recording.duration,
        "seed": recording.seed,
        "corpus": str(corpus_root.resolve()),
        "config": _CONFIG,
        "pause_seconds": list(pause_seconds),
        "noise_dbfs": noise_dbfs,
        "trim_dbfs": _TRIM_DBFS,
        "utterances": [asdict(u) for u in recording.utterances],
    }
    recording.truth_path.write_text(json.dumps(truth, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> LongRecording:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True, type=Path, help="corpus root in the IEMOCAP_full_release layout")
    parser.add_argument("--out", required=True, type=Path, help="the recording to write (.wav, .flac); .json beside")
    length = parser.add_mutually_exclusive_group(required=True)
    length.add_argument("--minutes", type=float, help="length of the recording")
    length.add_argument("--count", type=int, help="number of utterances")
    parser.add_argument("--seed", type=int, default=0, help="seed for the order, the pauses and the noise")
    parser.add_argument(
        "--pause", type=float, nargs=2, default=DEFAULT_PAUSE_SECONDS, metavar=("MIN", "MAX"), help="pause (s)"
    )
    parser.add_argument("--noise-dbfs", type=float, default=DEFAULT_NOISE_DBFS, help="RMS of the noise floor (dBFS)")
    parser.add_argument("--no-noise", action="store_true", help="digital silence in the pauses")
    parser.add_argument("--sampling-rate", type=int, default=16_000, help="of the recording (Hz)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    recording = build_long_recording(
        args.corpus,
        args.out,
        minutes=args.minutes,
        count=args.count,
        seed=args.seed,
        pause_seconds=tuple(args.pause),
        noise_dbfs=None if args.no_noise else args.noise_dbfs,
        sampling_rate=args.sampling_rate,
    )
    speech = sum(u.end - u.start for u in recording.utterances)
    logger.info(
        "wrote %s (%.1f min, %d utterances, %.0f%% speech) and its ground truth %s",
        recording.wav_path,
        recording.duration / 60,
        len(recording.utterances),
        100 * speech / recording.duration,
        recording.truth_path,
    )
    return recording


if __name__ == "__main__":
    main()
