"""train.py's arguments, data folds, output-directory bookkeeping, model card and Hub upload."""

from __future__ import annotations

import contextlib
import json
import platform
import random
import re
import shutil
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import datasets
import numpy as np

from .data import audio_durations

__all__ = [
    "Arguments",
    "FoldData",
    "atomic_directory",
    "check_output_dir",
    "claim_output_dir",
    "load_folds",
    "load_model_configs",
    "parse_config_overrides",
    "push_model_to_hub",
    "save_confusion_matrix",
    "summarise",
    "write_model_card",
]

# Arguments that do not change what a run computes: a rerun may differ in them and still resume.
_RUN_NEUTRAL = {"folds", "resume_from_checkpoint", "overwrite_output_dir", "num_workers", "report_to"}
_RUN_NEUTRAL |= {"push_to_hub", "hub_model_id", "hub_private", "push_fold", "final_fit"}


@dataclass
class Arguments:
    # Data
    data_dir: str | None = field(
        default=None,
        metadata={"help": "An IEMOCAP_full_release directory (or a corpus in its layout, such as the synthetic one)."},
    )  # noqa: E501
    dataset: str | None = field(
        default=None,
        metadata={
            "help": "Instead of --data_dir: a `datasets` dataset (Parquet path or Hub id) with audio, text, label; "
            "folds come from --fold_column, else from its splits."
        },
    )  # noqa: E501
    dataset_config: str = field(default="4class", metadata={"help": "IEMOCAP label set: 4class, 6class or all."})
    improvised_only: bool = field(default=False, metadata={"help": "IEMOCAP: keep improvised dialogs only."})
    fold_column: str = field(default="session", metadata={"help": "--dataset: the column whose values are the folds."})  # noqa: E501
    audio_column: str = field(default="audio", metadata={"help": "Column holding the audio."})
    text_column: str = field(default="text", metadata={"help": "Column holding the transcript."})
    label_column: str = field(default="label", metadata={"help": "Column holding the emotion (ClassLabel or str)."})
    speaker_column: str = field(
        default="speaker", metadata={"help": "Column used to stratify the validation slice (falls back to the label)."}
    )  # noqa: E501
    # Model
    audio_model: str = field(
        default="facebook/wav2vec2-base", metadata={"help": "Audio encoder: Hub id or directory."}
    )  # noqa: E501
    text_model: str = field(default="bert-base-uncased", metadata={"help": "Text encoder: Hub id or directory."})
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "MERConfig fields, e.g. 'fusion_num_layers=4,fusion_direction=text_to_audio' (values read as JSON "
            "when they parse)."
        },
    )  # noqa: E501
    # Training
    output_dir: str = field(default="runs/mer", metadata={"help": "Where folds, checkpoints and results go."})
    folds: list[int] | None = field(
        default=None, metadata={"help": "Run only these folds (1-based), e.g. --folds 1 3."}
    )  # noqa: E501
    num_epochs: int = field(default=20, metadata={"help": "Maximum epochs per fold."})
    batch_size: int = field(default=8, metadata={"help": "Utterances per device and step."})
    eval_batch_size: int = field(default=16, metadata={"help": "Utterances per device in evaluation."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Steps accumulated per update."})
    encoder_learning_rate: float = field(default=2e-5, metadata={"help": "Peak learning rate of both encoders."})
    learning_rate: float = field(
        default=5e-4, metadata={"help": "Peak learning rate of projections, fusion and heads."}
    )  # noqa: E501
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (not on biases and norms)."})
    warmup_ratio: float = field(
        default=0.1, metadata={"help": "Share of the steps spent warming up, then linear decay."}
    )  # noqa: E501
    group_by_length: bool = field(
        default=True,
        metadata={
            "help": "Batch utterances of similar length (less padding). Turn off when length predicts the label, as "
            "in the synthetic corpus (duration carries arousal): batches would be nearly single-class."
        },
    )
    max_audio_seconds: float = field(
        default=15.0,
        metadata={
            "help": "Training crops longer audio to a random window of this length; evaluation sees whole utterances."
        },
    )  # noqa: E501
    validation_fraction: float = field(
        default=0.1, metadata={"help": "Share of each training speaker's utterances held out for validation."}
    )  # noqa: E501
    early_stopping_patience: int = field(
        default=5, metadata={"help": "Stop a fold after this many epochs without a better validation UA."}
    )  # noqa: E501
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Trade compute for memory."})
    num_workers: int = field(default=2, metadata={"help": "DataLoader workers per process."})
    seed: int = field(default=42, metadata={"help": "Seed for initialisation, splits and batch order."})
    ablations: bool = field(
        default=True,
        metadata={"help": "Also test each fold with text masked (audio-only) and audio masked (text-only)."},
    )  # noqa: E501
    final_fit: bool = field(
        default=False,
        metadata={"help": "After the folds, train one model on all sessions (validation slice from all of them)."},
    )  # noqa: E501
    report_to: str | None = field(
        default=None, metadata={"help": "Experiment tracker for accelerate, e.g. tensorboard."}
    )  # noqa: E501
    resume_from_checkpoint: bool = field(
        default=False,
        metadata={
            "help": "Continue the run in --output_dir (rerunning the same command does too); fails if there is none."
        },
    )  # noqa: E501
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Delete what --output_dir holds and start again."}
    )  # noqa: E501
    push_to_hub: bool = field(
        default=False, metadata={"help": "Upload the chosen model with its card, processor and code."}
    )  # noqa: E501
    hub_model_id: str | None = field(default=None, metadata={"help": "user/name of the model repository."})
    hub_private: bool = field(default=False, metadata={"help": "Create the repository as private."})
    push_fold: str | None = field(
        default=None, metadata={"help": "The fold whose model is pushed (e.g. session1), unless --final_fit."}
    )  # noqa: E501

    def check(self) -> None:
        """Raises ValueError for inconsistent arguments, before anything is loaded."""
        if (self.data_dir is None) == (self.dataset is None):
            raise ValueError("Give exactly one of --data_dir (IEMOCAP layout) and --dataset (a datasets dataset).")
        for name in ("num_epochs", "batch_size", "eval_batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}.")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"--validation_fraction must be in (0, 1), got {self.validation_fraction}.")
        if self.max_audio_seconds <= 0:
            raise ValueError(f"--max_audio_seconds must be positive, got {self.max_audio_seconds}.")
        if self.push_to_hub:
            if not self.hub_model_id:
                raise ValueError("--push_to_hub needs --hub_model_id user/name.")
            if not self.final_fit and not self.push_fold:
                raise ValueError("--push_to_hub needs the model to push: --push_fold <fold> or --final_fit.")

    def selected_folds(self, fold_names: list[str]) -> list[str]:
        """The folds to run, by name; raises ValueError for out-of-range --folds or an unknown --push_fold."""
        if self.push_to_hub and not self.final_fit and self.push_fold not in fold_names:
            raise ValueError(f"--push_fold {self.push_fold!r} is not a fold; the folds are {fold_names}.")
        if self.folds is None:
            return list(fold_names)
        wrong = [k for k in self.folds if not 1 <= k <= len(fold_names)]
        if wrong:
            raise ValueError(f"--folds {wrong} out of range: there are {len(fold_names)} folds ({fold_names}).")
        return [fold_names[k - 1] for k in sorted(set(self.folds))]


