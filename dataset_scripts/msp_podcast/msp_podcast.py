"""MSP-Podcast as a `datasets` builder for the release as downloaded.

The release (Lotfian & Busso, IEEE TAC 10(4), 2019; licensed per user by the UT Dallas MSP lab) unpacks to
``Audios/MSP-PODCAST_<podcast>_<segment>.wav`` (e.g. ``MSP-PODCAST_0001_0008.wav``) and ``Labels/``; newer releases
add ``Transcripts/<name>.txt`` (plain text, one file per segment), ``ForceAligned/``, ``Speaker_ids.txt``, a
``readme.txt`` naming the release and a partition file. What the builder reads:

* The consensus label file, ``Labels/labels_consensus.csv`` (``labels_concensus.csv``, so misspelled, in 1.6 and
  1.8): ``FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set``, one row per labelled segment, e.g.
  ``MSP-PODCAST_0001_0008.wav,N,2.2,4.0,2.6,30,Male,Test1``. EmoClass is the plurality vote of at least five raters:
  A angry, S sad, H happy, U surprise, F fear, D disgust, C contempt, N neutral, O other, X no agreement.
  EmoAct / EmoVal / EmoDom are the raters' mean arousal, valence and dominance on the Self-Assessment Manikin's 1-7
  scale, kept as printed. SpkrID is a number or ``Unknown``; Gender is ``Female``, ``Male`` or ``Unknown``.
* Split_Set: ``Train``, ``Development`` (``Validation`` in 1.6 and 1.8), ``Test1``, ``Test2`` and, from 1.11,
  ``Test3``, whose labels are withheld. A label file without a Split_Set column takes the split from the partition
  file, ``Partitions.txt`` (1.8) or ``Partition.txt`` (1.12, the Odyssey 2024 challenge release), lines
  ``Train; MSP-PODCAST_0023_0048.wav``.
* ``<name>.txt`` beside the audio or in ``Transcripts/``: the transcript (``""`` where there is none).

Files are found by name at any depth, audio in any format ffmpeg reads. ``Previous_releases_information/`` (1.12
on: the label files of past releases and the wavs they dropped) is not part of the release and is never read.

Splits are the release's own speaker-independent partition: ``train``, ``validation`` (Development), ``test1``,
``test2``; ``test3`` only for Test3 rows that carry labels (the published releases withhold them).
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
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
    "DOCUMENTED_RELEASES",
    "EMOTIONS",
    "SPLITS",
    "DocumentedRelease",
    "MspPodcast",
    "load_msp_podcast",
    "scan_msp_podcast",
]

# EmoClass code -> the primary emotion it stands for (the release's readme); the label names are the codes.
EMOTIONS = {
    "N": "neutral", "H": "happy", "A": "angry", "S": "sad", "F": "fear", "D": "disgust", "U": "surprise",
    "C": "contempt", "O": "other", "X": "no agreement",
}  # fmt: skip
# Split_Set value -> split name. Validation is the Development set's name up to version 1.8.
SPLITS = {
    "Train": "train", "Development": "validation", "Validation": "validation", "Test1": "test1", "Test2": "test2",
    "Test3": "test3",
}  # fmt: skip
SCALE = (1.0, 7.0)  # the Self-Assessment Manikin's range of the arousal / valence / dominance ratings
GENDERS = {"female": "F", "male": "M", "unknown": "", "": ""}
LABEL_FILES = ("labels_consensus.csv", "labels_concensus.csv")
PARTITION_FILES = ("partition.txt", "partitions.txt")
COLUMNS = ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender")
SPLIT_COLUMN = "Split_Set"
PREVIOUS_RELEASES = "previous_releases_information"  # compared case-insensitively
_NAME = re.compile(r"MSP-PODCAST_(?P<podcast>\d+)_\d+(?:_\d+)*")
_RELEASE_LINE = re.compile(r"#\s*Release\s+(?P<release>[\w.\-]+)")
EXPECTED = (
    "the MSP-Podcast release: Labels/labels_consensus.csv (labels_concensus.csv up to 1.8) beside Audios/ holding "
    "MSP-PODCAST_<podcast>_<segment>.wav files"
)


@dataclass(frozen=True)
class DocumentedRelease:
    """What the documentation of one release says it holds: audio files (speaking turns), transcripts, and
    segments per Split_Set value; `withheld` names the splits whose labels are not published."""

    source: str
    audio: int
    transcripts: int | None = None
    splits: dict[str, int] = field(default_factory=dict)
    withheld: tuple[str, ...] = ("Test3",)

    @property
    def labelled(self) -> int | None:
        """Segments of the published labelled splits, or None when the documentation gives no split counts."""
        if not self.splits:
            return None
        return sum(count for split, count in self.splits.items() if split not in self.withheld)


# readme.txt's "Release ..." line -> its documentation. Versions not listed here are checked against their own
# label file only.
DOCUMENTED_RELEASES = {
    "1.11": DocumentedRelease(
        "the MSP lab's MSP-Podcast page for version 1.11",
        audio=151_654,
        splits={"Train": 84_030, "Development": 19_815, "Test1": 30_647, "Test2": 14_815, "Test3": 2_347},
    ),
    "1.12": DocumentedRelease("readme.txt of release 1.12 (June 6, 2024)", audio=207_136, transcripts=203_936),
    "Emo-challenge-odyssey": DocumentedRelease(
        "readme.txt of the Odyssey 2024 emotion challenge release",
        audio=119_421,
        transcripts=116_221,
        splits={"Train": 84_260, "Development": 31_961, "Test3": 3_200},
    ),
}


def _in_previous_releases(path: Path, root: Path) -> bool:
    return any(part.lower() == PREVIOUS_RELEASES for part in path.relative_to(root).parts[:-1])


def _files_named(root: Path, names: tuple[str, ...]) -> list[Path]:
    """Files under `root` named one of `names` (any case), outside dot-folders and past-release information."""
    wanted = set(names)
    found = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = [
            d for d in subdirectories if not d.startswith(".") and d != "__MACOSX" and d.lower() != PREVIOUS_RELEASES
        ]
        found += [Path(directory) / f for f in files if not f.startswith(".") and f.lower() in wanted]
    return sorted(found)


def _one_file(root: Path, names: tuple[str, ...], what: str) -> Path | None:
    found = _files_named(root, names)
    if len(found) > 1:
        listed = ", ".join(str(path.relative_to(root)) for path in found)
        raise ValueError(f"{root} holds {len(found)} {what} files ({listed}); expected one, {EXPECTED}")
    return found[0] if found else None


def _stem(file_name: str) -> str:
    """``MSP-PODCAST_0001_0008.wav`` -> ``MSP-PODCAST_0001_0008`` (a name given without a suffix is kept)."""
    path = Path(file_name)
    return path.stem if path.suffix.lower() in (".wav", ".flac", ".opus", ".mp3", ".ogg", ".m4a") else file_name


def _read_partition(path: Path, notes: list[str]) -> dict[str, str]:
    """stem -> Split_Set value from ``Partition(s).txt`` lines ``Train; MSP-PODCAST_0023_0048.wav``."""
    partition: dict[str, str] = {}
    malformed = []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        split, separator, name = (part.strip() for part in line.partition(";"))
        if not separator or not split or not name:
            malformed.append(number)
            continue
        partition[_stem(name.rstrip(";").strip())] = split
    if malformed:
        lines = ", ".join(map(str, malformed[:10])) + (" ..." if len(malformed) > 10 else "")
        notes.append(f"{len(malformed)} line(s) of {path.name} are not 'Split; file name', not read: lines {lines}")
    return partition


def _read_labels(path: Path, has_partition: bool) -> tuple[list[tuple[int, dict[str, str]]], bool]:
    """The label file's rows as (line number, column -> stripped value), and whether it has a Split_Set column.

    Raises:
        ValueError: a column is missing, or Split_Set is missing and there is no partition file.
    """
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or []]
        reader.fieldnames = header
        missing = [column for column in COLUMNS if column not in header]
        if missing:
            raise ValueError(
                f"{path} is not an MSP-Podcast consensus label file: missing column(s) {missing}; expected "
                f"{', '.join(COLUMNS + (SPLIT_COLUMN,))}; found {header}"
            )
        has_split = SPLIT_COLUMN in header
        if not has_split and not has_partition:
            raise ValueError(
                f"{path} has no {SPLIT_COLUMN} column and there is no Partition.txt / Partitions.txt beside it: "
                "the split of each segment is unknown"
            )
        rows = [
            (reader.line_num, {key: (value or "").strip() for key, value in row.items() if key is not None})
            for row in reader
        ]
    return rows, has_split


def _release_name(root: Path) -> str | None:
    """The ``Release ...`` of the release's readme.txt, e.g. ``1.12``, or None."""
    readmes = _files_named(root, ("readme.txt",))
    if not readmes:
        return None
    readme = min(readmes, key=lambda path: len(path.parts))  # the release's own, not one inside a folder of it
    match = _RELEASE_LINE.search(readme.read_text(encoding="utf-8", errors="replace"))
    return None if match is None else match["release"]


