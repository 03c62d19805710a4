"""Speech recognition's transcripts for a whole corpus, the `--transcripts asr` and `both` conditions of train.py.

Every utterance is transcribed once per corpus and speech-recognition model, by the recogniser the pipeline and the
Space use (`SpeechRecognizer`). The transcripts are cached beside the datasets cache, under
`<HF_DATASETS_CACHE>/mer_transcripts/<corpus>/<model>/`, one JSON line per utterance, appended as they come: a
rerun or another fold reads them, and a killed pass resumes where it stopped. Processes of a distributed run each
transcribe their share of what is missing. The word error rate against the gold transcripts is measured per fold.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import datasets
from tqdm.auto import tqdm

from mer.training.data import decode_audio
from mer.training.protocol import utterance_ids
from mer.training.speech_recognition import WordErrors, word_error_rate
from modeling_mer.asr_mer import SpeechRecognizer
from modeling_mer.processing_mer import resample, to_mono_float32

__all__ = ["ASR_TEXT_COLUMN", "CorpusTranscripts", "TranscriptCache", "transcribe_corpus"]

logger = logging.getLogger(__name__)

ASR_TEXT_COLUMN = "asr_text"  # the column each fold gains: speech recognition's transcript of the utterance
_BATCH = 8  # utterances transcribed between two appends to the cache


@dataclass
class CorpusTranscripts:
    """What the transcription of a corpus gave: the model, where the cache is, and per fold the word error rate
    against the gold transcripts and the utterances speech recognition heard nothing in."""

    model: str
    backend: str
    cache: Path
    seconds: float  # the transcription pass of this run; 0 when every transcript came from the cache
    transcribed: int  # utterances transcribed by this run (the rest came from the cache)
    word_errors: dict[str, WordErrors] = field(default_factory=dict)
    empty: dict[str, int] = field(default_factory=dict)

    @property
    def word_error_rate(self) -> float:
        """Over every fold: all word errors over all reference words."""
        names = [counter.name for counter in fields(WordErrors)]
        return WordErrors(*(sum(getattr(errors, name) for errors in self.word_errors.values()) for name in names)).wer

    def report(self) -> dict:
        """For results.json: the model, the word error rate per fold and over all of them, the empty transcripts."""
        return {
            "model": self.model,
            "backend": self.backend,
            "cache": str(self.cache),
            "word_error_rate": {fold: round(errors.wer, 4) for fold, errors in self.word_errors.items()},
            "word_error_rate_all_folds": round(self.word_error_rate, 4),
            "empty_transcripts": dict(self.empty),
            "transcription_seconds": round(self.seconds, 1),
            "transcribed_by_this_run": self.transcribed,
        }


class TranscriptCache:
    """A directory of `part-<rank>.jsonl` files of `{"key", "text"}` lines; together they map keys to transcripts.

    A line cut short by a kill is ignored (and its utterance transcribed again); the next append starts a new line.
    """

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def load(self) -> dict[str, str]:
        texts = {}
        for part in sorted(self.directory.glob("part-*.jsonl")):
            for line in part.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    texts[row["key"]] = row["text"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
        return texts

    def append(self, rank: int, rows: Sequence[tuple[str, str]]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        part = self.directory / f"part-{rank}.jsonl"
        torn = part.exists() and part.stat().st_size and not part.read_bytes().endswith(b"\n")
        with part.open("a", encoding="utf-8") as file:
            if torn:
                file.write("\n")
            file.writelines(json.dumps({"key": key, "text": text}) + "\n" for key, text in rows)


def transcribe_corpus(
    folds: dict[str, datasets.Dataset],
    columns: tuple[str, str, str],
    recognizer: SpeechRecognizer,
    corpus_name: str,
    rank: int = 0,
    num_processes: int = 1,
    barrier: Callable[[], None] = lambda: None,
) -> tuple[dict[str, datasets.Dataset], CorpusTranscripts]:
    """Adds `ASR_TEXT_COLUMN` to every fold: the transcript `recognizer` makes of each utterance's audio, from the
    cache where it has it. Every process calls it (with its `rank`, the `num_processes` and a `barrier` that waits
    for all of them); each transcribes its share of the missing utterances.

    An empty transcript (nothing heard) is kept as an empty text, the model's missing-transcript case, and counted.

    Raises:
        ValueError: the recogniser cannot be loaded (naming `--asr_model`), or an utterance cannot be decoded.
    """
    audio_column, text_column, _ = columns
    keys = {fold: utterance_ids(fold, dataset) for fold, dataset in folds.items()}
    cache = TranscriptCache(_cache_directory(folds, columns, keys, recognizer))
    known = cache.load()
    missing = [(fold, row) for fold in sorted(folds) for row, key in enumerate(keys[fold]) if key not in known]
    mine = missing[rank::num_processes]
    started = time.perf_counter()
    if mine:
        if rank == 0:
            logger.info(
                "Transcribing %d of %d utterances of %s with %s (%s); cache: %s",
                len(missing), sum(map(len, keys.values())), corpus_name, recognizer.model, recognizer.backend,
                cache.directory,
            )  # fmt: skip
        _load(recognizer)
        if rank == 0:
            _write_description(cache.directory, recognizer, corpus_name)
        _transcribe(folds, keys, mine, audio_column, recognizer, cache, rank)
    barrier()
    seconds = time.perf_counter() - started if missing else 0.0
    known = cache.load()
    result = CorpusTranscripts(recognizer.model, recognizer.backend, cache.directory, seconds, len(missing))
    with_asr = {}
    for fold, dataset in folds.items():
        texts = [known[key] for key in keys[fold]]
        result.word_errors[fold] = word_error_rate(dataset[text_column], texts)
        result.empty[fold] = sum(not text.strip() for text in texts)
        with_asr[fold] = dataset.add_column(ASR_TEXT_COLUMN, texts)
    empty = sum(result.empty.values())
    if empty:
        logger.warning(
            "Speech recognition heard no words in %d utterance(s) (%s): they keep an empty transcript, the model's "
            "missing-text case.",
            empty, ", ".join(f"{fold}: {count}" for fold, count in result.empty.items() if count),
        )  # fmt: skip
    return with_asr, result


def _transcribe(folds, keys, mine, audio_column, recognizer, cache: TranscriptCache, rank: int) -> None:
    bar = tqdm(total=len(mine), desc="speech recognition", unit="utt", disable=rank != 0)
    for start in range(0, len(mine), _BATCH):
        batch = mine[start : start + _BATCH]
        waves = [_waveform(folds[fold], row, audio_column, recognizer.sampling_rate) for fold, row in batch]
        texts = recognizer.transcribe_batch(waves)
        cache.append(rank, [(keys[fold][row], text) for (fold, row), text in zip(batch, texts, strict=True)])
        bar.update(len(batch))
    bar.close()


def _waveform(dataset: datasets.Dataset, row: int, audio_column: str, rate: int):
    try:
        audio, source_rate = decode_audio(dataset[row][audio_column])
    except Exception as error:  # noqa: BLE001 - any decoding failure is the same to the user: this file
        raise ValueError(f"Cannot decode the audio of {_describe(dataset, row, audio_column)}: {error}") from error
    return resample(to_mono_float32(audio), source_rate, rate).numpy()


def _describe(dataset: datasets.Dataset, row: int, audio_column: str) -> str:
    encoded = dataset.select([row]).cast_column(audio_column, datasets.Audio(decode=False))[0][audio_column]
    return encoded.get("path") or f"row {row}"


def _load(recognizer: SpeechRecognizer) -> None:
    try:
        recognizer.load()
    except OSError as error:
        raise ValueError(f"--asr_model {recognizer.model}: not a usable speech-recognition model. {error}") from error


def _cache_directory(folds: dict[str, datasets.Dataset], columns, keys, recognizer: SpeechRecognizer) -> Path:
    """One directory per corpus and recogniser (model and backend). A corpus is known by what it holds: each
    utterance's fold, key, gold transcript and audio file name (or size, for audio held as bytes). Datasets'
    fingerprints would not do: a freshly built corpus has other fingerprints than the same one read back."""
    audio_column, text_column, _ = columns
    corpus = hashlib.sha256()
    for fold in sorted(folds):
        encoded = folds[fold].select_columns([audio_column]).cast_column(audio_column, datasets.Audio(decode=False))
        for key, text, audio in zip(keys[fold], folds[fold][text_column], encoded[audio_column], strict=True):
            source = Path(audio["path"]).name if audio["bytes"] is None else len(audio["bytes"])
            corpus.update(json.dumps([fold, key, text, source]).encode())
    model = recognizer.model
    if Path(model).expanduser().is_dir():
        model = str(Path(model).expanduser().resolve())
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(recognizer.model).name or recognizer.model).strip("-")
    slug = f"{name}-{recognizer.backend}-{_digest(model + recognizer.backend)}"
    return Path(datasets.config.HF_DATASETS_CACHE) / "mer_transcripts" / corpus.hexdigest()[:16] / slug


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _write_description(directory: Path, recognizer: SpeechRecognizer, corpus_name: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    description = {"corpus": corpus_name, "model": recognizer.model, "backend": recognizer.backend}
    (directory / "transcripts.json").write_text(json.dumps(description, indent=2))
