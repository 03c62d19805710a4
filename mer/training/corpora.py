"""Public corpora by name (``--corpus ravdess=/data/RAVDESS``): each read by its builder, its labels mapped to the
shared classes, and several pooled under one of two protocols.

- ``within-corpus``: each corpus keeps its standard folds (or official splits). Round *i* tests the *i*-th fold of
  every corpus that has one; the model trains on everything else, so a corpus with fewer folds than the run has
  rounds trains with all of its data in the later rounds, and each utterance of a corpus is tested exactly once, by
  a model that never saw its fold. A corpus with official splits (MELD, MSP-Podcast) is tested in round 1 on its
  test split(s); its train split always trains, its development split always validates, and its test split never
  trains. Scores are given per corpus (averaged over its folds and pooled) and over every test utterance.
- ``leave-one-corpus-out``: one round per corpus, testing on all of it, training on all of the others.

Speakers are per corpus (``ravdess/Actor_01``), so names that two corpora share stay apart. Validation holds out
whole speakers of every training corpus (its share of each); a corpus whose official splits share speakers (MELD)
is exempt from the speaker checks, and the protocol line says so.
"""

from __future__ import annotations

import importlib
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import datasets

from dataset_scripts.dimensions import CORPUS_SCALES
from dataset_scripts.labels import CORPUS_LABELS, parse_classes
from mer.training.dimensions import attach_dimensions
from mer.training.folds import Corpus, natural_key, select_folds

__all__ = ["CORPORA", "PROTOCOLS", "CorpusSpec", "load_corpora", "parse_corpus_arguments"]

logger = logging.getLogger(__name__)

PROTOCOLS = ("within-corpus", "leave-one-corpus-out")
# The columns every corpus is brought to before pooling.
COLUMNS = ("id", "audio", "text", "label", "raw_label", "speaker", "corpus")


@dataclass(frozen=True)
class CorpusSpec:
    """How train.py reads a corpus: its builder's loader (``module:function``), and which of its splits are folds,
    or its official train / validation / test splits."""

    title: str
    loader: str
    official_train: tuple[str, ...] = ()  # empty: every split is a fold of a leave-one-fold-out protocol
    official_validation: tuple[str, ...] = ()
    official_test: tuple[str, ...] = ()
    shares_speakers: bool = False  # its official splits share speakers: exempt from the speaker checks
    unknown_speaker: str | None = None  # the speaker id of utterances whose speaker is not known: exempt too
    loader_kwargs: tuple[tuple[str, object], ...] = ()

    @property
    def official(self) -> bool:
        return bool(self.official_test)

    def load(self, data_dir: str, skip_invalid: bool) -> datasets.DatasetDict:
        return self._loader()(data_dir, skip_invalid=skip_invalid, **dict(self.loader_kwargs))

    def recognise(self, data_dir: str) -> None:
        """Refuses, from the file listing alone, a folder that is not this corpus (`Release.recognise`), saying
        which corpus it looks like when it looks like one. IEMOCAP's builder checks its layout itself, first."""
        release = self._release()
        if release is None:
            return
        try:
            release.recognise(data_dir)
        except ValueError as error:
            others = [spec for spec in CORPORA.values() if spec is not self and spec._release() is not None]
            looks_like = [spec.title for spec in others if _named_like(spec._release(), data_dir)]
            hint = f" It looks like {' or '.join(looks_like)}." if looks_like else ""
            raise ValueError(f"{error}.{hint}") from None

    def _loader(self):
        module, function = self.loader.split(":")
        return getattr(importlib.import_module(module), function)

    def _release(self):
        """The corpus's `dataset_scripts.release.Release`, or None (IEMOCAP's builder is its own)."""
        return getattr(importlib.import_module(self.loader.split(":")[0]), "RELEASE", None)


def _named_like(release, data_dir: str) -> bool:
    try:
        return release.recognise(data_dir) > 0
    except ValueError:
        return False