def parse_config_overrides(text: str | None) -> dict:
    """`'a=1,b=text,c={"x": 1, "y": 2}'` -> `{"a": 1, "b": "text", "c": {"x": 1, "y": 2}}`; every key must be a
    MERConfig field and the values must pass its validation."""
    from modeling_mer import MERConfig

    overrides = {}
    # Split at commas that start a new `key=`, so JSON values may hold commas themselves.
    for item in filter(None, (part.strip() for part in re.split(r",(?=\s*\w+\s*=)", text or ""))):
        key, separator, value = item.partition("=")
        if not separator:
            raise ValueError(f"--config_overrides: {item!r} is not key=value.")
        with contextlib.suppress(json.JSONDecodeError):
            value = json.loads(value)
        overrides[key.strip()] = value
    known = set(MERConfig().to_dict()) - {"audio_config", "text_config"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"--config_overrides: unknown MERConfig fields {unknown}.")
    MERConfig(**overrides)  # validates the values
    return overrides


def load_model_configs(audio_model: str, text_model: str) -> None:
    """Fails early, naming the model, when an encoder cannot be found or read."""
    from transformers import AutoConfig

    for role, name in (("audio", audio_model), ("text", text_model)):
        try:
            AutoConfig.from_pretrained(name)
        except (OSError, ValueError) as error:
            raise ValueError(f"Cannot load the {role} model {name!r}: {error}") from error


