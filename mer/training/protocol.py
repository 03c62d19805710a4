"""The evaluation protocol: leave-one-fold-out over a corpus's folds, the validation split taken from the training
folds, and the speaker checks. train.py reads it in one place (`plan_folds`), before any training.

- Each fold is tested once, by a model trained on the other folds; the test fold never chooses an epoch, a
  checkpoint or a hyper-parameter.
- Validation (the epoch choice and early stopping) comes from the training folds. `speaker` (the default) holds out
  whole training speakers; `utterance` holds out a share of every training speaker's utterances.
- For every corpus with a speaker column, no speaker may be in both the test fold and the training folds, and with
  `speaker` validation none in both training and validation: the run refuses to start and names the speaker.
"""

from __future__ import annotations

import logging
import random
import re
from collections import Counter, defaultdict
from pathlib import Path

import datasets

from dataset_scripts.dimensions import CORPUS_SCALES, UNIT_SCALE, DimensionScale, parse_scale
from mer.training.arguments import Arguments
from mer.training.corpora import load_corpora
from mer.training.dimensions import attach_dimensions, count_missing, describe_selection
from mer.training.folds import Corpus, FoldSplit, select_folds

__all__ = [
    "describe_protocol",
    "load_corpus",
    "plan_folds",
    "predicted_classes",
    "split_fold",
    "utterance_ids",
]

# The one class of a `--dataset` that has ratings and no classes, trained with `--dimensions_only`.
UNCLASSIFIED = "unclassified"

logger = logging.getLogger(__name__)

FINAL_FIT = "final"  # the name of the model trained on every fold (--final_fit)
# EmoBox's IEMOCAP folds (Ma et al. 2024; the same as s3prl's): leave-one-session-out over the 5,531 utterances of
# neutral, happy (with excited), angry and sad. The sizes of the test folds tell whether a corpus has them.
EMOBOX_IEMOCAP_TEST_SIZES = {"session1": 1085, "session2": 1023, "session3": 1151, "session4": 1031, "session5": 1241}
# A held-out validation set above this share of the training folds would starve training.
MAX_VALIDATION_SHARE = 0.5


def predicted_classes(args: Arguments, corpus: Corpus) -> list[str]:
    """The classes the run's model predicts and is scored on: the corpus's, or none for a dimensions-only model
    (`--dimensions_only`, whose classes choose the utterances and are not learnt)."""
    return [] if args.dimensions_only else corpus.label_names