def _rating(row: dict[str, str], column: str) -> float | str:
    """The rating as a float, or why it is not one."""
    try:
        value = float(row[column])
    except ValueError:
        return f"{column} {row[column]!r} is not a number"
    if not math.isfinite(value) or not SCALE[0] <= value <= SCALE[1]:
        return f"{column} {row[column]} is outside the rating scale {SCALE[0]:g}-{SCALE[1]:g}"
    return value


def _transcripts(root: Path, notes: list[str]) -> dict[str, Path]:
    """stem -> transcript file: ``<MSP-PODCAST name>.txt`` anywhere outside past-release information."""
    found: dict[str, Path] = {}
    duplicates = 0
    for path in find_files(root, (".txt",)):
        if _NAME.fullmatch(path.stem) is None or _in_previous_releases(path, root):
            continue
        if path.stem in found:
            duplicates += 1
            continue
        found[path.stem] = path
    if duplicates:
        notes.append(f"{duplicates} transcript(s) found twice; the first of each (by path) is read")
    return found


def _read_transcript(path: Path) -> str:
    return " ".join(path.read_text(encoding="utf-8-sig", errors="replace").split())


def _counts(counter: Counter) -> str:
    order = list(dict.fromkeys(SPLITS.values()))
    order += sorted(set(counter) - set(order))  # Split_Set values that are no split, as found
    return ", ".join(f"{split or 'no split'} {counter[split]:,}" for split in order if counter[split]) or "none"


