"""What every builder of a released corpus shares: finding its audio files (any format ffmpeg reads, nested or flat),
checking them, comparing what it found with the release's documented contents, a `datasets` builder around a
corpus scan, and the Parquet export with its command line.

A corpus is a declaration: its module supplies a `Release` (its name, a `scan(root)` that returns `Scan`: the
examples of each split, the problems, the check against the documented counts; the features of its examples; how
its files are named). Everything else is written once, here: `Release.recognise` (is this folder the corpus?),
`Release.builder_class` (a cached `datasets` builder), `Release.load` (the `DatasetDict`, its check stored and
shown on every load), and `corpus_command`, the ``python -m dataset_scripts <corpus>`` command.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import datasets

__all__ = [
    "AUDIO_SUFFIXES",
    "Problem",
    "Release",
    "ReleaseBuilder",
    "ReleaseCheck",
    "Scan",
    "audio_problem",
    "export_parquet",
    "find_files",
    "corpus_command",
    "load_release",
    "print_check",
    "require_directory",
    "utterance_features",
]

logger = logging.getLogger(__name__)

CHECK_FILE = "release_check.json"  # beside a built dataset's Arrow files

# The containers a corpus may come in that ffmpeg (torchcodec) decodes; matched case-insensitively.
AUDIO_SUFFIXES = (
    ".wav", ".flac", ".opus", ".ogg", ".oga", ".mp3", ".m4a", ".aac", ".mp4", ".mkv", ".mka", ".webm", ".aif",
    ".aiff", ".wma", ".avi", ".mov",
)  # fmt: skip


@dataclass(frozen=True)
class Problem:
    """Something wrong in the corpus: where (file, and line when known), what, and how many utterances it costs."""

    path: Path
    line: int | None
    message: str
    utterances: int = 1

    def __str__(self) -> str:
        return f"{self.path}{'' if self.line is None else f':{self.line}'}: {self.message}"


@dataclass
class ReleaseCheck:
    """What a scan found against what the release documents: utterance counts, the names missing or extra, and the
    problems of the files found (unreadable, empty, present twice, ...: `Problem`s as text, which `--skip_invalid`
    leaves out). Stored with the built dataset (`load_release`), so every load can show it."""

    corpus: str
    documented: int
    found: int
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every documented file is here, and nothing else named like one."""
        return self.found == self.documented and not self.missing and not self.extra

    @property
    def clean(self) -> bool:
        """Complete, and every file readable: the copy is the release."""
        return self.complete and not self.problems

    def problem_kinds(self) -> dict[str, list[str]]:
        """The problems by kind (`problem_kind`), in the order first seen."""
        kinds: dict[str, list[str]] = {}
        for problem in self.problems:
            kinds.setdefault(problem_kind(problem), []).append(problem)
        return kinds

    def summary_lines(self) -> list[str]:
        """One line per kind of difference from the release (missing, extra, each kind of problem), with the count
        and the first few names; empty for a clean copy."""
        lines = []
        for kind, names in (("missing", self.missing), ("extra (not part of the release)", self.extra)):
            if names:
                lines.append(f"{len(names)} {kind}: {_listed(names)}")
        lines += [f"{len(found)} {kind}: {_listed(found, 3)}" for kind, found in self.problem_kinds().items()]
        return lines

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__} | {"complete": self.complete}

    @classmethod
    def from_dict(cls, record: dict) -> ReleaseCheck:
        return cls(**{name: record[name] for name in cls.__dataclass_fields__ if name in record})

    def __str__(self) -> str:
        text = f"{self.corpus}: {self.found} utterances found, {self.documented} documented"
        return text + "".join(f"; {line}" for line in self.summary_lines()) + "".join(f"; {n}" for n in self.notes)


def _listed(names: list[str], limit: int = 20) -> str:
    return ", ".join(names[:limit]) + (f", ... and {len(names) - limit} more" if len(names) > limit else "")


# What a problem's text says it is: the first pattern found in it names its kind.
_PROBLEM_KINDS = (
    ("empty file", "empty"),
    ("unreadable audio", "unreadable"),
    ("has no samples", "without samples"),
    ("here twice", "present twice"),
    ("old name of", "present twice"),
    ("no audio file", "without audio"),
)


