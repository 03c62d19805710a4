"""MELD, the Multimodal EmotionLines Dataset, as a `datasets` builder for the raw release as downloaded.

The release (Poria et al., ACL 2019; ``MELD.Raw.tar.gz`` from web.eecs.umich.edu/~mihalcea/downloads) unpacks to
``MELD.Raw/`` holding ``train_sent_emo.csv``, ``dev_sent_emo.csv``, ``test_sent_emo.csv`` and three more tarballs,
``train.tar.gz``, ``dev.tar.gz`` and ``test.tar.gz``, which unpack to the clip folders ``train_splits/``,
``dev_splits_complete/`` and ``output_repeated_splits_test/``. Each clip is an mp4 (video and audio) cut from an
episode of *Friends* and named ``dia<Dialogue_ID>_utt<Utterance_ID>.mp4``; the same names recur in every split, so
the folder a clip is in says its split. A CSV row is ``Sr No., Utterance, Speaker, Emotion, Sentiment, Dialogue_ID,
Utterance_ID, Season, Episode, StartTime, EndTime``; the times are the utterance's place in its episode,
``hh:mm:ss,ms``.

Files are found at any depth (the release's folders, or a repacking such as ``train/train_splits/``; a copy whose
split folders are named ``train/``, ``dev/``, ``test/`` is read too) and in any format ffmpeg reads: the audio is
decoded from the mp4's audio stream, or from an extracted ``.wav`` / ``.flac`` of the same name. The CSVs are read
wherever they are under `data_dir`.

The standard protocol is MELD's own: train on ``train``, select on ``validation`` (MELD's dev), report the weighted
F1 on ``test``. Speakers (the six friends above all) recur in every split, so the protocol is not
speaker-independent.

Known faults of the release, and what the scan does with them (see README.md beside this file):

* the CSVs carry cp1252 punctuation as C1 control characters (``"\\x92"`` for an apostrophe, ``"\\x85"`` for an
  ellipsis, ``"\\x96"`` / ``"\\x97"`` for dashes, ``"\\xa0"`` for a space), and copies that went through a
  spreadsheet carry mojibake such as ``"â€™"``: `repair_text` restores the characters, and the check counts the
  rows it changed;
* rows whose clip is not in its folder (dev ``dia110_utt7``): one problem per CSV naming them all;
* clips that ffmpeg cannot read or that have no audio stream (train ``dia125_utt3``): a problem naming the clip;
* clips that no row names (dev ``dia49_utt4``; test ``final_videos_testdia101_utt0``): extra in the check, not read;
* macOS ``._*`` files: never read.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..labels import CORPUS_LABELS
from ..release import (
    Problem,
    Release,
    ReleaseCheck,
    Scan,
    audio_problem,
    find_files,
    match_files,
    require_directory,
    utterance_features,
)

__all__ = [
    "RELEASE",
    "CSV_FILES",
    "DOCUMENTED_DIALOGUES",
    "DOCUMENTED_UTTERANCES",
    "EMOTIONS",
    "SENTIMENTS",
    "SPLIT_FOLDERS",
    "Meld",
    "load_meld",
    "parse_time",
    "repair_text",
    "scan_meld",
]

EMOTIONS = tuple(CORPUS_LABELS["meld"])  # neutral, joy, anger, sadness, fear, disgust, surprise
SENTIMENTS = ("negative", "neutral", "positive")
# split -> the CSV of its rows, and the folder its tarball unpacks to
CSV_FILES = {"train": "train_sent_emo.csv", "validation": "dev_sent_emo.csv", "test": "test_sent_emo.csv"}
SPLIT_FOLDERS = {"train": "train_splits", "validation": "dev_splits_complete", "test": "output_repeated_splits_test"}
# Folder names of re-packed copies (``audio/train/dia0_utt0.flac``); the release's own names above take precedence.
_FOLDER_ALIASES = {"train": "train", "dev": "validation", "validation": "validation", "test": "test"}
# MELD's documented sizes (README of github.com/declare-lab/MELD, "Dataset Statistics", as in the paper)
DOCUMENTED_UTTERANCES = {"train": 9989, "validation": 1109, "test": 2610}
DOCUMENTED_DIALOGUES = {"train": 1039, "validation": 114, "test": 280}
COLUMNS = (
    "Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID", "Season", "Episode",
    "StartTime", "EndTime",
)  # fmt: skip
_CLIP = re.compile(r"dia(?P<dialogue>0|[1-9]\d*)_utt(?P<utterance>0|[1-9]\d*)")
# hh:mm:ss,ms; the release also writes the hour as one digit ("0:10:44,769") and, in three rows, the milliseconds
# as two ("00:06:47,28")
_TIME = re.compile(r"(?P<h>\d{1,2}):(?P<m>[0-5]\d):(?P<s>[0-5]\d),(?P<ms>\d{1,3})")
EXPECTED = (
    "the MELD raw release (MELD.Raw): train_sent_emo.csv, dev_sent_emo.csv, test_sent_emo.csv and the clip folders "
    "train_splits/, dev_splits_complete/, output_repeated_splits_test/ holding dia<D>_utt<U>.mp4"
)

# --- the text repair --------------------------------------------------------------------------------------------
# The damage is a closed set, so the rule is written out here rather than taken from a library (ftfy, which
# guesses among many encodings, is not a dependency of this project): every character it changes is listed below,
# and text without these characters passes through untouched.
#
# 1. Mojibake: the UTF-8 bytes of one character read back as cp1252 (or latin-1) characters, e.g. "â€™" for "’".
#    A lead character (U+00C2-U+00F4) followed by as many continuation characters as its lead byte announces is
#    re-encoded to bytes and decoded as UTF-8; it is replaced only when that yields one printable character.
# 2. C1 control characters U+0080-U+009F, which are never text: the cp1252 character of that byte ("\x92" -> "’",
#    "\x85" -> "…", "\x96" -> "–", "\x97" -> "—"); the five bytes cp1252 leaves undefined are removed.
# 3. The no-break space U+00A0 becomes a plain space, as the MELD maintainers' own fix did (declare-lab/MELD#28).
_CP1252_BYTE = {}  # character -> the byte it stands for when UTF-8 bytes were read as cp1252 or latin-1
for _byte in range(0x80, 0x100):
    _CP1252_BYTE[chr(_byte)] = _byte  # latin-1 reading (and cp1252's undefined bytes, which decoders pass through)
    try:
        _CP1252_BYTE[bytes([_byte]).decode("cp1252")] = _byte
    except UnicodeDecodeError:
        pass
_CONTINUATION = "".join(re.escape(c) for c, b in sorted(_CP1252_BYTE.items()) if 0x80 <= b <= 0xBF)
_MOJIBAKE = re.compile(
    rf"[\u00c2-\u00df][{_CONTINUATION}]|[\u00e0-\u00ef][{_CONTINUATION}]{{2}}|[\u00f0-\u00f4][{_CONTINUATION}]{{3}}"
)
_C1 = {chr(b): bytes([b]).decode("cp1252", errors="ignore") for b in range(0x80, 0xA0)}
_C1_OR_NBSP = re.compile("[\u0080-\u009f\u00a0]")


def _unmojibake(match: re.Match) -> str:
    try:
        character = bytes(_CP1252_BYTE[c] for c in match[0]).decode("utf-8")
    except UnicodeDecodeError:
        return match[0]
    return character if character.isprintable() else match[0]


def repair_text(text: str) -> str:
    """`text` with the release's encoding damage undone: mojibake ("â€™" -> "’", "â€¦" -> "…", "Ã©" -> "é"), C1
    control characters standing for cp1252 punctuation ("\\x92" -> "’", "\\x85" -> "…", "\\x96" -> "–") and
    no-break spaces (-> " "). Text without such characters is returned unchanged."""
    text = _MOJIBAKE.sub(_unmojibake, text)
    return _C1_OR_NBSP.sub(lambda m: " " if m[0] == "\u00a0" else _C1[m[0]], text)


def parse_time(text: str) -> float:
    """Seconds from a MELD time, ``"00:16:16,059"`` -> 976.059; the hour may have one digit (``"0:10:44,769"``)
    and the field after the comma is a count of milliseconds however many digits it has (``"00:06:47,28"`` ->
    407.028), as in the subtitle files the times come from.

    Raises:
        ValueError: not ``h:mm:ss,ms``.
    """
    match = _TIME.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"time {text!r} is not hh:mm:ss,ms")
    return int(match["h"]) * 3600 + int(match["m"]) * 60 + int(match["s"]) + int(match["ms"]) / 1000


# --- reading the CSVs and clips ---------------------------------------------------------------------------------


def _decode_csv(path: Path) -> tuple[str, int]:
    """The CSV's text and how many of its lines were not UTF-8 (then read as cp1252, the encoding of the damage)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8").removeprefix("\ufeff"), 0
    except UnicodeDecodeError:
        lines, legacy = [], 0
        for line in data.splitlines(keepends=True):
            try:
                lines.append(line.decode("utf-8"))
            except UnicodeDecodeError:
                lines.append(line.decode("cp1252", errors="replace"))
                legacy += 1
        return "".join(lines).removeprefix("\ufeff"), legacy