def _documentation_notes(
    name: str | None, documented: DocumentedRelease | None, listed: Counter, audio: int, transcripts: int
) -> list[str]:
    """The release's documented counts against what was found, where readme.txt names a documented release."""
    if name is None:
        return ["no readme.txt naming the release: counts checked against its label file only"]
    if documented is None:
        return [f"readme.txt names release {name}, whose documented counts are not known here"]
    differences = []
    for raw, count in documented.splits.items():
        if raw not in documented.withheld and listed[SPLITS[raw]] != count:
            differences.append(f"{raw} {listed[SPLITS[raw]]:,} in the label file, documented {count:,}")
    if audio != documented.audio:
        differences.append(f"{audio:,} audio files, documented {documented.audio:,}")
    if documented.transcripts is not None and transcripts != documented.transcripts:
        differences.append(f"{transcripts:,} transcripts, documented {documented.transcripts:,}")
    if not differences:
        return [f"as documented by {documented.source}"]
    return [f"differs from {documented.source}: {'; '.join(differences)}"]


def _row_problem(row: dict[str, str], raw_split: str, has_split: bool) -> str | None:
    """Why a label row cannot be an example (its audio aside), or None."""
    if not row["FileName"]:
        return "FileName is empty"
    if row["EmoClass"] not in EMOTIONS:
        return f"EmoClass {row['EmoClass']!r} is not one of {', '.join(EMOTIONS)}"
    for column in ("EmoAct", "EmoVal", "EmoDom"):
        rating = _rating(row, column)
        if isinstance(rating, str):
            return rating
    if row["Gender"].lower() not in GENDERS:
        return f"Gender {row['Gender']!r} is not Female, Male or Unknown"
    if not raw_split:
        return "no split: " + ("Split_Set is empty" if has_split else "the partition file does not list it")
    if raw_split not in SPLITS:
        return f"Split_Set {raw_split!r} is not one of {', '.join(SPLITS)}"
    return None