def problem_kind(problem: str) -> str:
    """`unreadable`, `empty`, `present twice`, `without samples`, `without audio`, or `other` (a metadata row that
    cannot be read, a speaker the release does not have, ...)."""
    return next((kind for pattern, kind in _PROBLEM_KINDS if pattern in problem), "other")


@dataclass
class Scan:
    """A corpus read from disk: split -> examples (feature dicts with `audio` as a path), the problems found, and
    the check against the documented counts."""

    splits: dict[str, list[dict]]
    problems: list[Problem]
    check: ReleaseCheck


@dataclass(frozen=True)
class Release:
    """A corpus as its publisher distributes it: the declaration each builder module makes (`RELEASE`); the
    `datasets` builder (`builder_class`), the loader (`load`), the check and the command are written once, here."""

    key: str  # e.g. "ravdess": the corpus's name in commands, and its builder's (and cache's) name
    name: str  # e.g. "RAVDESS"
    scan: Callable[[Path], Scan]
    features: datasets.Features
    description: str
    homepage: str
    license: str
    citation: str
    expected: str  # what `data_dir` should be, for the error when it is not
    file_names: re.Pattern | None = None  # the stems of its files (fullmatch), by which a folder is recognised
    suffixes: tuple[str, ...] = AUDIO_SUFFIXES  # of the files `file_names` applies to

    def recognise(self, data_dir: str | Path) -> int:
        """How many files under `data_dir` are named like this release's, from the listing alone (nothing opened):
        the cheap check that a folder is this corpus, before anything is built.

        Raises:
            FileNotFoundError: `data_dir` is missing.
            ValueError: no file named like the release's, naming what the folder holds instead.
        """
        root = require_directory(Path(data_dir), self.name, self.expected)
        files = find_files(root, self.suffixes)
        named = sum(1 for path in files if self.file_names is None or self.file_names.fullmatch(path.stem))
        if not named:
            held = [str(path.relative_to(root)) for path in files[:5]] or sorted(p.name for p in root.iterdir())[:5]
            raise ValueError(f"{root} does not hold {self.name}: expected {self.expected}; it holds {held}")
        return named

    @functools.cached_property
    def builder_class(self) -> type[ReleaseBuilder]:
        """The `datasets` builder of this release (named after `key`: `ravdess` -> `Ravdess`)."""
        name = "".join(part.title() for part in self.key.split("_"))
        doc = f"{self.name} from a local copy of the release ({self.description})"
        return type(name, (ReleaseBuilder,), {"RELEASE": self, "__doc__": doc, "__module__": self.scan.__module__})

    def load(
        self, data_dir: str | Path, skip_invalid: bool = False, cache_dir: str | Path | None = None
    ) -> datasets.DatasetDict:
        """Builds (or reuses from `cache_dir`, keyed by the copy's file listing) the corpus and returns its splits
        (the corpus module says which), `label` the corpus's own names (`dataset_scripts.labels` maps them to the
        shared classes), audio decoded at the file's own rate; the check against the release is their
        `release_check` (see `load_release`).

        Raises:
            FileNotFoundError: `data_dir` is missing.
            ValueError: not this corpus, or problems (unreadable audio, ...: listed) while `skip_invalid` is false.
        """
        return load_release(self.builder_class, data_dir, skip_invalid, cache_dir)


def utterance_features(label_names: Iterable[str], **columns: str) -> datasets.Features:
    """The features every builder yields (`id`, `audio` at the file's own rate, `text`, `label` as a ClassLabel of
    the corpus's own names, `speaker`, `gender`), then the corpus's own `columns` (name -> value type, e.g.
    ``fold="int32"``)."""
    common = {
        "id": datasets.Value("string"),
        "audio": datasets.Audio(),
        "text": datasets.Value("string"),
        "label": datasets.ClassLabel(names=list(label_names)),
        "speaker": datasets.Value("string"),
        "gender": datasets.Value("string"),
    }
    return datasets.Features({**common, **{name: datasets.Value(dtype) for name, dtype in columns.items()}})