@dataclass
class FoldData:
    """The corpus cut into named folds, with what training needs to know about it."""

    folds: dict[str, datasets.Dataset]
    columns: tuple[str, str, str]
    speaker_column: str | None
    label_names: list[str]
    name: str
    durations: dict[str, list[float]] = field(default_factory=dict)

    @property
    def fold_names(self) -> list[str]:
        return sorted(self.folds)

    def check_labels(self, overrides: dict) -> dict:
        """Adds the corpus's classes to the config overrides, or fails if the overrides name other classes."""
        id2label = dict(enumerate(self.label_names))
        given = overrides.get("id2label")
        if given is not None and {int(k): v for k, v in given.items()} != id2label:
            raise ValueError(f"--config_overrides id2label {given} does not match the dataset's classes {id2label}.")
        if overrides.get("num_labels", len(id2label)) != len(id2label):
            raise ValueError(f"num_labels={overrides['num_labels']} but the dataset has {len(id2label)} classes.")
        return {**{k: v for k, v in overrides.items() if k != "num_labels"}, "id2label": id2label}

    def split(self, test_fold: str | None, fraction: float, seed: int):
        """(train, validation, test): test is one fold (None for a final fit on all of them); validation takes
        `fraction` of every speaker's utterances in the other folds, so it has every training speaker."""
        rest = [self.folds[name] for name in self.fold_names if name != test_fold]
        pool = datasets.concatenate_datasets(rest)
        groups = pool[self.speaker_column] if self.speaker_column else pool[self.columns[2]]
        by_group = defaultdict(list)
        for row, group in enumerate(groups):
            by_group[group].append(row)
        rng = random.Random(seed)
        held_out = []
        for group in sorted(by_group, key=str):
            rows = by_group[group]
            rng.shuffle(rows)
            held_out += rows[: max(1, round(fraction * len(rows)))] if len(rows) > 1 else []
        held = set(held_out)
        train = pool.select([row for row in range(len(pool)) if row not in held])
        validation = pool.select(sorted(held_out))
        return train, validation, (self.folds[test_fold] if test_fold else None)

    def durations_of(self, dataset: datasets.Dataset) -> list[float]:
        key = dataset._fingerprint
        if key not in self.durations:
            self.durations[key] = audio_durations(dataset, self.columns[0])
        return self.durations[key]

    def ids_of(self, dataset: datasets.Dataset) -> list:
        return dataset["id"] if "id" in dataset.column_names else list(range(len(dataset)))


def load_folds(args: Arguments) -> FoldData:
    """Reads the corpus and checks its columns and labels.

    Raises:
        ValueError: for missing columns, a label column that is neither ClassLabel nor text, or fewer than 2 folds.
    """
    if args.data_dir is not None:
        from dataset_scripts.iemocap import load_iemocap

        splits = load_iemocap(args.data_dir, args.dataset_config, improvised_only=args.improvised_only)
        folds, name = dict(splits), f"IEMOCAP-layout corpus at {args.data_dir} ({args.dataset_config})"
    else:
        loaded = datasets.load_dataset(args.dataset)
        folds, name = _folds_of(loaded, args.fold_column), args.dataset
    columns = (args.audio_column, args.text_column, args.label_column)
    for fold, dataset in folds.items():
        missing = [column for column in columns if column not in dataset.column_names]
        if missing:
            raise ValueError(
                f"Fold {fold!r} of {name} lacks the columns {missing}; it has {dataset.column_names}. "
                "Name the right ones with --audio_column, --text_column, --label_column."
            )
    if len(folds) < 2:
        raise ValueError(f"{name} has {len(folds)} fold(s): leave-one-out needs at least 2.")
    label_names = _label_names(folds, args.label_column)
    folds = {
        fold: dataset.cast_column(args.label_column, datasets.ClassLabel(names=label_names))
        for fold, dataset in folds.items()
    }
    first = next(iter(folds.values()))
    speaker = args.speaker_column if args.speaker_column in first.column_names else None
    return FoldData(folds=folds, columns=columns, speaker_column=speaker, label_names=label_names, name=name)


def _folds_of(loaded: datasets.DatasetDict, fold_column: str) -> dict[str, datasets.Dataset]:
    merged = datasets.concatenate_datasets(list(loaded.values())) if len(loaded) > 1 else next(iter(loaded.values()))
    if fold_column not in merged.column_names:
        return dict(loaded)
    values = sorted(set(merged[fold_column]), key=str)
    column = merged[fold_column]
    return {
        f"{fold_column}{value}" if not isinstance(value, str) else value: merged.select(
            [row for row, v in enumerate(column) if v == value]
        )
        for value in values
    }