def _example(stem: str, row: dict[str, str], split: str, audio: Path, transcript: Path | None) -> dict:
    name = _NAME.fullmatch(stem)
    return {
        "id": stem,
        "audio": str(audio),
        "text": "" if transcript is None else _read_transcript(transcript),
        "label": row["EmoClass"],
        "arousal": float(row["EmoAct"]),
        "valence": float(row["EmoVal"]),
        "dominance": float(row["EmoDom"]),
        "speaker": row["SpkrID"],
        "gender": GENDERS[row["Gender"].lower()],
        "podcast": "" if name is None else name["podcast"],
        "split": split,
    }


@dataclass
class _Found:
    """The files of a release as found: label file, partition, audio and transcripts by stem."""

    root: Path
    label_path: Path
    rows: list[tuple[int, dict[str, str]]]
    has_split: bool
    partition_path: Path | None
    partition: dict[str, str]
    audio: dict[str, Path]  # every audio file outside past-release information, by stem
    named: set[str]  # the stems among them named like MSP-Podcast files
    previous: int  # audio files under Previous_releases_information/
    transcripts: dict[str, Path]
    problems: list[Problem]
    notes: list[str]


def _find_release(root: Path) -> _Found:
    label_path = _one_file(root, LABEL_FILES, "consensus label")
    if label_path is None:
        found = [str(path.relative_to(root)) for path in find_files(root, (".csv", ".wav", ".txt"))[:5]]
        raise ValueError(
            f"{root} is not an MSP-Podcast release: expected {EXPECTED}; found no {LABEL_FILES[0]} (found: {found})"
        )
    notes: list[str] = []
    partition_path = _one_file(root, PARTITION_FILES, "partition")
    partition = {} if partition_path is None else _read_partition(partition_path, notes)
    rows, has_split = _read_labels(label_path, partition_path is not None)
    problems: list[Problem] = []
    audio_files = find_files(root)
    current = [path for path in audio_files if not _in_previous_releases(path, root)]
    matched, unmatched = match_files(current, _NAME, problems)
    audio = {path.stem: path for path in unmatched} | {stem: path for stem, (path, _) in matched.items()}
    listed = {_stem(row["FileName"]) for _, row in rows}
    if not listed & set(audio):
        found = [str(path.relative_to(root)) for path in current[:5]]
        raise ValueError(
            f"{root} is not an MSP-Podcast release: {label_path.relative_to(root)} lists {len(listed):,} segments, "
            f"but none of their audio files is here; expected {EXPECTED} (found: {found})"
        )
    transcripts = _transcripts(root, notes)
    previous = len(audio_files) - len(current)
    return _Found(
        root, label_path, rows, has_split, partition_path, partition, audio, set(matched), previous, transcripts,
        problems, notes,
    )  # fmt: skip


def scan_msp_podcast(data_dir: str | Path) -> Scan:
    """Reads the MSP-Podcast release under `data_dir`: the examples of each split, the problems (a label row whose
    audio is missing or unreadable, a bad label, gender, rating or split value, a segment listed twice, an audio
    file found twice) and the check: the label rows against the audio found (missing by name), the audio no label
    row names (extra), the counts per split, the segments without a transcript, and the release's documented
    counts where readme.txt names a release listed in `DOCUMENTED_RELEASES`.

    Raises:
        FileNotFoundError: `data_dir` is missing.
        ValueError: no consensus label file under it, or no audio that the label file names (naming what was
            found instead); a label file without the expected columns; no split (no Split_Set, no partition file).
    """
    release = _find_release(require_directory(Path(data_dir), "MSP-Podcast", EXPECTED))
    splits: dict[str, list[dict]] = {"train": [], "validation": [], "test1": [], "test2": []}
    listed: Counter = Counter()  # split (or the unknown Split_Set value) -> labelled rows
    missing: list[str] = []
    seen: set[str] = set()
    withheld = {stem for stem, raw in release.partition.items() if SPLITS.get(raw) == "test3"}
    disagreeing = 0
    for line, row in release.rows:
        stem = _stem(row["FileName"])
        raw_split = row[SPLIT_COLUMN] if release.has_split else release.partition.get(stem, "")
        disagreeing += release.has_split and release.partition.get(stem, raw_split) != raw_split
        if SPLITS.get(raw_split) == "test3" and not row["EmoClass"]:
            withheld.add(stem)  # a Test3 row without its labels
            continue
        if stem in seen:
            message = f"{stem} is listed twice in the label file"
        else:
            listed[SPLITS.get(raw_split, raw_split)] += 1
            message = _row_problem(row, raw_split, release.has_split)
        seen.add(stem)
        if message is None and stem not in release.audio:
            missing.append(stem)
            message = f"no audio file for {stem}; expected Audios/{stem}.wav"
        if message is not None:
            release.problems.append(Problem(release.label_path, line, message))
            continue
        message = audio_problem(release.audio[stem])
        if message is not None:
            release.problems.append(Problem(release.audio[stem], None, message))
            continue
        split = SPLITS[raw_split]
        example = _example(stem, row, split, release.audio[stem], release.transcripts.get(stem))
        splits.setdefault(split, []).append(example)
    withheld -= seen
    check = _check(release, splits, listed, missing, withheld, disagreeing)
    return Scan(splits, release.problems, check)