def require_directory(root: Path, release: str, expected: str) -> Path:
    """`root` as a directory, or FileNotFoundError naming the corpus and what was expected."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{release} data_dir {root} does not exist or is not a directory; expected {expected}")
    return root


def find_files(root: Path, suffixes: Iterable[str] = AUDIO_SUFFIXES) -> list[Path]:
    """Every file under `root` (at any depth) whose suffix is one of `suffixes` (any case), sorted; dotfiles and
    dot-directories (macOS ``._*``, ``.DS_Store``, ``__MACOSX``) are not corpus files."""
    wanted = {suffix.lower() for suffix in suffixes}
    found = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = [d for d in subdirectories if not d.startswith(".") and d != "__MACOSX"]
        found += [Path(directory) / f for f in files if not f.startswith(".") and Path(f).suffix.lower() in wanted]
    return sorted(found)


def match_files(
    files: list[Path], pattern: re.Pattern, problems: list[Problem]
) -> tuple[dict[str, tuple[Path, re.Match]], list[Path]]:
    """Audio files whose stem matches `pattern`: stem -> (path, match), and the files that do not match. A stem
    found twice (a copy in another folder or format) is a problem naming both; the first path is kept."""
    matched: dict[str, tuple[Path, re.Match]] = {}
    unmatched = []
    for path in files:
        match = pattern.fullmatch(path.stem)
        if match is None:
            unmatched.append(path)
        elif path.stem in matched:
            problems.append(Problem(path, None, f"{path.stem} is here twice: also {matched[path.stem][0]}"))
        else:
            matched[path.stem] = (path, match)
    return matched, unmatched


def audio_problem(path: Path) -> str | None:
    """Why `path` cannot serve as an utterance's audio (missing, unreadable by ffmpeg, no audio stream, no samples),
    or None. Reads the header, and decodes 50 ms where the header gives no duration."""
    from torchcodec.decoders import AudioDecoder

    if not path.is_file():
        return f"no audio file; expected {path}"
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    try:
        metadata = AudioDecoder(str(path)).metadata
    except Exception as error:  # noqa: BLE001 - ffmpeg raises its own error types for every kind of bad file
        return f"unreadable audio ({path.stat().st_size} bytes): {decoder_reason(error, path)}"
    duration = metadata.duration_seconds_from_header
    if duration is None:  # no duration in the header (a header-only wav, some streams): decode the first 50 ms
        try:
            duration = AudioDecoder(str(path)).get_samples_played_in_range(0.0, 0.05).duration_seconds
        except Exception:  # noqa: BLE001 - torchcodec raises RuntimeError when nothing decodes
            duration = 0.0
    return "the audio has no samples" if duration <= 0 else None


def decoder_reason(error: Exception, path: Path | None = None) -> str:
    """What ffmpeg said about a file, without torchcodec's C++ class and source location (``SingleStreamDecoder,
    /…/SingleStreamDecoder.cpp:41,``), its stack, or the file's path: e.g. "Could not open input file: Invalid data
    found when processing input"."""
    text = str(error).split("Exception raised from", 1)[0]
    if path is not None:
        text = text.replace(f"{path} ", "").replace(str(path), "")
    parts = [part.strip() for part in text.replace("\n", " ").split(", ")]
    kept = [part for part in parts if part and not re.fullmatch(r"\S+\.(?:cpp|cc|h|hpp):\d+|[A-Z]\w*", part)]
    return ", ".join(kept) or type(error).__name__


def listing_fingerprint(root: Path, code: Iterable[Path], metadata_suffixes: Iterable[str] = ()) -> str:
    """Hash of the builder's code, the listing of every file under `root` (names, sizes, mtimes) and the content of
    its metadata files (`metadata_suffixes`, e.g. ``.csv``). It keys the Arrow cache, so a changed or regenerated
    corpus is rebuilt instead of read stale."""
    digest = hashlib.sha256()
    for path in code:
        digest.update(Path(path).read_bytes())
    metadata = {suffix.lower() for suffix in metadata_suffixes}
    for directory, subdirectories, files in sorted(os.walk(root)):
        subdirectories.sort()
        for name in sorted(files):
            path = Path(directory) / name
            stat = path.stat()
            digest.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
            if path.suffix.lower() in metadata:
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@dataclass
class ReleaseConfig(datasets.BuilderConfig):
    """Attributes:
    skip_invalid: leave out utterances with problems (unreadable audio, a metadata row that names no file, ...)
        and log them, instead of raising one `ValueError` that lists them all.
    """

    skip_invalid: bool = False


