"""IEMOCAP as a `datasets` builder for a local ``IEMOCAP_full_release`` directory.

IEMOCAP is licensed by USC SAIL: users obtain the release themselves and point `data_dir` at it. `datasets` 5.x no
longer runs loading scripts through `load_dataset`, so the builder class is used directly; `load_iemocap` does that.

What the builder reads, and only that (see README.md beside this file for the corpus facts it relies on):

* ``SessionN/dialog/EmoEvaluation/<dialog>.txt``: the summary line of each utterance,
  ``[start - end]<TAB>id<TAB>code<TAB>[V, A, D]``. Evaluator lines, subfolders and ``*.anvil`` are ignored.
* ``SessionN/dialog/transcriptions/<dialog>.txt``: ``id [start-end]: text`` lines (CRLF); lines with ``XX`` ids and
  speaker-tag lines are not utterances.
* ``SessionN/sentences/wav/<dialog>/<id>.wav``.

Dotfiles (macOS ``._*``) are never read. Dialogs are matched by exact name, never by prefix, and the speaker's
gender is the letter of the id's last part (``_F000``), not the motion-capture actor letter after the session.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import datasets
import soundfile as sf

from ..release import Problem

__all__ = [
    "CONFIG_LABELS",
    "RAW_CODES",
    "Iemocap",
    "IemocapConfig",
    "Problem",
    "check_layout",
    "load_iemocap",
    "scan_corpus",
]

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
SESSIONS = (1, 2, 3, 4, 5)
RAW_CODES = ("neu", "hap", "ang", "sad", "exc", "fru", "sur", "fea", "oth", "dis", "xxx")
# config name -> (class names in label-id order, raw code -> class name). 4class merges exc into happy, and its
# order matches the model's default id2label {0: neutral, 1: happy, 2: angry, 3: sad}.
CONFIG_LABELS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "4class": (
        ("neutral", "happy", "angry", "sad"),
        {"neu": "neutral", "hap": "happy", "exc": "happy", "ang": "angry", "sad": "sad"},
    ),
    "6class": (RAW_CODES[:6], {code: code for code in RAW_CODES[:6]}),
    "all": (RAW_CODES, {code: code for code in RAW_CODES}),
}

_NUMBER = r"-?\d+(?:\.\d+)?"
_SUMMARY_LINE = re.compile(
    rf"^\[\s*(?P<start>{_NUMBER})\s*-\s*(?P<end>{_NUMBER})\s*\]\s+(?P<id>\S+)\s+(?P<code>\S+)\s+"
    rf"\[\s*(?P<v>{_NUMBER})\s*,\s*(?P<a>{_NUMBER})\s*,\s*(?P<d>{_NUMBER})\s*\]\s*$"
)
_UTTERANCE_ID = re.compile(r"^Ses0(?P<session>[1-5])[FM]_(?P<rest>.+)_(?P<gender>[FM])\d{3}$")
_TRANSCRIPT_LINE = re.compile(
    rf"^(?P<id>Ses\S+)\s*\[\s*(?P<start>{_NUMBER})\s*-\s*(?P<end>{_NUMBER})\s*\]\s*:(?P<text>.*)$"
)
_TIME_TOLERANCE = 5e-4  # both files print 4 decimals; the real release agrees exactly


@dataclass
class IemocapConfig(datasets.BuilderConfig):
    """`name` picks the label set (`4class`, `6class`, `all`); the options below filter utterances.

    Attributes:
        improvised_only: keep only improvised dialogs (``_impro`` in the dialog name).
        skip_invalid: skip labelled utterances with problems (no wav, no transcript line, unreadable wav, malformed
            summary line) and log their count, instead of raising one `ValueError` that lists them all.
    """

    improvised_only: bool = False
    skip_invalid: bool = False

    @property
    def label_names(self) -> tuple[str, ...]:
        return CONFIG_LABELS[self.name][0]

    @property
    def label_map(self) -> dict[str, str]:
        return CONFIG_LABELS[self.name][1]


@dataclass(frozen=True)
class _Summary:
    """One summary line of an EmoEvaluation file."""

    id: str
    session: int
    gender: str
    dialog: str
    code: str
    vad: tuple[float, float, float]
    start: float
    end: float
    path: Path
    line: int


def _session_paths(root: Path, session: int) -> dict[str, Path]:
    base = root / f"Session{session}"
    return {
        "labels": base / "dialog" / "EmoEvaluation",
        "transcripts": base / "dialog" / "transcriptions",
        "wavs": base / "sentences" / "wav",
    }


def _visible(directory: Path, suffix: str) -> list[Path]:
    """Files in `directory` (not below) with `suffix`, sorted; dotfiles such as macOS ``._*`` are not corpus files."""
    return sorted(p for p in directory.iterdir() if p.suffix == suffix and not p.name.startswith(".") and p.is_file())


def check_layout(data_dir: str | Path) -> list[int]:
    """Return the session numbers present under `data_dir`, or raise naming what is missing and where.

    Raises:
        FileNotFoundError: `data_dir` does not exist or is not a directory.
        ValueError: no ``Session1`` ... ``Session5`` directory, or a session lacks one of its three folders.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(
            f"IEMOCAP data_dir {root} does not exist or is not a directory; expected the "
            "IEMOCAP_full_release directory that contains Session1 ... Session5"
        )
    sessions = [s for s in SESSIONS if (root / f"Session{s}").is_dir()]
    if not sessions:
        hint = ""
        if (root / "IEMOCAP_full_release").is_dir():
            hint = f"; did you mean {root / 'IEMOCAP_full_release'}?"
        raise ValueError(
            f"{root} is not an IEMOCAP_full_release directory: expected Session1 ... Session5 in it" + hint
        )
    missing = [str(p) for s in sessions for p in _session_paths(root, s).values() if not p.is_dir()]
    if missing:
        raise ValueError(f"{root} does not have the IEMOCAP_full_release layout; missing directories: {missing}")
    return sessions