CORPORA: dict[str, CorpusSpec] = {
    "iemocap": CorpusSpec("IEMOCAP", "dataset_scripts.iemocap:load_iemocap", loader_kwargs=(("config_name", "all"),)),
    "ravdess": CorpusSpec("RAVDESS", "dataset_scripts.ravdess:load_ravdess"),
    "cremad": CorpusSpec("CREMA-D", "dataset_scripts.cremad:load_cremad"),
    "tess": CorpusSpec("TESS", "dataset_scripts.tess:load_tess"),
    "emodb": CorpusSpec("EmoDB", "dataset_scripts.emodb:load_emodb"),
    "meld": CorpusSpec(
        "MELD", "dataset_scripts.meld:load_meld", ("train",), ("validation",), ("test",), shares_speakers=True
    ),
    "msp_podcast": CorpusSpec(
        "MSP-Podcast",
        "dataset_scripts.msp_podcast:load_msp_podcast",
        ("train",),
        ("validation",),
        ("test1", "test2"),
        unknown_speaker="Unknown",
    ),
}


def parse_corpus_arguments(values: list[str]) -> dict[str, str]:
    """``["ravdess=/data/RAVDESS", "emodb=/data/emodb"]`` -> name -> directory, in the order given.

    Raises:
        ValueError: not ``name=path``, an unknown name (listing the known ones), a corpus given twice, or a
            directory that does not exist.
    """
    corpora: dict[str, str] = {}
    for value in values:
        name, separator, path = value.partition("=")
        name = name.strip().lower().replace("-", "_")
        if not separator or not path:
            raise ValueError(f"--corpus {value!r}: expected name=directory, e.g. ravdess=/data/RAVDESS")
        if name not in CORPORA:
            raise ValueError(f"--corpus {value!r}: unknown corpus {name!r}; the corpora are {sorted(CORPORA)}")
        if name in corpora:
            raise ValueError(f"--corpus {name} is given twice ({corpora[name]} and {path})")
        if not Path(path).expanduser().is_dir():
            raise ValueError(f"--corpus {name}={path}: no such directory; expected the {CORPORA[name].title} release")
        corpora[name] = path
    return corpora


@dataclass
class CorpusPart:
    """One corpus brought to the shared columns and classes: its folds (or official splits) and what was dropped."""

    name: str
    spec: CorpusSpec
    splits: dict[str, datasets.Dataset]
    dropped: dict[str, int]  # the corpus's own label -> utterances dropped (no shared class, or not chosen)
    check: object = None  # the copy against the release (`dataset_scripts.release.ReleaseCheck`); None for IEMOCAP

    def class_counts(self, classes: list[str]) -> Counter:
        """Utterances per class of `classes` (by name) over every split."""
        return Counter(classes[label] for split in self.splits.values() for label in split["label"])

    @property
    def fold_names(self) -> list[str]:
        """The corpus's folds in their natural order (fold2 before fold10); for official splits, the tested ones."""
        names = self.spec.official_test if self.spec.official else self.splits
        return sorted((name for name in names if name in self.splits), key=natural_key)

    @property
    def size(self) -> int:
        return sum(len(split) for split in self.splits.values())

    def as_corpus(self, classes: list[str]):
        """This corpus alone on its standard protocol, as a `mer.training.folds.Corpus` (e.g. for its fold export)."""
        spec = self.spec

        def joined(names):
            chosen = [self.splits[name] for name in names if name in self.splits]
            return _concatenate(chosen) if len(chosen) > 1 else (chosen[0] if chosen else None)

        return Corpus(
            folds={} if spec.official else dict(self.splits),
            columns=("audio", "text", "label"),
            speaker_column="speaker",
            label_names=classes,
            name=spec.title,
            tests={name: self.splits[name] for name in self.fold_names} if spec.official else {},
            fixed_train=joined(spec.official_train),
            fixed_validation=joined(spec.official_validation),
            corpus_column="corpus",
        )