class ReleaseBuilder(datasets.GeneratorBasedBuilder):
    """A `datasets` builder around a `Release` (set `RELEASE` in a subclass). Construct with ``data_dir=...``, then
    ``download_and_prepare()`` and ``as_dataset()``; `load_release` does all three."""

    RELEASE: Release
    BUILDER_CONFIG_CLASS = ReleaseConfig
    VERSION = datasets.Version("1.0.0")
    METADATA_SUFFIXES: tuple[str, ...] = (".csv", ".txt", ".tsv", ".json")

    def __init__(self, *args, data_dir: str | None = None, hash: str | None = None, **kwargs):
        if data_dir is not None:
            root = require_directory(Path(data_dir), self.RELEASE.name, self.RELEASE.expected).resolve()
            data_dir = str(root)
            if hash is None:
                code = [Path(__file__), Path(self.RELEASE.scan.__code__.co_filename)]
                hash = listing_fingerprint(root, code, self.METADATA_SUFFIXES)
        super().__init__(*args, data_dir=data_dir, hash=hash, **kwargs)

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=self.RELEASE.description,
            features=self.RELEASE.features,
            homepage=self.RELEASE.homepage,
            license=self.RELEASE.license,
            citation=self.RELEASE.citation,
        )

    def _split_generators(self, dl_manager) -> list[datasets.SplitGenerator]:
        if self.config.data_dir is None:
            raise ValueError(f"{self.RELEASE.name} needs data_dir: {self.RELEASE.expected}")
        scan = self.RELEASE.scan(Path(self.config.data_dir))
        report_scan(scan, self.RELEASE.name, self.config.data_dir, self.config.skip_invalid)
        self.release_check = checked(scan)
        # `datasets` cannot read back an empty split, so a split that kept nothing has none
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"examples": examples})
            for split, examples in scan.splits.items()
            if examples
        ]

    def _generate_examples(self, examples: list[dict]):
        for example in examples:
            yield example["id"], example


def checked(scan: Scan) -> ReleaseCheck:
    """The scan's check with its problems in it."""
    scan.check.problems = [str(problem) for problem in scan.problems]
    return scan.check


def report_scan(scan: Scan, release: str, data_dir, skip_invalid: bool) -> None:
    """Raises for problems unless `skip_invalid` (then logs them), and for a copy with no utterance."""
    if scan.problems:
        lost = sum(problem.utterances for problem in scan.problems)
        listing = "\n".join(f"  {problem}" for problem in scan.problems)
        if not skip_invalid:
            raise ValueError(
                f"{len(scan.problems)} problem(s) in {release} corpus {data_dir} affecting {lost} utterance(s); fix "
                f"them or pass skip_invalid=True (--skip_invalid):\n{listing}"
            )
        logger.warning("skipped %d utterance(s) with problems in %s:\n%s", lost, data_dir, listing)
    if not any(scan.splits.values()):
        raise ValueError(f"no utterances of {release} in {data_dir}: {scan.check}")


def load_release(
    builder_class: type[ReleaseBuilder],
    data_dir: str | Path,
    skip_invalid: bool = False,
    cache_dir: str | Path | None = None,
    **config_kwargs,
) -> datasets.DatasetDict:
    """Builds (or reuses from `cache_dir`, keyed by the corpus's file listing) the corpus and returns its splits,
    with the release's check as their `release_check` attribute (a `ReleaseCheck`). The check is stored beside the
    Arrow files (`release_check.json`) and logged on every load, a cached one too: a warning for a copy that
    differs from the release."""
    builder = builder_class(
        data_dir=str(data_dir),
        cache_dir=None if cache_dir is None else str(cache_dir),
        skip_invalid=skip_invalid,
        **config_kwargs,
    )
    builder.download_and_prepare()
    stored = Path(builder.cache_dir) / CHECK_FILE
    check = getattr(builder, "release_check", None)  # set when this call built the dataset
    if check is None and stored.is_file():
        check = ReleaseCheck.from_dict(json.loads(stored.read_text()))
    if check is None:  # a dataset cached before checks were stored: scan again (headers only, no decoding)
        check = checked(builder.RELEASE.scan(Path(builder.config.data_dir)))
    stored.write_text(json.dumps(check.to_dict(), indent=2))
    (logger.info if check.clean else logger.warning)("%s (%s)", check, builder.config.data_dir)
    dataset = builder.as_dataset()
    dataset.release_check = check
    return dataset