def load_corpus(args: Arguments) -> Corpus:
    """Reads the corpus (`--data_dir` or `--dataset`) and checks its columns and labels.

    Raises:
        ValueError: for a missing path, missing columns, a label column that is neither ClassLabel nor text, fewer
            than 2 folds, or speaker validation on a corpus without a speaker column.
    """
    merges = []
    if args.corpus:
        return load_corpora(args)
    if args.data_dir is not None:
        from dataset_scripts.iemocap import CONFIG_LABELS, load_iemocap

        splits = load_iemocap(
            args.data_dir, args.dataset_config, improvised_only=args.improvised_only, skip_invalid=args.skip_invalid
        )
        folds, name = dict(splits), f"IEMOCAP-layout corpus at {args.data_dir} ({args.dataset_config})"
        merges = _merges(CONFIG_LABELS[args.dataset_config][1])
    else:
        folds, name = _folds_of(_load_dataset(args.dataset), args.fold_column), args.dataset
    if args.dimensions_only and all(args.label_column not in dataset.column_names for dataset in folds.values()):
        # Ratings without classes: one placeholder class, which nothing learns (`--dimensions_only`).
        folds = {fold: data.add_column(args.label_column, [UNCLASSIFIED] * len(data)) for fold, data in folds.items()}
    columns = (args.audio_column, args.text_column, args.label_column)
    for fold, dataset in folds.items():
        missing = [column for column in columns if column not in dataset.column_names]
        if missing:
            raise ValueError(
                f"Fold {fold!r} of {name} lacks the columns {missing}; it has {dataset.column_names}. "
                "Name the right ones with --audio_column, --text_column, --label_column."
            )
    if len(folds) < 2:
        raise ValueError(
            f"{name} has {len(folds)} fold(s): leave-one-out needs at least 2. Name the column that holds the folds "
            f"with --fold_column (now {args.fold_column!r}), or give a dataset with one split per fold."
        )
    label_names = _label_names(folds, args.label_column)
    folds = {
        fold: dataset.cast_column(args.label_column, datasets.ClassLabel(names=label_names))
        for fold, dataset in folds.items()
    }
    if args.dimension_list:
        folds = attach_dimensions(folds, args.dimension_list, _dimension_scale(args), name)
    first = next(iter(folds.values()))
    speaker = args.speaker_column if args.speaker_column in first.column_names else None
    if speaker is None and args.validation_strategy == "speaker":
        raise ValueError(
            f"--validation_strategy speaker holds out whole speakers, but {name} has no speaker column "
            f"{args.speaker_column!r} (its columns: {first.column_names}). Name it with --speaker_column, or pass "
            "--validation_strategy utterance."
        )
    emobox = (
        "iemocap" if {fold: len(dataset) for fold, dataset in folds.items()} == EMOBOX_IEMOCAP_TEST_SIZES else None
    )
    return Corpus(
        folds=folds,
        columns=columns,
        speaker_column=speaker,
        label_names=label_names,
        name=name,
        label_merges=merges,
        emobox_name=emobox,
        dimensions=args.dimension_list,
    )


def _dimension_scale(args: Arguments) -> DimensionScale:
    """The scale of the corpus's ratings: IEMOCAP's for its layout, else the one --dimension_scale states (0-1)."""
    if args.data_dir is not None:
        return CORPUS_SCALES["iemocap"]
    return parse_scale(args.dimension_scale) if args.dimension_scale else UNIT_SCALE


def _merges(label_map: dict[str, str]) -> list[str]:
    """`{"hap": "happy", "exc": "happy", ...}` -> `["exc merged into happy"]` (the first code names the class)."""
    by_class = defaultdict(list)
    for code, name in label_map.items():
        by_class[name].append(code)
    return [f"{'+'.join(codes[1:])} merged into {name}" for name, codes in by_class.items() if len(codes) > 1]


def utterance_ids(fold: str, dataset: datasets.Dataset) -> list[str]:
    """Names for a fold's utterances that no other fold uses: the `id` column where the corpus has one, else
    `<fold>-<row>`."""
    if "id" in dataset.column_names:
        return [str(value) for value in dataset["id"]]
    return [f"{fold}-{row}" for row in range(len(dataset))]


def plan_folds(corpus: Corpus, args: Arguments) -> list[FoldSplit]:
    """Every fold the run trains (and the final fit), split and checked before any training starts.

    Raises:
        ValueError: an unknown fold or --push_fold, a speaker in two of train / validation / test (named), too few
            speakers to hold one out, or a training split smaller than one batch.
    """
    if args.push_to_hub and not args.final_fit and args.push_fold not in corpus.fold_names:
        raise ValueError(f"--push_fold {args.push_fold!r} is not a fold; the folds are {corpus.fold_names}.")
    tested = select_folds(args.folds, corpus.fold_names)
    plan = [split_fold(corpus, fold, args.validation_strategy, args.validation_fraction, args.seed) for fold in tested]
    if args.final_fit:
        plan.append(split_fold(corpus, None, args.validation_strategy, args.validation_fraction, args.seed))
    for split in plan:
        _check_speakers(corpus, split, args.validation_strategy)
        if len(split.train) < args.batch_size:
            raise ValueError(
                f"Fold {split.name} has {len(split.train)} training utterances, fewer than one batch "
                f"(--batch_size {args.batch_size})."
            )
    return plan