def _parse_labels(path: Path, session: int, problems: list[Problem]) -> list[_Summary]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        problems.append(Problem(path, None, f"cannot read label file: {error}"))
        return []
    summaries = []
    for number, line in enumerate(lines, start=1):
        if not line.startswith("["):  # header (%), evaluator lines (C-E2:, A-F1: ...) and blank separators
            continue
        match = _SUMMARY_LINE.match(line)
        id_match = _UTTERANCE_ID.match(match["id"]) if match else None
        if match is None or id_match is None:
            problems.append(
                Problem(
                    path,
                    number,
                    f"malformed summary line {line!r}; expected "
                    "'[start - end]<TAB>SesNN?_dialog_?NNN<TAB>code<TAB>[V, A, D]'",
                )
            )
            continue
        utterance_id, dialog = match["id"], match["id"].rsplit("_", 1)[0]
        start, end = float(match["start"]), float(match["end"])
        if int(id_match["session"]) != session or dialog != path.stem:
            message = f"utterance {utterance_id} does not belong in Session{session}, dialog {path.stem}"
        elif match["code"] not in RAW_CODES:
            message = f"unknown emotion code {match['code']!r} for {utterance_id}; expected one of {RAW_CODES}"
        elif not 0 <= start < end:
            message = f"times [{start} - {end}] of {utterance_id} are not an interval"
        else:
            vad = (float(match["v"]), float(match["a"]), float(match["d"]))
            summaries.append(
                _Summary(
                    utterance_id, session, id_match["gender"], dialog, match["code"], vad, start, end, path, number
                )
            )
            continue
        problems.append(Problem(path, number, message))
    return summaries


def _parse_transcript(path: Path) -> dict[str, list[tuple[int, float, float, str]]]:
    """Utterance id -> [(line, start, end, text)]; lines that are not ``id [start-end]: text`` are skipped."""
    lines: dict[str, list[tuple[int, float, float, str]]] = defaultdict(list)
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = _TRANSCRIPT_LINE.match(line)
        if match:  # whitespace runs (one transcript has a TAB) become single spaces
            text = " ".join(match["text"].split())
            lines[match["id"]].append((number, float(match["start"]), float(match["end"]), text))
    return lines


def _check_wav(path: Path) -> str | None:
    if not path.is_file():
        return f"no wav for this utterance; expected {path}"
    try:
        info = sf.info(str(path))
    except Exception as error:  # libsndfile raises its own error types for every kind of bad file
        return f"unreadable wav {path}: {error}"
    return None if info.frames > 0 else f"wav {path} has no samples"


def _example(summary: _Summary, label: str, text: str, wav: Path) -> dict:
    return {
        "id": summary.id,
        "audio": str(wav),
        "text": text,
        "label": label,
        "raw_label": summary.code,
        "valence": summary.vad[0],
        "arousal": summary.vad[1],
        "dominance": summary.vad[2],
        "speaker": f"Ses{summary.session:02d}_{summary.gender}",
        "gender": summary.gender,
        "session": summary.session,
        "dialog": summary.dialog,
        "improvised": "_impro" in summary.dialog,
        "start": summary.start,
        "end": summary.end,
    }