def export_parquet(dataset: datasets.DatasetDict, out_dir: str | Path, batch_size: int = 64) -> dict[str, Path]:
    """Writes each split to ``out_dir/<split>.parquet`` with the audio bytes embedded and the `datasets` features
    (Audio, ClassLabel) in the schema, so the files work without the corpus:
    ``datasets.load_dataset("parquet", data_dir=out_dir)``. Audio is embedded batch by batch: memory holds
    `batch_size` files at a time, not a split. Returns split -> path written."""
    import pyarrow.parquet as pq
    from datasets.table import embed_table_storage

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, ds in dataset.items():
        path = out / f"{split}.parquet"
        with pq.ParquetWriter(path, ds.features.arrow_schema) as writer:
            for batch in ds.with_format("arrow").iter(batch_size=batch_size):
                writer.write_table(embed_table_storage(batch))
        logger.info("wrote %d utterances to %s", len(ds), path)
        written[split] = path
    return written


def corpus_command(argv: list[str] | None = None) -> dict[str, Path] | None:
    """``python -m dataset_scripts <corpus> ...`` (see `dataset_scripts.__main__`): a copy checked against its release,
    or the corpus written out as Parquet. Returns the files written (None for ``--check``).

    Raises:
        SystemExit: a usage error (2), a copy that is not the release (1, with ``--check``), or a refusal of the
            builder (1: a wrong folder, unreadable files), each as one message.
    """
    from . import CORPORA, release_of

    parser = argparse.ArgumentParser(prog="python -m dataset_scripts", description=corpus_command.__doc__)
    parser.add_argument("corpus", choices=CORPORA, help="which corpus the folder holds")
    parser.add_argument("--data_dir", required=True, type=Path, help="the corpus as downloaded")
    parser.add_argument("--out", type=Path, help="directory for <split>.parquet")
    parser.add_argument("--check", action="store_true", help="compare with the documented release, write nothing")
    parser.add_argument("--skip_invalid", action="store_true", help="skip (and log) utterances with problems")
    parser.add_argument("--cache_dir", type=Path, default=None, help="datasets cache (default: HF_DATASETS_CACHE)")
    parser.add_argument("--config", default="4class", help="iemocap: the label set (4class, 6class or all)")
    parser.add_argument("--improvised_only", action="store_true", help="iemocap: improvised dialogs only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.check == (args.out is not None):
        parser.error("give --out (write Parquet) or --check (compare with the release), one of them")
    try:
        if args.corpus == "iemocap":  # its own builder: label sets, and a layout check of its own on every build
            if args.check:
                parser.error("iemocap has no --check: its builder checks the layout and every file when it builds")
            from .iemocap import load_iemocap

            loaded = load_iemocap(args.data_dir, args.config, args.improvised_only, args.skip_invalid, args.cache_dir)
            return export_parquet(loaded, args.out)
        release = release_of(args.corpus)
        if args.check:
            return print_check(release, args.data_dir)
        return export_parquet(release.load(args.data_dir, args.skip_invalid, args.cache_dir), args.out)
    except (ValueError, FileNotFoundError) as error:  # a wrong directory, unreadable files: one message, no trace
        raise SystemExit(f"error: {error}") from None


def print_check(release: Release, data_dir: Path) -> None:
    """Prints the copy against the release: the whole comparison in one line, then one line per kind of difference,
    then each problem.

    Raises:
        SystemExit: (1) the copy is not the release.
    """
    check = checked(release.scan(data_dir))
    print(check)
    for line in check.summary_lines():
        print(f"  {line}")
    for problem in check.problems:
        print(f"    {problem}")
    if not check.clean:
        raise SystemExit(f"{check.corpus} at {data_dir} differs from the release.")
    print("The copy matches the release.")