def _check(
    release: _Found,
    splits: dict[str, list[dict]],
    listed: Counter,
    missing: list[str],
    withheld: set[str],
    disagreeing: int,
) -> ReleaseCheck:
    root = release.root
    name = _release_name(root)
    documented = DOCUMENTED_RELEASES.get(name) if name is not None else None
    listed_stems = {_stem(row["FileName"]) for _, row in release.rows}
    kept = Counter({split: len(examples) for split, examples in splits.items()})
    labelled = sum(listed.values())
    check = ReleaseCheck(
        "MSP-Podcast" + ("" if name is None else f" {name}"),
        documented.labelled if documented is not None and documented.labelled is not None else labelled,
        sum(kept.values()),
        missing=sorted(missing),
        extra=sorted(release.named - listed_stems - withheld),
    )
    check.notes.append(
        f"{release.label_path.relative_to(root)} lists {labelled:,} labelled segments: {_counts(listed)}"
    )
    check.notes.append(f"kept per split: {_counts(kept)}")
    if not release.has_split:
        check.notes.append(f"splits read from {release.partition_path.relative_to(root)} (no Split_Set column)")
    if disagreeing:
        check.notes.append(
            f"{disagreeing} segment(s) whose Split_Set differs from {release.partition_path.name}; Split_Set is used"
        )
    if withheld:
        check.notes.append(f"{len(withheld):,} Test3 segment(s) whose labels are withheld, not read (no test3 split)")
    untranscribed = sum(
        example["id"] not in release.transcripts for examples in splits.values() for example in examples
    )
    check.notes.append(f"{untranscribed:,} of {check.found:,} kept segments have no transcript (text '')")
    check.notes += _documentation_notes(name, documented, listed, len(release.named), len(release.transcripts))
    if release.previous:
        check.notes.append(f"{release.previous:,} audio file(s) under Previous_releases_information/ not read")
    foreign = sorted(stem for stem in set(release.audio) - release.named - listed_stems)
    if foreign:
        names = ", ".join(str(release.audio[stem].relative_to(root)) for stem in foreign[:5])
        check.notes.append(f"{len(foreign)} audio file(s) not named like MSP-Podcast files, not read: {names}")
    check.notes += release.notes
    return check


RELEASE = Release(
    key="msp_podcast",
    name="MSP-Podcast",
    scan=scan_msp_podcast,
    features=utterance_features(
        CORPUS_LABELS["msp_podcast"],
        arousal="float64",
        valence="float64",
        dominance="float64",
        podcast="string",
        split="string",
    ),
    description="MSP-Podcast: naturalistic podcast speech segments with crowd-sourced primary emotions and "
    "arousal / valence / dominance ratings (Lotfian & Busso, 2019).",
    homepage="https://ecs.utdallas.edu/research/researchlabs/msp-lab/MSP-Podcast.html",
    license="academic license of the UT Dallas MSP lab (each user requests it; no redistribution)",
    citation="Lotfian, R. & Busso, C. Building naturalistic emotionally balanced speech corpus by retrieving "
    "emotional speech from existing podcast recordings. IEEE Transactions on Affective Computing 10(4): 471-483, "
    "2019.",
    expected=EXPECTED,
    file_names=_NAME,
)


# The `datasets` builder and its loader, as every release has them (`dataset_scripts.release.Release`).
MspPodcast = RELEASE.builder_class
load_msp_podcast = RELEASE.load