def _find_csvs(root: Path) -> dict[str, Path]:
    """split -> its CSV under `root`; a CSV found twice with different contents is ambiguous (ValueError)."""
    found: dict[str, Path] = {}
    for path in find_files(root, (".csv",)):
        split = next((split for split, name in CSV_FILES.items() if path.name.lower() == name), None)
        if split is None:
            continue
        if split in found and found[split].read_bytes() != path.read_bytes():
            raise ValueError(
                f"two different {CSV_FILES[split]} under {root}: {found[split]} and {path}; keep the release's one"
            )
        found.setdefault(split, path)
    return found


def _read_rows(path: Path, split: str, problems: list[Problem], tally: Counter) -> list[tuple[int, dict]]:
    """(line, example without audio) for each well-formed row of a split's CSV; malformed rows become problems.
    `tally` counts the repaired rows, the rows with short millisecond fields and the rows ending at their start."""
    text, legacy = _decode_csv(path)
    tally["legacy lines"] += legacy
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [name.strip() for name in reader.fieldnames or []]
    absent = [name for name in COLUMNS if name not in header]
    if absent:
        raise ValueError(f"{path} is not a MELD CSV: no column(s) {absent}; expected the columns {list(COLUMNS)}")
    reader.fieldnames = header
    rows, seen = [], {}
    line = 2  # the first row's line; a row can span lines (a quoted newline), so count from the reader
    for record in reader:
        start_line, line = line, reader.line_num + 1
        record = {key: (value or "").strip() for key, value in record.items() if key is not None}
        try:
            dialogue, utterance = int(record["Dialogue_ID"]), int(record["Utterance_ID"])
            season, episode = int(record["Season"]), int(record["Episode"])
        except ValueError:
            problems.append(Problem(path, start_line, "Dialogue_ID, Utterance_ID, Season and Episode must be ints"))
            continue
        name = f"dia{dialogue}_utt{utterance}"
        message = None
        if record["Emotion"] not in EMOTIONS:
            message = f"emotion {record['Emotion']!r} is not one of MELD's {list(EMOTIONS)}"
        elif record["Sentiment"] not in SENTIMENTS:
            message = f"sentiment {record['Sentiment']!r} is not one of {list(SENTIMENTS)}"
        elif name in seen:
            message = f"{name} is here twice: also line {seen[name]}"
        if message is None:
            try:
                start, end = parse_time(record["StartTime"]), parse_time(record["EndTime"])
            except ValueError as error:
                message = str(error)
        if message is not None:
            problems.append(Problem(path, start_line, message))
            continue
        seen[name] = start_line
        transcript, speaker = repair_text(record["Utterance"]), repair_text(record["Speaker"])
        tally["repaired"] += transcript != record["Utterance"] or speaker != record["Speaker"]
        tally["short milliseconds"] += any(len(record[c].rpartition(",")[2]) < 3 for c in ("StartTime", "EndTime"))
        tally["not after start"] += end <= start
        example = {
            "id": f"{split}/{name}",
            "text": transcript,
            "label": record["Emotion"],
            "sentiment": record["Sentiment"],
            "speaker": speaker,
            "gender": "",
            "dialogue": dialogue,
            "utterance": utterance,
            "season": season,
            "episode": episode,
            "start": start,
            "end": end,
            "split": split,
        }
        rows.append((start_line, example))
    return rows