def read_part(
    name: str,
    data_dir: str,
    classes: list[str],
    skip_invalid: bool,
    allow_incomplete: bool = False,
    dimensions: tuple[str, ...] = (),
) -> CorpusPart:
    """Reads corpus `name` with its builder and keeps the utterances whose shared class is in `classes`, with the
    shared columns (`COLUMNS`), the label a `ClassLabel` of `classes`, and the ratings of `dimensions` mapped onto
    [0, 1] (`dataset_scripts.dimensions.CORPUS_SCALES`).

    Raises:
        ValueError: the copy lacks documented files of the release (with the counts), unless `allow_incomplete`; the
            corpus has no ratings of `dimensions`, or ratings beyond its scale.
    """
    spec = CORPORA[name]
    loaded = spec.load(data_dir, skip_invalid)
    check = getattr(loaded, "release_check", None)
    if check is not None and check.missing and not allow_incomplete:
        raise ValueError(
            f"--corpus {name}={data_dir} is not the whole release: {check.found} of the {check.documented} "
            f"documented files are here ({len(check.missing)} missing, e.g. {', '.join(check.missing[:3])}). Point "
            "--corpus at the complete copy, or pass --allow_incomplete to train on this one (its scores are then "
            "not those of the corpus)."
        )
    if dimensions:
        loaded = attach_dimensions(dict(loaded), list(dimensions), CORPUS_SCALES.get(name), spec.title)
    mapping = CORPUS_LABELS[name]
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "audio": datasets.Audio(),
            "text": datasets.Value("string"),
            "label": datasets.ClassLabel(names=classes),
            "raw_label": datasets.Value("string"),
            "speaker": datasets.Value("string"),
            "corpus": datasets.Value("string"),
            **{dimension: datasets.Value("float64") for dimension in dimensions},
        }
    )
    dropped: Counter = Counter()
    splits = {}
    for split, dataset in loaded.items():
        own = dataset.features["label"].int2str(dataset["label"])
        keep = [row for row, label in enumerate(own) if mapping.get(label) in classes]
        dropped.update(label for label in own if mapping.get(label) not in classes)
        if not keep:
            continue
        kept = dataset.select(keep).cast_column("audio", datasets.Audio())
        kept_labels = [own[row] for row in keep]
        columns = {
            "id": [f"{name}/{value}" for value in kept["id"]],
            "text": [text or "" for text in kept["text"]],
            "label": [classes.index(mapping[label]) for label in kept_labels],
            "raw_label": kept_labels,
            "speaker": [f"{name}/{speaker}" for speaker in kept["speaker"]],
            "corpus": [name] * len(keep),
        }
        table = kept.select_columns(["audio", *dimensions])
        for column in ("id", "text", "label", "raw_label", "speaker", "corpus"):
            table = table.add_column(column, columns[column])
        splits[split] = table.select_columns([*COLUMNS, *dimensions]).cast(features)
    if not splits:
        raise ValueError(
            f"--corpus {name}: none of its utterances is of the classes {classes} (its labels: {sorted(mapping)})"
        )
    if dropped:
        logger.info(
            "%s: %d utterance(s) dropped, their labels not among %s: %s",
            spec.title, sum(dropped.values()), classes, dict(sorted(dropped.items())),
        )  # fmt: skip
    return CorpusPart(name, spec, splits, dict(sorted(dropped.items())), check)


