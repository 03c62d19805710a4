"""What a run reports: the results summary and table, the confusion-matrix picture, the model card, the Hub upload."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .arguments import Arguments

__all__ = [
    "CONDITIONS",
    "push_model_to_hub",
    "record_evaluation_in_config",
    "save_confusion_matrix",
    "summarise",
    "write_model_card",
]

# The test conditions of each fold: both modalities, then each one alone (the other emptied or silenced).
CONDITIONS = {"test": "both", "test_audio_only": "audio", "test_text_only": "text"}


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


def summarise(
    results: dict[str, dict], args: Arguments, corpus_name: str, label_names: list[str], protocol: str, accelerator
) -> dict:
    """Per-fold and mean +- std (sample std over folds) of WA, UA and macro-F1, with the protocol and configuration."""
    import accelerate
    import datasets
    import torch
    import transformers

    scored = {fold: outcome for fold, outcome in results.items() if "test" in outcome}
    summary = {"dataset": corpus_name, "classes": label_names, "protocol": protocol, "folds": scored}
    summary.update(mean={}, std={})
    for condition in CONDITIONS:
        for key in ("wa", "ua", "macro_f1"):
            values = [outcome[condition][key] for outcome in scored.values() if condition in outcome]
            if values:
                name = f"{condition}_{key}"
                summary["mean"][name] = float(np.mean(values))
                summary["std"][name] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    summary["configuration"] = vars(args).copy()
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

Trained and tested on {summary["dataset"]}. Classes: {", ".join(summary["classes"])}.

Protocol: {summary["protocol"]}
{_validation_speakers(summary["folds"])}
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


def _validation_speakers(folds: dict[str, dict]) -> str:
    """A line naming each fold's validation speakers (speaker validation), or nothing."""
    held = {
        fold: outcome["validation_speakers"] for fold, outcome in folds.items() if outcome.get("validation_speakers")
    }
    if not held:
        return ""
    return "Validation speakers: " + "; ".join(f"{fold}: {', '.join(names)}" for fold, names in held.items()) + ".\n"


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


def record_evaluation_in_config(
    model_dir: Path, outcome: dict, evaluated_on: str, training_seconds: Sequence[float] = ()
) -> None:
    """Writes a fold's test scores (`outcome`: condition -> metrics) into its published model's config as
    `evaluation`, so that whoever loads the model (the Space, for one) knows what each condition is worth, and the
    lengths of the training utterances as the model saw them (`training_seconds`, after cropping) as
    `training_utterance_seconds` (5th percentile, median, 95th percentile), so that a timeline cuts long recordings
    into segments of lengths the model knows. Replaces the file rather than rewriting it: the checkpoint's copy is a
    hard link to the same data."""
    config_path = Path(model_dir) / "config.json"
    config = json.loads(config_path.read_text())
    config["evaluation"] = {"evaluated_on": evaluated_on}
    for condition, scores in outcome.items():
        config["evaluation"][condition] = {key: scores[key] for key in ("wa", "ua", "num_examples")}
    if len(training_seconds):
        p05, median, p95 = np.percentile(np.asarray(training_seconds, dtype=float), [5, 50, 95])
        config["training_utterance_seconds"] = {"p05": round(p05, 3), "median": round(median, 3), "p95": round(p95, 3)}
    staging = config_path.with_suffix(".json.staging")
    staging.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    os.replace(staging, config_path)