def split_fold(corpus: Corpus, test_fold: str | None, strategy: str, fraction: float, seed: int) -> FoldSplit:
    """Tests on `test_fold` (None: a final fit on every fold) and splits the other folds into train and validation
    by `strategy`: whole speakers taken in a seeded random order until they hold at least `fraction` of the
    utterances (`speaker`; of each corpus's when several are pooled), or `fraction` of every speaker's utterances
    (`utterance`; of every class's when the corpus names no speakers). Official train and validation splits
    (`Corpus.fixed_train`, `fixed_validation`) join training and validation as they are."""
    names = [name for name in corpus.fold_names if name != test_fold and name in corpus.folds]
    pool = datasets.concatenate_datasets([corpus.folds[name] for name in names]) if names else None
    name = test_fold or FINAL_FIT
    held_speakers, held, by_utterance = None, [], []
    if pool is not None and strategy == "speaker":
        speakers = list(map(str, pool[corpus.speaker_column]))
        groups = pool[corpus.corpus_column] if corpus.corpus_column else [None] * len(speakers)
        held_speakers = set()
        for group in sorted(set(groups), key=str):  # each corpus gives its share of validation speakers
            rows = [row for row, value in enumerate(groups) if value == group]
            try:
                held_speakers |= _held_out_speakers([speakers[row] for row in rows], fraction, seed, name, group)
            except ValueError as error:
                if len(set(groups)) > 1:  # pooled: a corpus with too few training speakers only trains here
                    logger.warning("%s All of its training speakers train; the other corpora validate.", error)
                elif group is not None:  # a public corpus of few speakers alone: its utterances validate
                    by_utterance.append(group)
                    held += [rows[i] for i in _held_out_share([speakers[row] for row in rows], fraction, seed)]
                else:
                    raise
        held += [row for row, speaker in enumerate(speakers) if speaker in held_speakers]
    elif pool is not None:
        groups = pool[corpus.speaker_column] if corpus.speaker_column else pool[corpus.columns[2]]
        held = _held_out_share(groups, fraction, seed)
    train = [pool.select(sorted(set(range(len(pool))) - set(held)))] if pool is not None else []
    validation = [pool.select(sorted(held))] if pool is not None and held else []
    train += [corpus.fixed_train] if corpus.fixed_train is not None else []
    validation += [corpus.fixed_validation] if corpus.fixed_validation is not None else []
    if not train or not validation:
        raise ValueError(f"Fold {name}: nothing is left to {'train' if not train else 'validate'} on.")
    return FoldSplit(
        name=name,
        train=datasets.concatenate_datasets(train) if len(train) > 1 else train[0],
        validation=datasets.concatenate_datasets(validation) if len(validation) > 1 else validation[0],
        test=corpus.test_set(test_fold) if test_fold else None,
        validation_speakers=sorted(held_speakers) if held_speakers is not None else None,
        validated_by_utterance=by_utterance,
    )