def load_corpora(args):
    """The corpora of ``--corpus`` read, mapped to ``--classes`` and arranged in rounds by ``--protocol``, as one
    `mer.training.folds.Corpus` whose `parts` are the corpora themselves (for per-corpus scores and fold export)."""
    corpora = parse_corpus_arguments(args.corpus)
    unrated = [CORPORA[name].title for name in corpora if args.dimension_list and name not in CORPUS_SCALES]
    if unrated:  # before anything is read
        rated = ", ".join(CORPORA[name].title for name in CORPUS_SCALES)
        raise ValueError(
            f"--dimensions {','.join(args.dimension_list)}: {' and '.join(unrated)} has no dimensional ratings "
            f"(classes only); the corpora with ratings are {rated}."
        )
    for name, path in corpora.items():  # every folder recognised from its listing before any corpus is built
        CORPORA[name].recognise(path)
    classes = classes_of(corpora, parse_classes(args.classes), everything=args.classes.strip() == "all")
    parts = [
        read_part(name, path, classes, args.skip_invalid, args.allow_incomplete, tuple(args.dimension_list))
        for name, path in corpora.items()
    ]
    if args.protocol == "leave-one-corpus-out":
        try:  # the rounds this run tests (a wrong --folds is plan_folds' to refuse)
            tested = select_folds(args.folds, sorted(corpora, key=natural_key))
        except ValueError:
            tested = list(corpora)
        check_unseen_classes(parts, classes, tested)
        folds, tests, train, validation = _leave_one_corpus_out(parts)
    else:
        folds, tests, train, validation = _within_corpus(parts)
    return Corpus(
        folds=folds,
        columns=("audio", "text", "label"),
        speaker_column="speaker",
        label_names=classes,
        name=" + ".join(part.spec.title for part in parts),
        tests=tests,
        fixed_train=train,
        fixed_validation=validation,
        corpus_column="corpus",
        parts={part.name: part for part in parts},
        exempt_speaker_prefixes=_exempt_speakers(parts, args.protocol),
        description=_describe(parts, classes, args.protocol),
        dimensions=args.dimension_list,
    )


def classes_of(corpora: dict[str, str], classes: list[str], everything: bool) -> list[str]:
    """The classes the run gives output units: of `classes`, those at least one of the corpora labels (by its label
    mapping). With `everything` (``--classes all``) the others are left out, and logged; named explicitly, a class
    no corpus has is refused.

    Raises:
        ValueError: a class named in ``--classes`` that none of the corpora has, or fewer than two classes left.
    """
    labelled = {shared for name in corpora for shared in CORPUS_LABELS[name].values() if shared}
    absent = [name for name in classes if name not in labelled]
    titles = " + ".join(CORPORA[name].title for name in corpora)
    if absent and not everything:
        raise ValueError(
            f"--classes: no corpus of this run ({titles}) has {', '.join(absent)}; a class without utterances would "
            f"get an output unit that nothing trains. The corpora have {sorted(labelled)}."
        )
    kept = [name for name in classes if name in labelled]
    if absent:
        logger.info("--classes all: %s has no %s; those classes get no output unit.", titles, ", ".join(absent))
    if len(kept) < 2:
        raise ValueError(f"--classes: {titles} has only {kept} of {classes}; at least two classes are needed.")
    return kept


def check_unseen_classes(parts: list[CorpusPart], classes: list[str], tested: list[str]) -> None:
    """Leave-one-corpus-out tests each corpus with a model trained on the others: a class that a tested corpus (of
    `tested`, by name) has and no other corpus has would be scored but never trained.

    Raises:
        ValueError: naming, per tested corpus, each such class and its test utterances, and the classes every round
            trains (a ``--classes`` that works).
    """
    counts = {part.name: part.class_counts(classes) for part in parts}
    unseen = []
    for part in (part for part in parts if part.name in tested):
        trained = {name for other in parts if other is not part for name, n in counts[other.name].items() if n}
        missing = {name: n for name, n in counts[part.name].items() if n and name not in trained}
        if missing:
            listed = ", ".join(f"{name} ({n} utterances)" for name, n in missing.items())
            unseen.append(f"{part.spec.title} is tested with {listed} that no other corpus trains")
    if unseen:
        shared = [name for name in classes if all(counts[part.name][name] for part in parts)]
        raise ValueError(
            "--protocol leave-one-corpus-out: " + "; ".join(unseen) + ". Choose classes that every corpus has, "
            f"e.g. --classes {','.join(shared)}."
        )