def _label_names(folds: dict[str, datasets.Dataset], label_column: str) -> list[str]:
    feature = next(iter(folds.values())).features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    if getattr(feature, "dtype", None) in ("string", "large_string"):
        return sorted({label for dataset in folds.values() for label in dataset[label_column]})
    raise ValueError(f"The label column {label_column!r} must be a ClassLabel or text, got {feature}.")


def check_output_dir(output_dir: Path, args: Arguments) -> None:
    """Accepts `output_dir` when it is new, empty, holds this same run (to resume) or is to be overwritten. Reads
    only, so every process of a distributed run can call it and fail alike.

    Raises:
        ValueError: it holds a different run (naming the arguments that differ), it holds something else, or
            --resume_from_checkpoint was given and there is nothing to resume.
    """
    if args.overwrite_output_dir:
        return
    record = output_dir / "run_args.json"
    if record.exists():
        theirs, ours = json.loads(record.read_text()), _run_defining(args)
        differing = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
        if differing:
            raise ValueError(
                f"{output_dir} holds a different run (it differs in {differing}). Choose another --output_dir, or "
                "pass --overwrite_output_dir to delete it."
            )
        return
    if args.resume_from_checkpoint:
        raise ValueError(f"--resume_from_checkpoint: {output_dir} holds no run to resume.")
    if output_dir.exists() and any(output_dir.iterdir()):
        raise ValueError(f"{output_dir} is not empty and holds no MER run. Choose another --output_dir.")


def claim_output_dir(output_dir: Path, args: Arguments) -> None:
    """Creates `output_dir` for this run (emptying it first with --overwrite_output_dir) and records the arguments
    that define the run. Main process only, after `check_output_dir`."""
    if args.overwrite_output_dir and output_dir.exists():
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    record = output_dir / "run_args.json"
    if not record.exists():
        record.write_text(json.dumps(_run_defining(args), indent=2))


def _run_defining(args: Arguments) -> dict:
    return {k: v for k, v in asdict(args).items() if k not in _RUN_NEUTRAL}


@contextlib.contextmanager
def atomic_directory(directory: Path) -> Iterator[Path]:
    """Yields a fresh staging path; on success it replaces `directory` with it. A kill at any point leaves either
    the old or the new directory in place (or the old one under `.old`, which `restore_directory` puts back)."""
    directory = Path(directory)
    restore_directory(directory)
    staging, old = directory.with_name(directory.name + ".staging"), directory.with_name(directory.name + ".old")
    shutil.rmtree(staging, ignore_errors=True)
    yield staging
    if directory.exists():
        directory.rename(old)
    staging.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def restore_directory(directory: Path) -> None:
    """Puts back a directory left under `.old` by a kill between the two renames of `atomic_directory`."""
    old = directory.with_name(directory.name + ".old")
    if not directory.exists() and old.exists():
        old.rename(directory)


