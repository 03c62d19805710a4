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

from tqdm.auto import tqdm

from mer.serving.tables import spreadsheet_safe
from mer.serving.vad import speech_problem
from modeling_mer.pipeline_mer import MERPipeline, PreparedAudio

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
    words (`transcript` or `text`). A file is matched by its path, never by its name alone: an absolute path, or a
    path relative to one of `roots` (the folders given to `mer predict`, and the folders of the files given) or to
    the CSV's own folder. A row whose path fits no file is left unused (`unmatched`).

    Raises:
        ValueError: naming the CSV file: a missing column, text that is not UTF-8, a row whose path fits two
            different files (naming both), or two rows for one file.
        FileNotFoundError: the CSV does not exist.
    """

    PATH_COLUMNS = ("path", "file", "filename")
    TEXT_COLUMNS = ("transcript", "text")

    def __init__(self, csv_path: str | Path, roots: Iterable[str | Path] = ()):
        self.csv_path = Path(csv_path)
        try:
            with self.csv_path.open(newline="", encoding="utf-8-sig") as handle:
                reader = csv.DictReader(handle)
                columns = {name.strip().lower(): name for name in reader.fieldnames or []}
                path_column = next((columns[c] for c in self.PATH_COLUMNS if c in columns), None)
                text_column = next((columns[c] for c in self.TEXT_COLUMNS if c in columns), None)
                if path_column is None or text_column is None:
                    raise ValueError(
                        f"{self.csv_path} needs a column naming the file ({' / '.join(self.PATH_COLUMNS)}) and one "
                        f"with the transcript ({' / '.join(self.TEXT_COLUMNS)}); it has {reader.fieldnames}."
                    )
                rows = [(row[path_column] or "", row[text_column] or "") for row in reader]
        except UnicodeDecodeError as error:
            raise ValueError(
                f"{self.csv_path} is not UTF-8 text (byte {error.start}: {error.reason}); save it as UTF-8."
            ) from None
        folders = list(dict.fromkeys(Path(root).resolve() for root in [*roots, self.csv_path.parent]))
        self._by_path: dict[Path, str] = {}
        named_by: dict[Path, str] = {}
        self.unmatched: list[str] = []
        for name, text in rows:
            written = Path(name.strip())
            bases = [written] if written.is_absolute() else [folder / written for folder in folders]
            fits = list(dict.fromkeys(base.resolve() for base in bases if base.is_file()))
            if len(fits) > 1:
                raise ValueError(
                    f"{self.csv_path}: {name.strip()!r} fits both {fits[0]} and {fits[1]}; write the path relative to "
                    "the folder given to mer predict (e.g. speaker/file.wav), or absolute."
                )
            if not fits:
                self.unmatched.append(name.strip())
                continue
            if fits[0] in self._by_path:
                raise ValueError(
                    f"{self.csv_path} gives two transcripts for {fits[0]}: rows {named_by[fits[0]]!r} and "
                    f"{name.strip()!r}."
                )
            self._by_path[fits[0]], named_by[fits[0]] = text, name.strip()

    def __len__(self) -> int:
        return len(self._by_path)

    def get(self, path: Path) -> str | None:
        """The transcript of `path`, or None when the table has none (or an empty one)."""
        text = self._by_path.get(path.resolve())
        return text if text and text.strip() else None


@dataclass
class PredictionSummary:
    """What a run did: files classified now, files already in the output, failures (path -> reason), files of which
    only the first `max_seconds` were classified."""

    classified: int = 0
    already_done: int = 0
    audio_seconds: float = 0.0
    transcribed: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    cropped: list[str] = field(default_factory=list)
    max_seconds: float | None = None


class PredictionLog:
    """The output of `mer predict`: one record per file, appended and flushed batch by batch.

    `.csv` files get one column per class score (`score_<label>`) and, for a model that predicts `dimensions`, one
    per dimension (`arousal`, ... on [0, 1]); `.jsonl` files one JSON object per line with `scores` (and
    `dimensions`) as a mapping. A dimensions-only model's records have no `label`, `score` or scores. Every record
    names the model and its fingerprint; an existing file written by another model (or for other classes) is refused
    unless `overwrite` is set. A last line cut short by a killed run is dropped when the file is opened again.

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
        dimensions: Sequence[str] = (),
    ):
        self.path = Path(path)
        self.format = self.path.suffix.lower().lstrip(".")
        if self.format not in ("csv", "jsonl"):
            raise ValueError(f"--output must end in .csv or .jsonl, got {self.path.name}.")
        self.labels, self.model, self.fingerprint, self.runtime = list(labels), model, fingerprint, runtime
        self.dimensions = list(dimensions)
        classes = ["label", "score", *(f"score_{label}" for label in self.labels)] if self.labels else []
        self.columns = [
            "path", *classes, *self.dimensions, "transcript", "transcript_source", "asr_model", "seconds", "cropped",
            "model", "model_fingerprint", "runtime", "error",
        ]  # fmt: skip
        self.done: set[str] = set()
        if overwrite and self.path.exists():
            self.path.unlink()
        if self.path.exists():
            self._resume()

    def _resume(self) -> None:
        """Reads what an earlier run wrote: the files it classified are `done`. What a kill can leave at the end (a
        record cut short, inside a quoted field or not, NUL bytes) is dropped with a message, and records of files
        that failed are dropped too, so that those files are tried again and each file has one record."""
        text = self.path.read_text(encoding="utf-8", errors="replace")
        records, torn = self._complete_records(text)
        if torn:
            logger.warning("%s: dropped a record cut short by a killed run; that file is done again.", self.path)
        for record in records:
            if record.get("model_fingerprint") != self.fingerprint or self._labels_of(record) != self.labels:
                raise ValueError(
                    f"{self.path} holds predictions of another model ({record.get('model')}, fingerprint "
                    f"{record.get('model_fingerprint')}, classes {self._labels_of(record)}), not of {self.model} "
                    f"({self.fingerprint}, classes {self.labels}). Choose another --output, or pass --overwrite to "
                    "replace it."
                )
        kept = [record for record in records if not record.get("error")]
        self.done = {record["path"] for record in kept}
        if torn or len(kept) < len(records):
            self._rewrite(kept)

    def _complete_records(self, text: str) -> tuple[list[dict], bool]:
        """The whole records of `text`, and whether a torn one was dropped from its end."""
        cleaned = text.rstrip("\x00")
        torn = cleaned != text
        records = self._parse(cleaned)
        if records and (not cleaned.endswith("\n") or not self._whole(records[-1])):
            records, torn = records[:-1], True
        return records, torn

    def _whole(self, record: dict) -> bool:
        """Whether a record read back has every field this log writes (one cut short has fewer)."""
        if self.format == "jsonl":
            return set(record) >= {"path", "model_fingerprint", "error"}
        return None not in record and None not in record.values() and bool(record.get("model_fingerprint"))

    def _rewrite(self, records: list[dict]) -> None:
        """Replaces the file with `records` (as read back), in one step."""
        staging = self.path.with_name(self.path.name + ".partial")
        with staging.open("w", newline="", encoding="utf-8") as handle:
            self._write(handle, records, header=True)
        staging.replace(self.path)

    def _parse(self, text: str) -> list[dict]:
        if self.format == "jsonl":
            lines = [line for line in text.splitlines() if line.strip()]
            records = []
            for number, line in enumerate(lines, start=1):
                # Each record is one line written whole: only a last line without its newline, begun as a record,
                # can be what a kill left. Any other line that is not a record is not ours, and is left alone.
                cut = number == len(lines) and not text.endswith("\n") and line.lstrip().startswith("{")
                try:
                    record = json.loads(line)
                    problem = None if isinstance(record, dict) and self._whole(record) else "not a mer predict record"
                except json.JSONDecodeError as error:
                    record, problem = {}, f"not JSON: {error.msg}"
                if problem is not None and not cut:
                    raise ValueError(
                        f"{self.path}:{number} is {problem}: not a mer predict output? Choose another --output, or "
                        "pass --overwrite to replace it."
                    )
                records.append(record)
            return records
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
        rows = records if self.format == "jsonl" else [self._flat(r) for r in records]
        with self.path.open("a", newline="", encoding="utf-8") as handle:
            self._write(handle, rows, header=new)

    def _write(self, handle, rows: list[dict], header: bool) -> None:
        """Writes `rows` as they stand in the file (JSON objects, or CSV rows with a `header` first) and flushes
        them to disk."""
        if self.format == "jsonl":
            handle.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        else:
            writer = csv.DictWriter(handle, fieldnames=self.columns, lineterminator="\n")
            if header:
                writer.writeheader()
            writer.writerows(rows)
        handle.flush()
        os.fsync(handle.fileno())

    def record(self, path: Path, result: dict | None = None, error: str | None = None, **audio) -> dict:
        """One file's record: the pipeline's `result`, or the `error` that kept it from one; `audio` holds
        `seconds` and `cropped`."""
        classes = {}  # a dimensions-only model has none
        if self.labels:
            scores = {item["label"]: item["score"] for item in result["labels"]} if result else {}
            top = max(scores, key=scores.get) if scores else None
            classes = {
                "label": top,
                "score": scores.get(top),
                "scores": {label: scores[label] for label in self.labels} if scores else None,
            }
        transcribed_by = result["transcribed_by"] if result else None
        return {
            "path": str(path),
            **classes,
            **({"dimensions": result.get("dimensions") if result else None} if self.dimensions else {}),
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
        """A record as a CSV row: a column per class score, text safe to open in a spreadsheet
        (`mer.serving.tables`)."""
        flat = {key: value for key, value in record.items() if key not in ("scores", "dimensions")}
        for label in self.labels:
            flat[f"score_{label}"] = (record["scores"] or {}).get(label)
        for name in self.dimensions:
            flat[name] = (record["dimensions"] or {}).get(name)
        return {key: ("" if value is None else spreadsheet_safe(value)) for key, value in flat.items()}


@dataclass
class _Decoded:
    path: Path
    clip: PreparedAudio | None = None
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
    summary = PredictionSummary(max_seconds=pipe.max_seconds)
    todo = [path for path in files if str(path) not in log.done]
    summary.already_done = len(files) - len(todo)
    bar = tqdm(total=len(files), initial=summary.already_done, unit="file", disable=not progress, dynamic_ncols=True)
    with bar, ThreadPoolExecutor(_DECODE_THREADS) as pool:
        decode = lambda path: _decode(pipe, path)  # noqa: E731
        for group in _groups(todo, batch_size * _LOOKAHEAD_BATCHES):
            decoded = list(pool.map(decode, group))
            failed = [item for item in decoded if item.error]
            good = sorted((item for item in decoded if not item.error), key=lambda item: len(item.clip.waveform))
            records = [log.record(item.path, error=item.error) for item in failed]
            for start in range(0, len(good), batch_size):
                batch = good[start : start + batch_size]
                records += _classify(pipe, batch, log, transcripts)
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


def _decode(pipe: MERPipeline, path: Path) -> _Decoded:
    """`path` read by the pipeline's length policy (`MERPipeline.prepare_audio`), then refused when it holds no
    speech (as the Space refuses it)."""
    try:
        clip = pipe.prepare_audio(path)
    except ValueError as error:
        return _Decoded(path, error=str(error))
    problem = speech_problem(clip.waveform, clip.sampling_rate, clip.name)
    if problem is not None:
        return _Decoded(path, error=problem)
    return _Decoded(path, clip=clip)


def _classify(
    pipe: MERPipeline, batch: list[_Decoded], log: PredictionLog, transcripts: TranscriptTable | None
) -> list[dict]:
    inputs = [{"audio": item.clip, "text": transcripts.get(item.path) if transcripts else None} for item in batch]
    try:
        results = pipe(inputs, batch_size=len(inputs))
    except (ValueError, RuntimeError) as error:  # one bad item fails its batch: one by one, the others are kept
        if len(batch) == 1:
            logger.debug("Classifying %s failed", batch[0].path, exc_info=True)
            return [log.record(batch[0].path, error=f"'{batch[0].path}': {error}")]
        return [record for item in batch for record in _classify(pipe, [item], log, transcripts)]
    return [
        log.record(item.path, result, seconds=item.clip.seconds, cropped=item.clip.cropped)
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
            if record["cropped"]:
                summary.cropped.append(record["path"])
    bar.update(len(records))
    bar.set_postfix_str(f"{summary.audio_seconds / 3600:.2f} h audio, {len(summary.failed)} failed", refresh=False)