def _split_of(path: Path, root: Path) -> str | None:
    """The split whose folder holds `path`: the innermost folder named as the release names them (or as a
    re-packed copy does, ``train/``, ``dev/``, ``test/``)."""
    folders = path.relative_to(root).parts[:-1]
    for names in ({folder: split for split, folder in SPLIT_FOLDERS.items()}, _FOLDER_ALIASES):
        split = next((names[part.lower()] for part in reversed(folders) if part.lower() in names), None)
        if split is not None:
            return split
    return None


def _clip_problem(path: Path) -> str | None:
    """Why a clip cannot serve as its utterance's audio, or None. ffmpeg's words for a clip without an audio stream
    (through torchcodec: "The best audio stream is unknown ...") are put plainly."""
    message = audio_problem(path)
    if message is not None and "audio stream" in message.lower():
        return "no audio stream in the clip (video only)"
    return message


def scan_meld(data_dir: str | Path) -> Scan:
    """Reads the MELD release under `data_dir`: the rows of each split's CSV joined with their clips (the
    examples of ``train``, ``validation``, ``test``), the problems (malformed rows, rows without a clip, clips
    without readable audio, a clip found twice) and the check against the 13,708 documented utterances, naming the
    missing and the extra clips.

    Raises:
        FileNotFoundError: `data_dir` is missing.
        ValueError: not the MELD release (no MELD CSV; a CSV without MELD's columns; the CSVs without a single
            clip, e.g. when the inner tarballs are not unpacked), naming what was found instead.
    """
    root = require_directory(Path(data_dir), "MELD", EXPECTED)
    csvs = _find_csvs(root)
    files = find_files(root)
    if not csvs:
        found = [str(path.relative_to(root)) for path in (find_files(root, (".csv",)) + files)[:5]]
        raise ValueError(f"{root} is not a MELD release: expected {EXPECTED}; found no MELD CSV (found: {found})")
    absent = [name for split, name in CSV_FILES.items() if split not in csvs]
    if absent:
        raise ValueError(f"{root} is not a complete MELD release: no {', '.join(absent)}; expected {EXPECTED}")

    problems: list[Problem] = []
    by_split: dict[str, list[Path]] = {split: [] for split in CSV_FILES}
    outside = []
    for path in files:
        split = _split_of(path, root)
        (outside if split is None else by_split[split]).append(path)
    if not any(by_split.values()):
        tarballs = [str(p.relative_to(root)) for p in sorted(root.rglob("*.tar.gz")) if not p.name.startswith(".")]
        hint = f"; unpack {', '.join(tarballs)} where they are" if tarballs else ""
        raise ValueError(
            f"{root} has the MELD CSVs but no clip in {', '.join(f'{f}/' for f in SPLIT_FOLDERS.values())}: "
            f"expected {EXPECTED}{hint}"
        )

    tally: Counter = Counter()
    check = ReleaseCheck("MELD", sum(DOCUMENTED_UTTERANCES.values()), 0)
    to_check: list[tuple[str, dict, Path]] = []
    rows_per_split, dialogues_per_split = {}, {}
    for split in CSV_FILES:
        csv_path = csvs[split]
        matched, unmatched = match_files(by_split[split], _CLIP, problems)
        rows = _read_rows(csv_path, split, problems, tally)
        rows_per_split[split] = len(rows)
        dialogues_per_split[split] = len({example["dialogue"] for _, example in rows})
        named = set()
        missing = []
        for _, example in rows:
            name = example["id"].split("/", 1)[1]
            named.add(name)
            if name in matched:
                to_check.append((split, example, matched[name][0]))
            else:
                missing.append(name)
        if missing:
            problems.append(
                Problem(
                    csv_path,
                    None,
                    f"{len(missing)} row(s) name a clip that is not in {SPLIT_FOLDERS[split]}/: {', '.join(missing)}",
                    utterances=len(missing),
                )
            )
        check.found += len(rows) - len(missing)
        check.missing += [f"{split}/{name}" for name in missing]
        check.extra += sorted(f"{split}/{name}" for name in set(matched) - named)
        check.extra += [f"{split}/{path.stem}" for path in unmatched]

    splits: dict[str, list[dict]] = {split: [] for split in CSV_FILES}
    workers = min(8, os.cpu_count() or 1)  # ffmpeg opens one clip per call; files on disk read faster in parallel
    with ThreadPoolExecutor(workers) as pool:
        messages = pool.map(_clip_problem, [path for _, _, path in to_check])
        for (split, example, path), message in zip(to_check, messages, strict=True):
            if message is not None:
                problems.append(Problem(path, None, f"{example['id']}: {message}"))
            else:
                splits[split].append({**example, "audio": str(path)})
    for examples in splits.values():
        examples.sort(key=lambda example: (example["dialogue"], example["utterance"]))

    check.notes.append(
        "rows per CSV: "
        + ", ".join(f"{s} {rows_per_split[s]} ({DOCUMENTED_UTTERANCES[s]} documented)" for s in CSV_FILES)
    )
    check.notes.append(
        "dialogues: "
        + ", ".join(f"{s} {dialogues_per_split[s]} ({DOCUMENTED_DIALOGUES[s]} documented)" for s in CSV_FILES)
    )
    if tally["repaired"]:
        check.notes.append(f"text or speaker repaired in {tally['repaired']} row(s) (cp1252 characters, mojibake)")
    if tally["legacy lines"]:
        check.notes.append(f"{tally['legacy lines']} CSV line(s) were not UTF-8 and were read as cp1252")
    if tally["short milliseconds"]:
        check.notes.append(
            f"{tally['short milliseconds']} row(s) with fewer than 3 millisecond digits, read as milliseconds "
            "(',28' = 0.028 s)"
        )
    if tally["not after start"]:
        check.notes.append(f"{tally['not after start']} row(s) whose EndTime is not after its StartTime")
    if outside:
        names = ", ".join(str(path.relative_to(root)) for path in outside[:5])
        check.notes.append(f"{len(outside)} audio file(s) outside the clip folders, not read: {names}")
    return Scan(splits, problems, check)


RELEASE = Release(
    key="meld",
    name="MELD",
    scan=scan_meld,
    features=utterance_features(
        EMOTIONS,
        sentiment="string",
        dialogue="int32",
        utterance="int32",
        season="int32",
        episode="int32",
        start="float64",
        end="float64",
        split="string",
    ),
    description="MELD: 13,708 utterances of 1,433 multi-party dialogues from Friends, each with one of 7 emotions "
    "and a sentiment, as video, audio and transcript (Poria et al., 2019).",
    homepage="https://affective-meld.github.io/",
    license="GPL-3.0 (the declare-lab/MELD repository); the clips are excerpts of Friends, for research use",
    citation="Poria, S., Hazarika, D., Majumder, N., Naik, G., Cambria, E. & Mihalcea, R. MELD: A Multimodal "
    "Multi-Party Dataset for Emotion Recognition in Conversations. ACL 2019, 527-536.",
    expected=EXPECTED,
    file_names=re.compile("|".join(re.escape(Path(name).stem) for name in CSV_FILES.values()), re.IGNORECASE),
    suffixes=(".csv",),
)


# The `datasets` builder and its loader, as every release has them (`dataset_scripts.release.Release`).
Meld = RELEASE.builder_class
load_meld = RELEASE.load
