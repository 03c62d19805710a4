"""`mer predict`: the emotion of every recording in files and folders, appended to a CSV or JSON Lines file as it is
produced, so that a killed run loses nothing and the same command continues where it stopped.

Files are decoded by ffmpeg (any format, rate and channel count), grouped by length into batches, transcribed when
no transcript is given, and classified by the model's pipeline. A file that cannot be classified (unreadable, not
audio, empty, too short) is recorded with its reason and listed at the end; the others are classified.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from mer.audio import AudioError, decode_audio
from modeling_mer.pipeline_mer import MERPipeline

__all__ = [
    "PredictionLog",
    "PredictionSummary",
    "TranscriptTable",
    "find_audio_files",
    "predict_files",
]

logger = logging.getLogger(__name__)

# Files decoded ahead and sorted by length before they are cut into batches, in batches: more groups similar lengths
# better (less padding) and holds more audio in memory.
_LOOKAHEAD_BATCHES = 4
_DECODE_THREADS = 2  # ffmpeg runs in its own process: threads overlap its start-up and the model's work


def find_audio_files(paths: Sequence[str | Path], skip: Iterable[Path] = ()) -> list[Path]:
    """The files named, and every file under the folders named (recursively, hidden ones excluded), in sorted order
    and without repeats, as absolute paths. Nothing is filtered by extension: whatever ffmpeg cannot read is
    reported later, file by file. Files in `skip` (the output, the transcripts table) are left out.

    Raises:
        FileNotFoundError: naming a path that does not exist.
    """
    skip = {Path(p).resolve() for p in skip}
    found: dict[Path, None] = {}
    for given in paths:
        path = Path(given).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"No such file or folder: {given}")
        if path.is_dir():
            candidates = (p for p in sorted(path.rglob("*")) if p.is_file() and not _hidden(p.relative_to(path)))
        else:
            candidates = (path,)
        for candidate in candidates:
            resolved = candidate.resolve()
            if resolved not in skip:
                found.setdefault(resolved, None)
    return list(found)


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


class TranscriptTable:
    """Transcripts from a CSV file with a column naming the file (`path`, `file` or `filename`) and one holding the
    words (`transcript` or `text`). A file is found by its path (relative paths are relative to the CSV's folder),
    else by its name, else by its name without extension, when that is unambiguous.

    Raises:
        ValueError: naming the CSV file, when it lacks either column or a path appears twice.
        FileNotFoundError: the CSV does not exist.
    """

    PATH_COLUMNS = ("path", "file", "filename")
    TEXT_COLUMNS = ("transcript", "text")

    def __init__(self, csv_path: str | Path):
        self.csv_path = Path(csv_path)
        with self.csv_path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = {name.strip().lower(): name for name in reader.fieldnames or []}
            path_column = next((columns[c] for c in self.PATH_COLUMNS if c in columns), None)
            text_column = next((columns[c] for c in self.TEXT_COLUMNS if c in columns), None)
            if path_column is None or text_column is None:
                raise ValueError(
                    f"{self.csv_path} needs a column naming the file ({' / '.join(self.PATH_COLUMNS)}) and one with "
                    f"the transcript ({' / '.join(self.TEXT_COLUMNS)}); it has {reader.fieldnames}."
                )
            rows = [(row[path_column] or "", row[text_column] or "") for row in reader]
        self._by_path: dict[Path, str] = {}
        by_name: dict[str, list[str]] = {}
        by_stem: dict[str, list[str]] = {}
        for name, text in rows:
            path = (self.csv_path.parent / name.strip()).resolve()
            if path in self._by_path:
                raise ValueError(f"{self.csv_path} gives two transcripts for {name.strip()}.")
            self._by_path[path] = text
            by_name.setdefault(path.name, []).append(text)
            by_stem.setdefault(path.stem, []).append(text)
        self._by_name = {key: texts[0] for key, texts in by_name.items() if len(texts) == 1}
        self._by_stem = {key: texts[0] for key, texts in by_stem.items() if len(texts) == 1}

    def __len__(self) -> int:
        return len(self._by_path)

    def get(self, path: Path) -> str | None:
        """The transcript of `path`, or None when the table has none (or an empty one)."""
        text = self._by_path.get(path.resolve())
        if text is None:
            text = self._by_name.get(path.name, self._by_stem.get(path.stem))
        return text if text and text.strip() else None


@dataclass
class PredictionSummary:
    """What a run did: files classified now, files already in the output, failures (path -> reason)."""

    classified: int = 0
    already_done: int = 0
    audio_seconds: float = 0.0
    transcribed: int = 0
    failed: dict[str, str] = field(default_factory=dict)


class PredictionLog:
    """The output of `mer predict`: one record per file, appended and flushed batch by batch.

    `.csv` files get one column per class score (`score_<label>`); `.jsonl` files one JSON object per line with
    `scores` as a mapping. Every record names the model and its fingerprint; an existing file written by another
    model (or for other classes) is refused unless `overwrite` is set. A last line cut short by a killed run is
    dropped when the file is opened again.

    Raises:
        ValueError: the extension is neither .csv nor .jsonl, or the file belongs to another model (naming both).
    """

    def __init__(
        self,
        path: str | Path,
        labels: Sequence[str],
        model: str,
        fingerprint: str,
        runtime: str = "eager",
        overwrite: bool = False,
    ):
        self.path = Path(path)
        self.format = self.path.suffix.lower().lstrip(".")
        if self.format not in ("csv", "jsonl"):
            raise ValueError(f"--output must end in .csv or .jsonl, got {self.path.name}.")
        self.labels, self.model, self.fingerprint, self.runtime = list(labels), model, fingerprint, runtime
        self.columns = [
            "path", "label", "score", *(f"score_{label}" for label in self.labels), "transcript",
            "transcript_source", "asr_model", "seconds", "cropped", "model", "model_fingerprint", "runtime", "error",
        ]  # fmt: skip
        self.done: set[str] = set()
        if overwrite and self.path.exists():
            self.path.unlink()
        if self.path.exists():
            self._resume()

    def _resume(self) -> None:
        text = self.path.read_text(encoding="utf-8")
        if text and not text.endswith("\n"):  # a record cut short when the last run was killed
            text = text[: text.rfind("\n") + 1]
            self.path.write_text(text, encoding="utf-8")
        records = self._parse(text)
        for record in records:
            if record.get("model_fingerprint") != self.fingerprint or self._labels_of(record) != self.labels:
                raise ValueError(
                    f"{self.path} holds predictions of another model ({record.get('model')}, fingerprint "
                    f"{record.get('model_fingerprint')}, classes {self._labels_of(record)}), not of {self.model} "
                    f"({self.fingerprint}, classes {self.labels}). Choose another --output, or pass --overwrite to "
                    "replace it."
                )
            if not record.get("error"):
                self.done.add(record["path"])

    def _parse(self, text: str) -> list[dict]:
        if self.format == "jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames and reader.fieldnames != self.columns:
            found = [c.removeprefix("score_") for c in reader.fieldnames if c.startswith("score_")]
            raise ValueError(
                f"{self.path} has other columns than this model's predictions (classes {found}, not "
                f"{self.labels}). Choose another --output, or pass --overwrite to replace it."
            )
        return list(reader)

    def _labels_of(self, record: dict) -> list[str]:
        if self.format == "jsonl":
            return list(record.get("scores") or self.labels)
        return [c.removeprefix("score_") for c in record if c.startswith("score_")]

    def append(self, records: list[dict]) -> None:
        """Appends `records` (from `record`) and flushes them to disk."""
        new = not self.path.exists() or self.path.stat().st_size == 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", newline="", encoding="utf-8") as handle:
            if self.format == "jsonl":
                handle.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
            else:
                writer = csv.DictWriter(handle, fieldnames=self.columns, lineterminator="\n")
                if new:
                    writer.writeheader()
                writer.writerows(self._flat(r) for r in records)
            handle.flush()
            os.fsync(handle.fileno())

    def record(self, path: Path, result: dict | None = None, error: str | None = None, **audio) -> dict:
        """One file's record: the pipeline's `result`, or the `error` that kept it from one; `audio` holds
        `seconds` and `cropped`."""
        scores = {item["label"]: item["score"] for item in result["labels"]} if result else {}
        top = max(scores, key=scores.get) if scores else None
        transcribed_by = result["transcribed_by"] if result else None
        return {
            "path": str(path),
            "label": top,
            "score": scores.get(top),
            "scores": {label: scores[label] for label in self.labels} if scores else None,
            "transcript": result["transcript"] if result else None,
            "transcript_source": None if not result else ("asr" if transcribed_by else "given"),
            "asr_model": transcribed_by,
            "seconds": audio.get("seconds"),
            "cropped": audio.get("cropped"),
            "model": self.model,
            "model_fingerprint": self.fingerprint,
            "runtime": self.runtime,
            "error": error,
        }

    def _flat(self, record: dict) -> dict:
        flat = {key: value for key, value in record.items() if key != "scores"}
        for label in self.labels:
            flat[f"score_{label}"] = (record["scores"] or {}).get(label)
        return {key: ("" if value is None else value) for key, value in flat.items()}


@dataclass
class _Decoded:
    path: Path
    waveform: np.ndarray | None = None
    cropped: bool = False
    error: str | None = None


def predict_files(
    pipe: MERPipeline,
    files: Sequence[Path],
    log: PredictionLog,
    transcripts: TranscriptTable | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> PredictionSummary:
    """Classifies `files` (skipping those `log` already holds) and appends a record per file to `log`, batch by
    batch. Returns what was done; failures are in the log (with their reason) and in the summary."""
    summary = PredictionSummary()
    todo = [path for path in files if str(path) not in log.done]
    summary.already_done = len(files) - len(todo)
    rate = pipe.processor.sampling_rate
    bar = tqdm(total=len(files), initial=summary.already_done, unit="file", disable=not progress, dynamic_ncols=True)
    with bar, ThreadPoolExecutor(_DECODE_THREADS) as pool:
        decode = lambda path: _decode(path, rate, pipe.max_seconds, pipe.model.config.audio_receptive_field)  # noqa: E731
        for group in _groups(todo, batch_size * _LOOKAHEAD_BATCHES):
            decoded = list(pool.map(decode, group))
            failed = [item for item in decoded if item.error]
            good = sorted((item for item in decoded if not item.error), key=lambda item: len(item.waveform))
            records = [log.record(item.path, error=item.error) for item in failed]
            for start in range(0, len(good), batch_size):
                batch = good[start : start + batch_size]
                records += _classify(pipe, batch, log, transcripts, rate)
                log.append(records)
                _account(summary, records, bar)
                records = []
            if records:
                log.append(records)
                _account(summary, records, bar)
    return summary


def _groups(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _decode(path: Path, rate: int, max_seconds: float, min_samples: int) -> _Decoded:
    try:
        waveform, cropped = decode_audio(path, rate, max_seconds)
    except AudioError as error:
        return _Decoded(path, error=str(error))
    if len(waveform) == 0:
        return _Decoded(path, error=f"'{path}' holds no audio samples.")
    if len(waveform) < min_samples:
        return _Decoded(
            path, error=f"'{path}' is too short ({1000 * len(waveform) / rate:.0f} ms; the model needs at least "
            f"{1000 * min_samples / rate:.0f} ms)."
        )  # fmt: skip
    return _Decoded(path, waveform=waveform, cropped=cropped)


def _classify(
    pipe: MERPipeline, batch: list[_Decoded], log: PredictionLog, transcripts: TranscriptTable | None, rate: int
) -> list[dict]:
    inputs = [
        {"array": item.waveform, "sampling_rate": rate, "text": transcripts.get(item.path) if transcripts else None}
        for item in batch
    ]
    try:
        results = pipe(inputs, batch_size=len(inputs))
    except (ValueError, RuntimeError) as error:  # one bad item fails its batch: one by one, the others are kept
        if len(batch) == 1:
            logger.debug("Classifying %s failed", batch[0].path, exc_info=True)
            return [log.record(batch[0].path, error=f"'{batch[0].path}': {error}")]
        return [record for item in batch for record in _classify(pipe, [item], log, transcripts, rate)]
    return [
        log.record(item.path, result, seconds=len(item.waveform) / rate, cropped=item.cropped)
        for item, result in zip(batch, results, strict=True)
    ]


def _account(summary: PredictionSummary, records: list[dict], bar: tqdm) -> None:
    for record in records:
        if record["error"]:
            summary.failed[record["path"]] = record["error"]
        else:
            summary.classified += 1
            summary.audio_seconds += record["seconds"]
            summary.transcribed += record["transcript_source"] == "asr"
    bar.update(len(records))
    bar.set_postfix_str(f"{summary.audio_seconds / 3600:.2f} h audio, {len(summary.failed)} failed", refresh=False)
