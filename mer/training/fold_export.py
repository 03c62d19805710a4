"""The folds of a corpus as EmoBox-style JSONL, so that other toolkits run on exactly the splits MER ran on.

    python train.py --data_dir /path/IEMOCAP_full_release --export_folds folds/

writes, for a corpus EmoBox calls `iemocap` (any other is named after its directory):

    folds/iemocap.jsonl                          every utterance
    folds/label_map.json                         the corpus's own labels -> the classes trained on
    folds/fold_<n>/iemocap_train_fold_<n>.jsonl  every fold but the n-th (the validation split comes from it)
    folds/fold_<n>/iemocap_test_fold_<n>.jsonl   the n-th fold

With `--corpus name=dir` (several corpora), each corpus goes to `folds/<corpus>/` in the same layout, on its own
standard folds (an official test split is its single test fold, trained on its train and validation splits).

Each line has `id`, `path`, `label` (the class trained on) and `fold` (the fold it belongs to), and EmoBox's own keys:
`key` (`<corpus>-<id>`), `dataset`, `wav`, `type`, `sample_rate`, `num_frame`, `task`, `length` (seconds), `emo` (the
corpus's label before merging, as EmoBox keeps it) and `channel`. Audio that a dataset holds as bytes only is written
out under `audio/`, so every `path` is a file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import datasets

from mer.training.folds import Corpus
from mer.training.protocol import utterance_ids

__all__ = ["export_folds"]

_RAW_LABEL = "raw_label"  # the IEMOCAP builder's column for the annotators' code before merging ("exc")


def export_folds(corpus: Corpus, directory: str | Path, source: str) -> dict[str, Path]:
    """Writes `corpus`'s folds into `directory` (see the module's docstring); `source` (the corpus directory or
    dataset) names the corpus when EmoBox has no name for it. Corpora given by name (`--corpus`) are written each
    into its own folder, ``directory/<corpus>/``, on its own standard folds. Returns the file written for each split
    name (`all`, `<fold>/train`, `<fold>/test`; prefixed `<corpus>/` for corpora by name)."""
    directory = Path(directory)
    if corpus.parts:
        written = {}
        for name, part in corpus.parts.items():
            view = part.as_corpus(corpus.label_names)
            written |= {f"{name}/{key}": path for key, path in _export(view, directory / name, name).items()}
        return written
    name = corpus.emobox_name or re.sub(r"[^a-z0-9]+", "_", Path(source.rstrip("/")).name.lower()).strip("_")
    return _export(corpus, directory, name or "corpus")


def _export(corpus: Corpus, directory: Path, name: str) -> dict[str, Path]:
    """One corpus: every utterance, the label map, and per fold its training (every other fold, and any official
    train and validation split) and test files."""
    named = {fold: corpus.test_set(fold) for fold in corpus.fold_names}
    fixed = {"train": corpus.fixed_train, "validation": corpus.fixed_validation}
    named |= {f"official-{key}": dataset for key, dataset in fixed.items() if dataset is not None}
    records = {part: _records(corpus, part, dataset, name, directory) for part, dataset in named.items()}
    written = {"all": _write(directory / f"{name}.jsonl", [row for rows in records.values() for row in rows])}
    label_map = {row["emo"]: row["label"] for rows in records.values() for row in rows}
    (directory / "label_map.json").write_text(json.dumps(dict(sorted(label_map.items())), indent=2) + "\n")
    trained_always = [row for part in named if part.startswith("official-") for row in records[part]]
    for test_fold, number in fold_numbers(corpus.fold_names).items():
        fold_dir = directory / f"fold_{number}"
        train = [
            row for fold in corpus.fold_names if fold != test_fold and fold in corpus.folds for row in records[fold]
        ]
        written[f"{test_fold}/train"] = _write(fold_dir / f"{name}_train_fold_{number}.jsonl", train + trained_always)
        written[f"{test_fold}/test"] = _write(fold_dir / f"{name}_test_fold_{number}.jsonl", records[test_fold])
    return written


def fold_numbers(fold_names: list[str]) -> dict[str, int]:
    """Each fold's number in the exported names (`fold_<n>`): the number in its own name (`fold4` -> 4, `session2`
    -> 2), so that a copy lacking some folds keeps the release's numbering; their position (1, 2, ...) when the
    names carry no distinct numbers."""
    numbers = [re.search(r"(\d+)$", name) for name in fold_names]
    own = [int(match.group(1)) for match in numbers if match]
    if len(own) == len(fold_names) and len(set(own)) == len(own):
        return dict(zip(fold_names, own, strict=True))
    return {name: number for number, name in enumerate(fold_names, start=1)}


def _records(corpus: Corpus, fold: str, dataset: datasets.Dataset, name: str, directory: Path) -> list[dict]:
    audio_column, _, label_column = corpus.columns
    headers, ids = corpus.headers_of(dataset), utterance_ids(fold, dataset)
    labels = [corpus.label_names[label] for label in dataset[label_column]]
    raw = dataset[_RAW_LABEL] if _RAW_LABEL in dataset.column_names else labels
    encoded = dataset.select_columns([audio_column]).cast_column(audio_column, datasets.Audio(decode=False))
    rows = []
    for row, (value, header) in enumerate(zip(encoded[audio_column], headers, strict=True)):
        path = _audio_file(value, directory / "audio" / fold, ids[row])
        rows.append(
            {
                "id": ids[row],
                "path": path,
                "label": labels[row],
                "fold": fold,
                "key": f"{name}-{ids[row].removeprefix(name + '/')}",
                "dataset": name,
                "wav": path,
                "type": "raw",
                "sample_rate": header.sampling_rate,
                "num_frame": float(round(header.seconds * header.sampling_rate)),
                "task": "category",
                "length": round(header.seconds, 4),
                "emo": raw[row],
                "channel": header.channels,
            }
        )
    return rows


def _audio_file(value: dict, audio_dir: Path, utterance: str) -> str:
    """The utterance's audio file: the one it was read from, or its bytes written out."""
    path = value.get("path")
    if value.get("bytes") is None and path and Path(path).is_file():
        return str(Path(path).resolve())
    suffix = Path(path).suffix if path else ".wav"
    audio_dir.mkdir(parents=True, exist_ok=True)
    target = audio_dir / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', utterance)}{suffix or '.wav'}"
    target.write_bytes(value["bytes"] if value.get("bytes") is not None else Path(path).read_bytes())
    return str(target.resolve())


def _write(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path