def _examples_of_dialog(
    summaries: list[_Summary], paths: dict[str, Path], label_map: dict[str, str], problems: list[Problem]
) -> list[dict]:
    dialog = summaries[0].dialog
    transcript_path, wav_dir = paths["transcripts"] / f"{dialog}.txt", paths["wavs"] / dialog
    for path, kind in ((transcript_path, "transcript file"), (wav_dir, "wav directory")):
        if not path.exists():
            problems.append(
                Problem(
                    path,
                    None,
                    f"{kind} missing; {len(summaries)} labelled utterances of {summaries[0].path} need it",
                    utterances=len(summaries),
                )
            )
            return []
    try:
        transcript = _parse_transcript(transcript_path)
    except (OSError, UnicodeDecodeError) as error:
        problems.append(Problem(transcript_path, None, f"cannot read transcript: {error}", len(summaries)))
        return []
    examples = []
    for summary in summaries:
        lines, wav = transcript.get(summary.id, []), wav_dir / f"{summary.id}.wav"
        if not lines:
            message = f"no transcript line for {summary.id} in {transcript_path}"
        elif len({(start, end, text) for _, start, end, text in lines}) > 1:
            message = f"{summary.id} has differing transcript lines {[n for n, *_ in lines]} in {transcript_path}"
        elif abs(lines[0][1] - summary.start) > _TIME_TOLERANCE or abs(lines[0][2] - summary.end) > _TIME_TOLERANCE:
            message = (
                f"times [{summary.start} - {summary.end}] of {summary.id} differ from "
                f"[{lines[0][1]}-{lines[0][2]}] at {transcript_path}:{lines[0][0]}"
            )
        else:
            message = _check_wav(wav)
        if message is None:
            examples.append(_example(summary, label_map[summary.code], lines[0][3], wav))
        else:
            problems.append(Problem(summary.path, summary.line, message))
    return examples


def scan_corpus(
    data_dir: str | Path, config_name: str = "4class", improvised_only: bool = False
) -> tuple[dict[int, list[dict]], list[Problem]]:
    """Read the corpus: session -> examples (feature dicts, audio as a path) kept by the config, and all problems.

    Every labelled utterance the config keeps is checked (summary line, transcript line with the same times, a
    readable non-empty wav); nothing stops at the first problem. Utterances with problems are left out of the
    examples. Layout errors raise (see `check_layout`).
    """
    if config_name not in CONFIG_LABELS:
        raise ValueError(f"unknown IEMOCAP config {config_name!r}; expected one of {list(CONFIG_LABELS)}")
    label_map = CONFIG_LABELS[config_name][1]
    root = Path(data_dir)
    examples: dict[int, list[dict]] = {}
    problems: list[Problem] = []
    seen: dict[str, _Summary] = {}
    for session in check_layout(root):
        paths = _session_paths(root, session)
        examples[session] = []
        for label_file in _visible(paths["labels"], ".txt"):
            summaries = []
            for summary in _parse_labels(label_file, session, problems):
                if summary.id in seen:
                    first = seen[summary.id]
                    problems.append(
                        Problem(
                            summary.path,
                            summary.line,
                            f"{summary.id} is labelled again (first at {first.path}:{first.line})",
                        )
                    )
                    continue
                seen[summary.id] = summary
                if summary.code in label_map and (not improvised_only or "_impro" in summary.dialog):
                    summaries.append(summary)
            if summaries:
                examples[session] += _examples_of_dialog(summaries, paths, label_map, problems)
    return examples, problems


def _corpus_fingerprint(root: Path, sessions: list[int]) -> str:
    """Hash of this code, the label and transcript files and the wav listing (names, sizes, mtimes).

    It keys the Arrow cache, so editing or regenerating a corpus in place rebuilds instead of reading stale data.
    """
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for session in sessions:
        paths = _session_paths(root, session)
        for folder in (paths["labels"], paths["transcripts"]):
            for path in _visible(folder, ".txt"):
                digest.update(path.name.encode() + b"\0" + path.read_bytes())
        for dialog_dir in sorted(p for p in paths["wavs"].iterdir() if p.is_dir()):
            with os.scandir(dialog_dir) as entries:
                listing = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in entries)
            digest.update(repr((dialog_dir.name, listing)).encode())
    return digest.hexdigest()[:16]