def _exempt_speakers(parts: list[CorpusPart], protocol: str) -> tuple[str, ...]:
    """Speaker-name prefixes the speaker checks skip: every speaker of a corpus whose official splits share speakers
    (within-corpus only: across corpora, speakers never meet), and a corpus's unknown-speaker id."""
    exempt = [f"{part.name}/" for part in parts if part.spec.shares_speakers and protocol == "within-corpus"]
    exempt += [f"{part.name}/{part.spec.unknown_speaker}" for part in parts if part.spec.unknown_speaker]
    return tuple(exempt)


def _concatenate(datasets_: list[datasets.Dataset]) -> datasets.Dataset | None:
    return datasets.concatenate_datasets(datasets_) if datasets_ else None


def _within_corpus(parts: list[CorpusPart]):
    """Round i: the i-th fold of every corpus that has one (official test splits in round 1)."""
    rounds = max(len(part.fold_names) if not part.spec.official else 1 for part in parts)
    single = len(parts) == 1
    folds, tests = {}, {}
    for index in range(rounds):
        fold_parts, test_parts = [], []
        names = set()
        for part in parts:
            if part.spec.official:
                if index == 0:
                    test_parts += [part.splits[name] for name in part.fold_names]
                    names.add("test")
            elif index < len(part.fold_names):
                fold_parts.append(part.splits[part.fold_names[index]])
                names.add(part.fold_names[index])
        name = names.pop() if single and len(names) == 1 else f"fold{index + 1}"
        if fold_parts:
            folds[name] = _concatenate(fold_parts)
        if test_parts:
            tests[name] = _concatenate(test_parts)
    official = [part for part in parts if part.spec.official]
    train = _concatenate([part.splits[s] for part in official for s in part.spec.official_train if s in part.splits])
    validation = _concatenate(
        [part.splits[s] for part in official for s in part.spec.official_validation if s in part.splits]
    )
    return folds, tests, train, validation


def _leave_one_corpus_out(parts: list[CorpusPart]):
    if len(parts) < 2:
        raise ValueError("--protocol leave-one-corpus-out needs at least two corpora (--corpus name=dir, twice)")
    folds = {part.name: _concatenate(list(part.splits.values())) for part in parts}
    return folds, {}, None, None


def _check_note(check) -> str:
    """What a copy lacks or holds beyond the release, for the protocol line (nothing for a clean copy)."""
    if check is None or check.clean:
        return ""
    counts = ", ".join(line.split(":", 1)[0] for line in check.summary_lines())
    return f"; this copy against the release's {check.documented} files: {counts}"


def _describe(parts: list[CorpusPart], classes: list[str], protocol: str) -> str:
    """The corpora and how they were arranged, for the protocol line."""
    described = []
    for part in parts:
        if part.spec.official:
            splits = f"official splits: train {'+'.join(part.spec.official_train)}, validation "
            splits += f"{'+'.join(part.spec.official_validation)}, test {'+'.join(part.fold_names)}"
            if part.spec.shares_speakers:
                splits += ", which share speakers (exempt from the speaker checks)"
            if part.spec.unknown_speaker:
                splits += f"; speaker {part.spec.unknown_speaker!r} (not known) exempt from the speaker checks"
        else:
            splits = f"{len(part.fold_names)} speaker-independent folds"
        dropped = f", {sum(part.dropped.values())} dropped (not of these classes)" if part.dropped else ""
        described.append(f"{part.spec.title} ({part.size} utterances{dropped}; {splits}{_check_note(part.check)})")
    if protocol == "leave-one-corpus-out":
        how = "Leave-one-corpus-out: each corpus is tested whole by a model trained on all the others"
    elif len(parts) == 1:
        how = f"{parts[0].spec.title} on its standard protocol"
    else:
        how = (
            "Within each corpus: round i tests the i-th fold of every corpus that has one (official test splits in "
            "round 1) and trains on all the rest, so each utterance is tested once"
        )
    return f"{how}; corpora: {'; '.join(described)}; classes shared across corpora: {', '.join(classes)}"