def describe_protocol(args: Arguments, corpus: Corpus, plan: list[FoldSplit]) -> str:
    """One line that says how the run was evaluated, for results.json, the printed table and the model card: the
    folds, the classes and their merges, the validation, the transcripts, the scores and how folds and seeds are
    combined."""
    tested = [split.name for split in plan if split.test is not None]
    sizes = "/".join(str(len(corpus.test_set(name))) for name in corpus.fold_names)
    if corpus.description:
        folds = corpus.description
    elif corpus.emobox_name:
        folds = f"EmoBox's IEMOCAP folds: leave-one-session-out over {len(corpus.folds)} sessions"
    else:
        folds = f"Leave-one-fold-out over {len(corpus.folds)} folds"
    total = sum(len(dataset) for dataset in corpus.named_parts().values())
    folds += f" ({total} utterances, test sizes {sizes}; tested: {', '.join(tested) or 'none'})"
    classes = f"{len(corpus.label_names)} classes ({', '.join(corpus.label_names)}"
    classes += f"; {', '.join(corpus.label_merges)})" if corpus.label_merges else ")"
    seed_order = f"in a seed-{args.seed} order" if not args.seeds else "in each seed's order"
    if args.validation_strategy == "speaker":
        validation = (
            f"validation on whole training speakers held out from training ({seed_order}, until they hold >= "
            f"{args.validation_fraction:.0%} of the training utterances)"
        )
    else:
        grouping = "speaker" if corpus.speaker_column else "class"
        validation = f"validation on {args.validation_fraction:.0%} of each training {grouping}'s utterances"
    few = sorted({group for split in plan for group in split.validated_by_utterance})
    if few:
        titles = ", ".join(corpus.parts[group].spec.title if group in corpus.parts else group for group in few)
        validation += (
            f" ({titles}: too few training speakers to hold one out, so {args.validation_fraction:.0%} of each "
            "training speaker's utterances validate; that validation is not speaker-independent)"
        )
    asr = f"speech recognition's ({args.asr_model})"
    transcripts = {
        "gold": "gold transcripts in training and testing",
        "asr": f"{asr} transcripts in training and testing",
        "both": f"trained on gold transcripts, tested on gold and on {asr} transcripts",
    }[args.transcripts]
    seeds = args.seed_list
    combined = "fold scores averaged (mean ± std over folds) and pooled (all test utterances scored together)"
    if len(seeds) > 1:
        combined += f"; {len(seeds)} seeds ({', '.join(map(str, seeds))}): std over folds and over seeds apart"
    scores = "WA = accuracy, UA = mean per-class recall, micro-F1 and macro-F1"
    if corpus.dimensions:
        classes += f"; dimensions {', '.join(corpus.dimensions)} on [0, 1]{_missing_ratings(corpus)}"
        scores += "; per dimension CCC (concordance correlation), Pearson's r and MAE"
    if args.dimensions_only:
        classes += " (a dimensions-only model: the classes choose the utterances and are not learnt)"
        scores = "per dimension CCC (concordance correlation), Pearson's r and MAE"
    selection = describe_selection(corpus.dimensions, classes=not args.dimensions_only)
    return (
        f"{folds}; {classes}; {validation}; {selection}, the test fold never does; {transcripts}; {scores}; "
        f"{combined}."
    )


def _missing_ratings(corpus: Corpus) -> str:
    """`` (arousal: 3 of 400 utterances unrated, left out of the loss and scores)``, or nothing."""
    missing = count_missing(corpus.named_parts(), corpus.dimensions)
    total = sum(len(dataset) for dataset in corpus.named_parts().values())
    counted = [f"{name}: {count} of {total} utterances unrated" for name, count in missing.items() if count]
    return f" ({'; '.join(counted)}, left out of the loss and scores)" if counted else ""


def _held_out_speakers(speakers: list[str], fraction: float, seed: int, fold: str, corpus=None) -> set[str]:
    counts = Counter(speakers)
    order = sorted(counts)
    random.Random(seed).shuffle(order)
    held, size = set(), 0
    for speaker in order:
        if size >= fraction * len(speakers):
            break
        held.add(speaker)
        size += counts[speaker]
    if len(held) == len(counts) or size > MAX_VALIDATION_SHARE * len(speakers):
        raise ValueError(
            f"Fold {fold}: the training folds{f' of {corpus}' if corpus else ''} have {len(counts)} speaker(s), too "
            f"few to hold whole speakers out for validation (holding out {sorted(held)} would take {size} of "
            f"{len(speakers)} utterances). Pass --validation_strategy utterance."
        )
    return held


