"""Conversations between real speakers with known turns: the reference for telling speakers apart in a recording
(speaker turns in `mer timeline`), built from a corpus's utterances.

    python -m dataset_scripts.conversation --corpus emodb=../shared/data/emodb --speakers 3 --turns 12 \
        --out /tmp/conversation.wav

writes the recording (mono, 16-bit) and its ground truth beside it: ``.json`` (every turn's speaker, start and end in
seconds, and the utterances it holds with their ids, transcripts and labels) and ``.rttm`` (the turns in the RTTM
format that diarization tools and `pyannote.metrics` read). `--corpus` is `name=directory` for a public corpus with a
builder (emodb, ravdess, cremad, tess, msp_podcast; `dataset_scripts.release_of`) or a directory in the
IEMOCAP_full_release layout (the synthetic corpus, or the real release).

* `speakers` different speakers of the corpus, drawn at random, take `turns` turns in a random order in which no
  speaker follows themself; each turn holds 1 to `max_utterances_per_turn` of its speaker's utterances, each used
  once (a speaker with too few for the turns is not drawn).
* Utterances are trimmed of the silence at their ends (`dataset_scripts.long_recording.trimmed_speech`); within a
  turn they follow each other after `within_turn_seconds`; between turns comes a pause drawn from `pause_seconds`.
  ``(0, 0)`` gives turns back to back: the speaker changes where there is no pause to cut at.
* White noise at `noise_dbfs` (RMS) runs under the whole recording. Everything follows from `seed`: the same corpus
  and seed give the same bytes.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import numbers
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from dataset_scripts import CORPORA, release_of
from dataset_scripts.iemocap import scan_corpus
from dataset_scripts.long_recording import (
    DEFAULT_NOISE_DBFS,
    DEFAULT_PAUSE_SECONDS,
    check_pause_and_noise,
    noise_floor,
    trimmed_speech,
)

__all__ = ["Conversation", "Turn", "build_conversation", "corpus_utterances", "load_conversation", "main"]

logger = logging.getLogger(__name__)

DEFAULT_WITHIN_TURN_SECONDS = 0.3  # between two utterances of one speaker: shorter than a turn change


@dataclass(frozen=True)
class Turn:
    """One speaker's turn: `start` / `end` in seconds from the recording's beginning (its first utterance's first
    sample and the sample after its last), and the utterances it holds (`ids`, `texts`, `labels`, in order)."""

    speaker: str
    start: float
    end: float
    ids: tuple[str, ...]
    texts: tuple[str, ...]
    labels: tuple[str, ...]


@dataclass(frozen=True)
class Conversation:
    """A recording written by `build_conversation` and its ground truth (the JSON and RTTM files beside it)."""

    wav_path: Path
    truth_path: Path
    rttm_path: Path
    sampling_rate: int
    duration: float  # seconds
    seed: int
    speakers: tuple[str, ...]  # in the order they first speak
    turns: tuple[Turn, ...]


def corpus_utterances(corpus: str | Path) -> list[dict]:
    """The utterances of `corpus` (`name=directory` for a public corpus, else an IEMOCAP-layout directory), each with
    its `id`, `audio` path, `speaker`, `text` and `label`, sorted by id; utterances with problems are left out.

    Raises:
        ValueError: an unknown corpus name, or a corpus without utterances.
        FileNotFoundError: the directory does not exist.
    """
    name, _, directory = str(corpus).partition("=")
    if directory:
        if name not in CORPORA or name == "iemocap":
            raise ValueError(f"--corpus {corpus}: {name!r} is not one of {list(CORPORA[1:])} (or give a directory)")
        scan = release_of(name).scan(Path(directory))
        splits, problems = scan.splits, scan.problems
    else:
        splits, problems = scan_corpus(Path(corpus), "all")
    if problems:
        logger.warning(
            "%d problem(s) in %s: those utterances are left out (first: %s)", len(problems), corpus, problems[0]
        )
    examples = sorted((e for kept in splits.values() for e in kept), key=lambda e: e["id"])
    if not examples:
        raise ValueError(f"no utterances in the corpus {corpus}")
    return examples


def build_conversation(
    corpus: str | Path,
    out_path: str | Path,
    *,
    speakers: int = 2,
    turns: int = 8,
    max_utterances_per_turn: int = 2,
    seed: int = 0,
    pause_seconds: tuple[float, float] = DEFAULT_PAUSE_SECONDS,
    within_turn_seconds: float = DEFAULT_WITHIN_TURN_SECONDS,
    noise_dbfs: float | None = DEFAULT_NOISE_DBFS,
    sampling_rate: int = 16_000,
) -> Conversation:
    """Writes a conversation of `speakers` of `corpus`'s speakers taking `turns` turns, and its ground truth beside
    it (see the module's docstring).

    Args:
        corpus: `name=directory` of a public corpus, or a directory in the IEMOCAP_full_release layout.
        out_path: the recording (its format follows the suffix, e.g. ``.wav`` or ``.flac``, 16-bit); the ground truth
            goes to the same path with the suffixes ``.json`` and ``.rttm``.
        speakers: how many different speakers talk (1 gives a monologue in `turns` stretches).
        turns: how many turns, at least `speakers`, so that every speaker talks.
        max_utterances_per_turn: each turn holds 1 to this many of its speaker's utterances.
        seed: everything random (speakers, order, utterances, pauses, noise) follows from it.
        pause_seconds: `(shortest, longest)` pause between turns, drawn uniformly; ``(0, 0)``: back to back.
        within_turn_seconds: the gap between two utterances of one turn.
        noise_dbfs: RMS of the white noise under the whole recording, in dB below full scale; None for silence.
        sampling_rate: of the recording; utterances at another rate are resampled.

    Raises:
        ValueError: naming the bad argument, or a corpus with fewer speakers than asked who each have utterances
            enough for their turns.
    """
    _check_arguments(speakers, turns, max_utterances_per_turn, pause_seconds, within_turn_seconds, noise_dbfs)
    out_path = Path(out_path)
    if out_path.suffix.lower() in (".json", ".rttm"):
        raise ValueError(f"out_path must be an audio file (its ground truth goes beside it), got {out_path}")
    pick_rng, pause_rng, noise_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    order = _speaking_order(speakers, turns, pick_rng)
    sizes = [int(pick_rng.integers(1, max_utterances_per_turn + 1)) for _ in order]
    needed = {who: sum(size for turn, size in zip(order, sizes, strict=True) if turn == who) for who in set(order)}
    by_speaker: dict[str, list[dict]] = {}
    for example in corpus_utterances(corpus):
        by_speaker.setdefault(example["speaker"], []).append(example)
    enough = sorted(name for name, examples in by_speaker.items() if len(examples) >= max(needed.values()))
    if len(enough) < speakers:
        raise ValueError(
            f"{corpus} has {len(enough)} speaker(s) with {max(needed.values())} or more utterances; {speakers} asked"
        )
    chosen = [enough[index] for index in pick_rng.choice(len(enough), size=speakers, replace=False)]
    pools = {who: [by_speaker[chosen[who]][i] for i in pick_rng.permutation(len(by_speaker[chosen[who]]))]
             for who in set(order)}  # fmt: skip
    noisy = noise_floor(noise_dbfs, noise_rng)

    def silence(seconds: float) -> np.ndarray:
        return np.zeros(round(seconds * sampling_rate), dtype=np.float32)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    placed, position = [], 0
    with sf.SoundFile(out_path, "w", samplerate=sampling_rate, channels=1, subtype="PCM_16") as out:
        for who, size in zip(order, sizes, strict=True):
            gap = silence(pause_rng.uniform(*pause_seconds))
            out.write(noisy(gap))
            position += gap.size
            start, held = position, []
            while len(held) < size:
                if not pools[who]:
                    raise ValueError(
                        f"{corpus}: speaker {chosen[who]} has too few utterances with speech for the turns"
                    )
                example = pools[who].pop()
                speech = trimmed_speech(Path(example["audio"]), sampling_rate)
                if speech.size == 0:
                    continue  # nothing above the trimming level: not speech to place
                if held:
                    within = silence(within_turn_seconds)
                    out.write(noisy(within))
                    position += within.size
                out.write(noisy(speech))
                position += speech.size
                held.append(example)
            placed.append(
                Turn(
                    speaker=chosen[who],
                    start=start / sampling_rate,
                    end=position / sampling_rate,
                    ids=tuple(e["id"] for e in held),
                    texts=tuple(e["text"] for e in held),
                    labels=tuple(str(e["label"]) for e in held),
                )
            )
        tail = silence(pause_rng.uniform(*pause_seconds))
        out.write(noisy(tail))
        position += tail.size
    conversation = Conversation(
        wav_path=out_path,
        truth_path=out_path.with_suffix(".json"),
        rttm_path=out_path.with_suffix(".rttm"),
        sampling_rate=sampling_rate,
        duration=position / sampling_rate,
        seed=seed,
        speakers=tuple(dict.fromkeys(turn.speaker for turn in placed)),
        turns=tuple(placed),
    )
    _write_truth(conversation, str(corpus), pause_seconds, within_turn_seconds, noise_dbfs)
    return conversation


def load_conversation(path: str | Path) -> Conversation:
    """Reads the ground truth of a conversation written by `build_conversation` (`path`: the recording or its JSON).

    Raises:
        FileNotFoundError: no JSON file beside the recording.
    """
    truth_path = Path(path).with_suffix(".json")
    truth = json.loads(truth_path.read_text(encoding="utf-8"))
    turns = tuple(
        Turn(**{key: tuple(value) if isinstance(value, list) else value for key, value in turn.items()})
        for turn in truth["turns"]
    )
    return Conversation(
        wav_path=truth_path.parent / truth["recording"],
        truth_path=truth_path,
        rttm_path=truth_path.with_suffix(".rttm"),
        sampling_rate=truth["sampling_rate"],
        duration=truth["duration"],
        seed=truth["seed"],
        speakers=tuple(truth["speakers"]),
        turns=turns,
    )


def _speaking_order(speakers: int, turns: int, rng: np.random.Generator) -> list[int]:
    """`turns` speaker indices in which every one of `speakers` talks and (with two or more) no one follows
    themself: each in a random order first, then each next turn from the others."""
    order = [int(who) for who in rng.permutation(speakers)]
    while len(order) < turns:
        others = [who for who in range(speakers) if who != order[-1]] or [order[-1]]
        order.append(others[int(rng.integers(len(others)))])
    return order


def _check_arguments(
    speakers: int,
    turns: int,
    max_utterances_per_turn: int,
    pause_seconds: tuple[float, float],
    within_turn_seconds: float,
    noise_dbfs: float | None,
) -> None:
    for name, value in (
        ("speakers", speakers),
        ("turns", turns),
        ("max_utterances_per_turn", max_utterances_per_turn),
    ):
        if not (isinstance(value, numbers.Integral) and value >= 1):
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if turns < speakers:
        raise ValueError(f"turns ({turns}) must be at least speakers ({speakers}), so that every speaker talks")
    check_pause_and_noise(pause_seconds, noise_dbfs)
    if not (math.isfinite(within_turn_seconds) and within_turn_seconds >= 0):
        raise ValueError(f"within_turn_seconds must be >= 0, got {within_turn_seconds!r}")


def _write_truth(
    conversation: Conversation,
    corpus: str,
    pause_seconds: tuple[float, float],
    within_turn_seconds: float,
    noise_dbfs: float | None,
) -> None:
    truth = {
        "recording": conversation.wav_path.name,
        "sampling_rate": conversation.sampling_rate,
        "duration": conversation.duration,
        "seed": conversation.seed,
        "corpus": corpus,
        "speakers": list(conversation.speakers),
        "pause_seconds": list(pause_seconds),
        "within_turn_seconds": within_turn_seconds,
        "noise_dbfs": noise_dbfs,
        "turns": [asdict(turn) for turn in conversation.turns],
    }
    conversation.truth_path.write_text(json.dumps(truth, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    # RTTM: SPEAKER <file> <channel> <onset> <duration> <NA> <NA> <speaker> <NA> <NA>, one line per turn.
    uri = conversation.wav_path.stem
    lines = [
        f"SPEAKER {uri} 1 {turn.start:.3f} {turn.end - turn.start:.3f} <NA> <NA> {turn.speaker} <NA> <NA>\n"
        for turn in conversation.turns
    ]
    conversation.rttm_path.write_text("".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> Conversation:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True, help="name=directory of a public corpus, or an IEMOCAP-layout root")
    parser.add_argument("--out", required=True, type=Path, help="the recording to write (.wav, .flac); truth beside")
    parser.add_argument("--speakers", type=int, default=2, help="how many different speakers talk")
    parser.add_argument("--turns", type=int, default=8, help="how many turns")
    parser.add_argument("--max-utterances-per-turn", type=int, default=2, help="utterances in one turn, at most")
    parser.add_argument("--seed", type=int, default=0, help="seed for speakers, order, pauses and noise")
    parser.add_argument(
        "--pause", type=float, nargs=2, default=DEFAULT_PAUSE_SECONDS, metavar=("MIN", "MAX"), help="between turns (s)"
    )
    parser.add_argument("--within-turn", type=float, default=DEFAULT_WITHIN_TURN_SECONDS, help="within a turn (s)")
    parser.add_argument("--noise-dbfs", type=float, default=DEFAULT_NOISE_DBFS, help="RMS of the noise floor (dBFS)")
    parser.add_argument("--no-noise", action="store_true", help="digital silence in the pauses")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    conversation = build_conversation(
        args.corpus,
        args.out,
        speakers=args.speakers,
        turns=args.turns,
        max_utterances_per_turn=args.max_utterances_per_turn,
        seed=args.seed,
        pause_seconds=tuple(args.pause),
        within_turn_seconds=args.within_turn,
        noise_dbfs=None if args.no_noise else args.noise_dbfs,
    )
    logger.info(
        "wrote %s (%.1f s, %d turns of %s) and its ground truth %s, %s",
        conversation.wav_path,
        conversation.duration,
        len(conversation.turns),
        ", ".join(conversation.speakers),
        conversation.truth_path.name,
        conversation.rttm_path.name,
    )
    return conversation


if __name__ == "__main__":
    main()
