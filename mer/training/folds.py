"""The shared types of corpora and their folds (a leaf: the corpora, the protocol, the fold export and train.py all
read them, and it reads none of them): `Corpus`, a corpus cut into named folds; `FoldSplit`, one fold's train,
validation and test; and how folds are named and chosen (`natural_key`, `select_folds`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import datasets

from mer.training.data import AudioHeader, audio_headers

__all__ = ["Corpus", "FoldSplit", "natural_key", "select_folds"]


@dataclass
class Corpus:
    """The corpus cut into named folds, with what training needs to know about it."""

    folds: dict[str, datasets.Dataset]
    columns: tuple[str, str, str]  # audio, text, label
    speaker_column: str | None
    label_names: list[str]
    name: str
    label_merges: list[str] = field(default_factory=list)  # e.g. ["exc merged into happy"]
    emobox_name: str | None = None  # the corpus's name in EmoBox's split files, when it has EmoBox's folds
    headers: dict[str, list[AudioHeader]] = field(default_factory=dict)  # by dataset fingerprint
    # Corpora with official splits (mer.training.corpora): tested in one round only and never trained on (`tests`),
    # always trained on (`fixed_train`), always validating (`fixed_validation`).
    tests: dict[str, datasets.Dataset] = field(default_factory=dict)
    fixed_train: datasets.Dataset | None = None
    fixed_validation: datasets.Dataset | None = None
    corpus_column: str | None = None  # names each utterance's corpus when several are pooled: scores per corpus
    parts: dict = field(default_factory=dict)  # corpus name -> mer.training.corpora.CorpusPart
    exempt_speaker_prefixes: tuple[str, ...] = ()  # speakers of corpora whose official splits share speakers
    description: str | None = None  # how the corpora were arranged (mer.training.corpora), for the protocol line
    dimensions: list[str] = field(default_factory=list)  # the rated dimensions trained, their columns on [0, 1]

    @property
    def fold_names(self) -> list[str]:
        """The rounds of leave-one-fold-out, in natural order (fold2 before fold10)."""
        return sorted(set(self.folds) | set(self.tests), key=natural_key)

    def test_set(self, fold: str) -> datasets.Dataset:
        """Every utterance that round `fold` tests: its fold and any official test split tested with it."""
        parts = [part[fold] for part in (self.folds, self.tests) if fold in part]
        return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)

    def named_parts(self) -> dict[str, datasets.Dataset]:
        """Every dataset of the corpus under a distinct name (folds, official tests, fixed train / validation)."""
        named = dict(self.folds)
        named |= {f"{fold} (official test)": dataset for fold, dataset in self.tests.items()}
        for name, dataset in (("official train", self.fixed_train), ("official validation", self.fixed_validation)):
            if dataset is not None:
                named[name] = dataset
        return named

    def replace_parts(self, named: dict[str, datasets.Dataset]) -> None:
        """Puts back the datasets of `named_parts`, changed (e.g. with speech recognition's transcripts)."""
        self.folds = {fold: named[fold] for fold in self.folds}
        self.tests = {fold: named[f"{fold} (official test)"] for fold in self.tests}
        self.fixed_train = named.get("official train")
        self.fixed_validation = named.get("official validation")

    def check_labels(self, overrides: dict) -> dict:
        """Adds the corpus's classes to the config overrides, or fails if the overrides name other classes."""
        id2label = dict(enumerate(self.label_names))
        given = overrides.get("id2label")
        if given is not None and {int(k): v for k, v in given.items()} != id2label:
            raise ValueError(f"--config_overrides id2label {given} does not match the dataset's classes {id2label}.")
        if overrides.get("num_labels", len(id2label)) != len(id2label):
            raise ValueError(f"num_labels={overrides['num_labels']} but the dataset has {len(id2label)} classes.")
        return {**{k: v for k, v in overrides.items() if k != "num_labels"}, "id2label": id2label}

    def headers_of(self, dataset: datasets.Dataset) -> list[AudioHeader]:
        """Every utterance's duration, rate and channels, read from the file headers once per dataset."""
        key = dataset._fingerprint
        if key not in self.headers:
            self.headers[key] = audio_headers(dataset, self.columns[0])
        return self.headers[key]

    def durations_of(self, dataset: datasets.Dataset) -> list[float]:
        return [header.seconds for header in self.headers_of(dataset)]

    def ids_of(self, dataset: datasets.Dataset) -> list:
        return dataset["id"] if "id" in dataset.column_names else list(range(len(dataset)))

    def speakers_of(self, dataset: datasets.Dataset | None) -> set[str]:
        """The speakers of `dataset` that the speaker checks apply to (not those of `exempt_speaker_prefixes`)."""
        if dataset is None or self.speaker_column is None:
            return set()
        speakers = set(map(str, dataset[self.speaker_column]))
        return {
            s for s in speakers if not self.exempt_speaker_prefixes or not s.startswith(self.exempt_speaker_prefixes)
        }


@dataclass
class FoldSplit:
    """One fold of the protocol: train on `train`, choose the epoch on `validation`, test on `test` (None for the
    final fit on every fold). `validation_speakers` are the speakers held out whole (speaker validation)."""

    name: str
    train: datasets.Dataset
    validation: datasets.Dataset
    test: datasets.Dataset | None
    validation_speakers: list[str] | None = None
    # Corpora (by name) whose training folds hold too few speakers to hold one out (TESS has two): validated on a
    # share of each training speaker's utterances instead, so their validation is not speaker-independent.
    validated_by_utterance: list[str] = field(default_factory=list)


def natural_key(name: str) -> list:
    """Sort key that puts ``fold2`` before ``fold10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def select_folds(requested: list[str] | None, fold_names: list[str]) -> list[str]:
    """The folds to test, by name or 1-based number, in the corpus's order; all of them when none are requested.

    Raises:
        ValueError: naming what matches no fold or what names a fold twice (`1 session1`), listing the folds.
    """
    if not requested:
        return list(fold_names)
    chosen, unknown = {}, []
    listed = ", ".join(f"{number} = {name}" for number, name in enumerate(fold_names, start=1))
    for item in map(str, requested):
        if item in fold_names:
            name = item
        elif item.isdigit() and 1 <= int(item) <= len(fold_names):
            name = fold_names[int(item) - 1]
        else:
            unknown.append(item)
            continue
        if name in chosen:
            raise ValueError(f"--folds: {chosen[name]} and {item} are the same fold, {name}. The folds are: {listed}.")
        chosen[name] = item
    if unknown:
        raise ValueError(f"--folds {unknown}: no such fold. The folds are: {listed}.")
    return [name for name in fold_names if name in chosen]