def _held_out_share(groups: list, fraction: float, seed: int) -> list[int]:
    by_group = defaultdict(list)
    for row, group in enumerate(groups):
        by_group[group].append(row)
    rng = random.Random(seed)
    held = []
    for group in sorted(by_group, key=str):
        rows = by_group[group]
        rng.shuffle(rows)
        held += rows[: max(1, round(fraction * len(rows)))] if len(rows) > 1 else []
    return held


def _check_speakers(corpus: Corpus, split: FoldSplit, strategy: str) -> None:
    train, validation = corpus.speakers_of(split.train), corpus.speakers_of(split.validation)
    test = corpus.speakers_of(split.test)
    pairs = [("the test fold", test, "the training folds", train | validation)]
    if strategy == "speaker":
        exempt = tuple(f"{group}/" for group in split.validated_by_utterance)  # speakers are per corpus (`tess/OAF`)
        validation = {speaker for speaker in validation if not speaker.startswith(exempt)} if exempt else validation
        pairs.append(("validation", validation, "training", train))
    for first_name, first, second_name, second in pairs:
        shared = sorted(first & second)
        if shared:
            raise ValueError(
                f"Fold {split.name}: speaker(s) {shared[:10]} are in both {first_name} and {second_name} "
                f"({len(shared)} in all). A speaker-independent evaluation needs folds that split by speaker: "
                "choose them with --fold_column."
            )


_SHARD = re.compile(r"-\d{5}-of-\d{5}$")  # the Hub's shard names (train-00000-of-00002)


def _load_dataset(source: str) -> datasets.DatasetDict:
    """A Parquet file, a folder of Parquet files, a `save_to_disk` folder or a Hub id, as a DatasetDict."""
    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix != ".parquet":
            raise ValueError(
                f"--dataset {source}: a file must be Parquet (.parquet), got {path.suffix or 'no suffix'}."
            )
        return datasets.load_dataset("parquet", data_files=str(path))
    if path.is_dir():
        if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            loaded = datasets.load_from_disk(str(path))
            return loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict(train=loaded)
        if not any(path.rglob("*.parquet")):
            raise ValueError(
                f"--dataset {source}: the folder holds no Parquet files and is not a save_to_disk folder."
            )
        files = sorted(path.glob("*.parquet"))
        if len(files) > 1 and not any(_SHARD.search(file.stem) for file in files):
            # One file per split, as the builders' Parquet export writes them (fold1.parquet, ...): the file names
            # are the splits. (`datasets` itself knows only train / validation / test and would merge the rest.)
            return datasets.load_dataset("parquet", data_files={file.stem: str(file) for file in files})
        return datasets.load_dataset(str(path))
    if source.startswith(("/", ".", "~")) or path.suffix == ".parquet" or source.count("/") > 1:
        raise ValueError(f"--dataset {source}: no such file or folder.")
    try:
        return datasets.load_dataset(source)
    except Exception as error:  # noqa: BLE001 - whatever the Hub says, the user needs to know what was tried
        raise ValueError(
            f"--dataset {source}: not a local path, and loading it from the Hub failed: {error}"
        ) from error


def _folds_of(loaded: datasets.DatasetDict, fold_column: str) -> dict[str, datasets.Dataset]:
    merged = datasets.concatenate_datasets(list(loaded.values())) if len(loaded) > 1 else next(iter(loaded.values()))
    if fold_column not in merged.column_names:
        return dict(loaded)
    column = merged[fold_column]
    return {
        f"{fold_column}{value}" if not isinstance(value, str) else value: merged.select(
            [row for row, v in enumerate(column) if v == value]
        )
        for value in sorted(set(column), key=str)
    }


def _label_names(folds: dict[str, datasets.Dataset], label_column: str) -> list[str]:
    feature = next(iter(folds.values())).features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    if getattr(feature, "dtype", None) in ("string", "large_string"):
        return sorted({label for dataset in folds.values() for label in dataset[label_column]})
    raise ValueError(f"The label column {label_column!r} must be a ClassLabel or text, got {feature}.")