class Iemocap(datasets.GeneratorBasedBuilder):
    """IEMOCAP from a local ``IEMOCAP_full_release``: one split per session directory present (``session1`` ...).

    A session whose utterances are all filtered out (e.g. by `improvised_only`) has no split. Construct with
    ``Iemocap(config_name=..., data_dir=..., cache_dir=...)``, then ``download_and_prepare()`` and ``as_dataset()``;
    `load_iemocap` does all three.
    """

    BUILDER_CONFIG_CLASS = IemocapConfig
    BUILDER_CONFIGS = [
        IemocapConfig(name="4class", description="neutral, happy (hap + exc), angry, sad"),
        IemocapConfig(name="6class", description="neu, hap, ang, sad, exc, fru"),
        IemocapConfig(name="all", description="every labelled utterance with its raw code, xxx included"),
    ]
    DEFAULT_CONFIG_NAME = "4class"
    VERSION = datasets.Version("1.0.0")

    def __init__(self, *args, data_dir: str | None = None, hash: str | None = None, **kwargs):
        if data_dir is not None:
            data_dir = str(Path(data_dir).expanduser().resolve())
            if hash is None:
                hash = _corpus_fingerprint(Path(data_dir), check_layout(data_dir))
        super().__init__(*args, data_dir=data_dir, hash=hash, **kwargs)

    def _info(self) -> datasets.DatasetInfo:
        number = datasets.Value("float64")  # float64 keeps the 4-decimal values of the files exact
        features = datasets.Features(
            {
                "id": datasets.Value("string"),
                "audio": datasets.Audio(sampling_rate=SAMPLE_RATE),
                "text": datasets.Value("string"),
                "label": datasets.ClassLabel(names=list(self.config.label_names)),
                "raw_label": datasets.Value("string"),
                "valence": number,
                "arousal": number,
                "dominance": number,
                "speaker": datasets.Value("string"),
                "gender": datasets.Value("string"),
                "session": datasets.Value("int32"),
                "dialog": datasets.Value("string"),
                "improvised": datasets.Value("bool"),
                "start": number,
                "end": number,
            }
        )
        return datasets.DatasetInfo(
            description="IEMOCAP: dyadic sessions of improvised and scripted speech with categorical and "
            "dimensional emotion labels (Busso et al., 2008).",
            features=features,
            homepage="https://sail.usc.edu/iemocap/",
            license="IEMOCAP release agreement (USC SAIL); not redistributable",
            citation="Busso, C. et al. IEMOCAP: Interactive emotional dyadic motion capture database. "
            "Language Resources and Evaluation 42(4), 335-359, 2008.",
        )

    def _split_generators(self, dl_manager) -> list[datasets.SplitGenerator]:
        if self.config.data_dir is None:
            raise ValueError("IEMOCAP needs data_dir: the local IEMOCAP_full_release directory")
        examples, problems = scan_corpus(self.config.data_dir, self.config.name, self.config.improvised_only)
        if problems:
            lost = sum(p.utterances for p in problems)
            listing = "\n".join(f"  {p}" for p in problems)
            if not self.config.skip_invalid:
                raise ValueError(
                    f"{len(problems)} problem(s) in IEMOCAP corpus {self.config.data_dir} affecting "
                    f"{lost} labelled utterance(s); fix them or pass skip_invalid=True:\n{listing}"
                )
            logger.warning(
                "skipped %d labelled utterance(s) with problems in %s:\n%s", lost, self.config.data_dir, listing
            )
        empty = [session for session, kept in examples.items() if not kept]
        if len(empty) == len(examples):
            raise ValueError(
                f"no labelled utterances in {self.config.data_dir} are kept by config {self.config.name!r} "
                f"(improvised_only={self.config.improvised_only})"
            )
        if empty:  # `datasets` cannot read back an empty split, so such a session has no split at all
            logger.info("no utterances kept in sessions %s: they have no split", empty)
        return [
            datasets.SplitGenerator(name=f"session{session}", gen_kwargs={"examples": kept})
            for session, kept in sorted(examples.items())
            if kept
        ]

    def _generate_examples(self, examples: list[dict]):
        for example in examples:
            yield example["id"], example


def load_iemocap(
    data_dir: str | Path,
    config_name: str = "4class",
    improvised_only: bool = False,
    skip_invalid: bool = False,
    cache_dir: str | Path | None = None,
) -> datasets.DatasetDict:
    """Build (or reuse from `cache_dir`) IEMOCAP and return its splits ``session1`` ... ``session5``.

    Args:
        data_dir: the ``IEMOCAP_full_release`` directory (or a synthetic corpus in its layout).
        config_name: ``4class`` (neutral, happy = hap + exc, angry, sad), ``6class`` or ``all``.
        improvised_only: keep improvised dialogs only.
        skip_invalid: skip and log labelled utterances with problems instead of raising.
        cache_dir: where the Arrow files go (default: the `datasets` cache). The cache is keyed by the corpus
            content, so a changed corpus is rebuilt.

    Returns:
        A `DatasetDict` with one split per session directory present that keeps at least one utterance (on the
        full release: ``session1`` ... ``session5``); audio is decoded at 16 kHz on access.

    Raises:
        FileNotFoundError: `data_dir` is missing.
        ValueError: not the IEMOCAP layout, an unknown config, no utterance kept, or problems in the corpus (all
            listed, each with its file and line) while `skip_invalid` is false.
    """
    builder = Iemocap(
        config_name=config_name,
        data_dir=str(data_dir),
        cache_dir=None if cache_dir is None else str(cache_dir),
        improvised_only=improvised_only,
        skip_invalid=skip_invalid,
    )
    builder.download_and_prepare()
    return builder.as_dataset()