def save_confusion_matrix(confusion: list[list[int]], label_names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(confusion)
    figure, axes = plt.subplots(figsize=(1.2 * len(label_names) + 2, 1.2 * len(label_names) + 1.5))
    axes.imshow(matrix, cmap="Blues")
    for (row, column), count in np.ndenumerate(matrix):
        colour = "white" if count > matrix.max() / 2 else "black"
        axes.text(column, row, str(count), ha="center", va="center", color=colour)
    axes.set_xticks(range(len(label_names)), label_names, rotation=45, ha="right")
    axes.set_yticks(range(len(label_names)), label_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("reference")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def summarise(results: dict[str, dict], args: Arguments, data: FoldData, accelerator) -> dict:
    """Per-fold and mean +- std (sample std over folds) of WA, UA and macro-F1, with the configuration."""
    import accelerate
    import torch
    import transformers

    scored = {fold: outcome for fold, outcome in results.items() if "test" in outcome}
    summary = {"dataset": data.name, "classes": data.label_names, "folds": scored, "mean": {}, "std": {}}
    for condition in ("test", "test_audio_only", "test_text_only"):
        for key in ("wa", "ua", "macro_f1"):
            values = [outcome[condition][key] for outcome in scored.values() if condition in outcome]
            if values:
                name = f"{condition}_{key}"
                summary["mean"][name] = float(np.mean(values))
                summary["std"][name] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    summary["configuration"] = asdict(args)
    summary["environment"] = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "datasets": datasets.__version__,
        "python": platform.python_version(),
        "num_processes": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision,
        "device": str(accelerator.device),
    }
    summary["table"] = _results_table(summary)
    return summary


def _results_table(summary: dict) -> str:
    def cell(outcome: dict, condition: str, key: str) -> str:
        return f"{100 * outcome[condition][key]:.2f}" if condition in outcome else "-"

    lines = [
        "| fold | WA | UA | macro-F1 | audio-only WA / UA | text-only WA / UA |",
        "|---|---|---|---|---|---|",
    ]
    for fold, outcome in summary["folds"].items():
        lines.append(
            f"| {fold} | {cell(outcome, 'test', 'wa')} | {cell(outcome, 'test', 'ua')} | "
            f"{cell(outcome, 'test', 'macro_f1')} | {cell(outcome, 'test_audio_only', 'wa')} / "
            f"{cell(outcome, 'test_audio_only', 'ua')} | {cell(outcome, 'test_text_only', 'wa')} / "
            f"{cell(outcome, 'test_text_only', 'ua')} |"
        )
    mean, std = summary["mean"], summary["std"]

    def average(name: str) -> str:
        return f"{100 * mean[name]:.2f} ± {100 * std[name]:.2f}" if name in mean else "-"

    lines.append(
        f"| mean ± std | {average('test_wa')} | {average('test_ua')} | {average('test_macro_f1')} | "
        f"{average('test_audio_only_wa')} / {average('test_audio_only_ua')} | "
        f"{average('test_text_only_wa')} / {average('test_text_only_ua')} |"
    )
    return "\n".join(lines)


def write_model_card(output_dir: Path, summary: dict, args: Arguments) -> None:
    """README.md with the results table and `model-index` eval results (leave-one-session-out means)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    name = args.hub_model_id or output_dir.name
    results = []
    for key, metric_type, metric_name in (("wa", "accuracy", "WA"), ("ua", "recall", "UA"), ("macro_f1", "f1", "F1")):
        if f"test_{key}" in summary["mean"]:
            results.append(
                EvalResult(
                    task_type="audio-classification",
                    task_name="Multimodal emotion recognition",
                    dataset_type="iemocap" if args.data_dir else args.dataset,
                    dataset_name=summary["dataset"],
                    metric_type=metric_type,
                    metric_name=f"{metric_name} (leave-one-session-out mean)",
                    metric_value=round(summary["mean"][f"test_{key}"], 4),
                )
            )
    data = ModelCardData(
        library_name="transformers",
        tags=["audio-classification", "emotion-recognition", "multimodal", "wav2vec2", "bert", "mer"],
        model_name=name,
        eval_results=results or None,
    )
    body = f"""
# {name}

MER: {args.audio_model} hears the speech, {args.text_model} reads the transcript, and cross-modal attention fuses
them, trained with two auxiliary tasks (cross-pair emotion prediction and emotion consistency).

Trained and tested leave-one-out on {summary["dataset"]} ({len(summary["folds"])} folds; each fold's epoch chosen by
the UA of a validation slice of its training folds, never by its test fold). Classes: {", ".join(summary["classes"])}.

{summary["table"]}

WA: accuracy; UA: mean per-class recall. Audio-only / text-only: the same model with the transcript emptied / the
audio silenced.

## Use

```python
from transformers import AutoModel, AutoProcessor

model = AutoModel.from_pretrained("{name}", trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained("{name}", trust_remote_code=True)
inputs = processor(audio=waveform, text=transcript, sampling_rate=rate)
probabilities = model(**inputs).logits.softmax(-1)
```
"""
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")
    card.save(output_dir / "README.md")


def push_model_to_hub(model_dir: Path, card: Path, repo_id: str, private: bool = False) -> str:
    """Uploads a saved model directory (weights, config, remote code, processor) with the run's model card, as one
    commit that adds exactly these files."""
    from huggingface_hub import CommitOperationAdd, HfApi

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists():
        raise ValueError(f"No saved model in {model_dir}: was that fold trained?")
    api = HfApi()
    url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    files = sorted(path for path in model_dir.rglob("*") if path.is_file() and path.name != "README.md")
    operations = [CommitOperationAdd(path.relative_to(model_dir).as_posix(), str(path)) for path in files]
    operations.append(CommitOperationAdd("README.md", str(card)))
    api.create_commit(repo_id, operations, commit_message="Upload MER model", repo_type="model")
    return str(url)
