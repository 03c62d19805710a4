"""What a run reports: the results summary and table, the confusion-matrix picture, the model card, the Hub upload."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mer.training.arguments import Arguments
from mer.training.baseline import PROBE_CONDITIONS
from mer.training.dimensions import DIMENSION_SCORES, pool_dimension_scores
from mer.training.protocol import predicted_classes
from modeling_mer import MERConfig

__all__ = [
    "SCORES",
    "Condition",
    "cpu_model",
    "hardware",
    "json_text",
    "push_model_to_hub",
    "record_evaluation_in_config",
    "save_confusion_matrix",
    "summarise",
    "evaluation_conditions",
    "write_model_card",
]

# The scores of every condition, and their names in tables.
SCORES = {"wa": "WA", "ua": "UA", "micro_f1": "micro-F1", "macro_f1": "macro-F1"}


def json_text(value, indent: int = 2) -> str:
    """`value` as standard JSON: a score that is not a number (the CCC of a dimension with fewer than two ratings,
    Pearson's r of a constant) becomes null, which every JSON reader takes, where Python's default writes `NaN`,
    which `jq`, JavaScript and strict parsers refuse."""

    def finite(item):
        if isinstance(item, float) and not math.isfinite(item):
            return None
        if isinstance(item, dict):
            return {key: finite(inner) for key, inner in item.items()}
        if isinstance(item, (list, tuple)):
            return [finite(inner) for inner in item]
        return item

    return json.dumps(finite(value), indent=indent, allow_nan=False)


@dataclass(frozen=True)
class Condition:
    """How a test fold is presented to the model: which modality is kept (None: both) and whose transcripts."""

    keep_only: str | None
    transcripts: str  # "gold" or "asr"

    def __str__(self) -> str:
        words = "gold transcripts" if self.transcripts == "gold" else "ASR transcripts"
        return {None: f"speech + {words}", "audio": "speech only", "text": f"{words} only"}[self.keep_only]


def evaluation_conditions(transcripts: str, ablations: bool) -> dict[str, Condition]:
    """The conditions each fold is tested in, by name: `test` (both modalities, with the transcripts the model was
    trained on), with `ablations` each modality alone (the other emptied or silenced), and with `--transcripts both`
    the same on speech recognition's transcripts (`test_asr`, `test_asr_text_only`)."""
    trained_on = "asr" if transcripts == "asr" else "gold"
    conditions = {"test": Condition(None, trained_on)}
    if ablations:
        conditions["test_audio_only"] = Condition("audio", trained_on)
        conditions["test_text_only"] = Condition("text", trained_on)
    if transcripts == "both":
        conditions["test_asr"] = Condition(None, "asr")
        if ablations:
            conditions["test_asr_text_only"] = Condition("text", "asr")
    return conditions


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
    results: dict[int, dict[str, dict]], args: Arguments, corpus, protocol: str, accelerator, metric, asr=None
) -> dict:
    """The run's results on `corpus` (a `mer.training.folds.Corpus`) from `results` (seed -> fold -> the fold's
    record):

    - `folds`: each fold's record (with several seeds: its scores averaged over seeds, and each seed's record);
    - `averaged`: per condition and score, the mean over folds with the sample std over folds (of the fold scores
      averaged over seeds) and over seeds (of the seed scores averaged over folds);
    - `pooled`: per condition and score, the score of every test utterance taken together (summed confusion
      matrices), with its std over seeds;
    - `dimensions`, for a run that trains them: per condition, dimension and score (CCC, r, MAE), the mean over
      folds and the pooled score, as for the classes, and the unrated test utterances left out;
    - `asr`: speech recognition's model and word error rate per fold, when it made transcripts;
    - the protocol, the tables, the configuration and the versions.
    """
    import accelerate
    import datasets
    import torch
    import transformers

    label_names = predicted_classes(args, corpus)
    seeds = sorted(results)
    known = {name: str(c) for name, c in evaluation_conditions(args.transcripts, args.ablations).items()}
    known |= PROBE_CONDITIONS
    scored = {
        seed: {fold: record for fold, record in results[seed].items() if any(name in record for name in known)}
        for seed in seeds
    }
    fold_names = list(scored[seeds[0]])
    tested = scored[seeds[0]][fold_names[0]] if fold_names else {}
    conditions = {name: description for name, description in known.items() if name in tested}
    summary = {
        "dataset": corpus.name,
        "classes": label_names,
        "protocol": protocol,
        "standard_folds": corpus.emobox_name is not None,
        "transcripts": args.transcripts,
        "seeds": seeds,
        "conditions": conditions,
        "folds": _fold_scores(scored, fold_names, conditions) if len(seeds) > 1 else dict(scored[seeds[0]]),
        "averaged": {},
        "pooled": {},
    }
    summary["averaged"], summary["pooled"] = _combine(scored, fold_names, conditions, metric, label_names)
    if getattr(corpus, "dimensions", None):
        summary["dimensions"] = _combine_dimensions(scored, fold_names, conditions, corpus.dimensions)
    if any("corpora" in record for folds in scored.values() for record in folds.values()):
        summary["corpora"] = _per_corpus(scored, conditions, metric, label_names, getattr(corpus, "dimensions", None))
    if asr is not None:
        summary["asr"] = asr
    checks = {name: part.check.to_dict() for name, part in corpus.parts.items() if part.check is not None}
    if checks:  # each public corpus's copy against its release
        summary["release_checks"] = checks
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
        "hardware": hardware(accelerator.device),
    }
    summary["training"] = training_time(results)
    summary["against_probe"] = against_probe(summary)
    summary["table"] = results_table(summary)
    return summary


def cpu_model() -> str:
    """The processor's name as the kernel reports it (e.g. `AMD EPYC 7B13`), else what Python knows of it."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def hardware(device) -> str:
    """What a process computes on, in words: the GPU's name, or the CPU's with its logical cores."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()} CPU, {os.cpu_count()} logical cores"


def training_time(results: dict[int, dict[str, dict]]) -> dict:
    """The epochs trained over every seed and fold of `results` and their time (training and validation, as each
    fold's history records it; a resumed fold counts the epochs of every attempt once), and the folds counted."""
    epochs = [epoch for folds in results.values() for record in folds.values() for epoch in record.get("history", [])]
    timed = [epoch["seconds"] for epoch in epochs if epoch.get("seconds") is not None]
    folds = sum(1 for folds in results.values() for record in folds.values() if record.get("history"))
    return {"epochs": len(epochs), "folds": folds, "seconds": float(sum(timed)) if timed else None}


def training_line(summary: dict) -> str:
    """One sentence: how long training took, on what (empty for a run that trained nothing)."""
    training, environment = summary.get("training") or {}, summary["environment"]
    if not training.get("epochs") or training.get("seconds") is None:
        return ""
    processes = environment["num_processes"]
    return (
        f"Training: {training['epochs']} epochs over {training['folds']} fold runs, "
        f"{training['seconds'] / 60:.0f} min of training and validation on {environment.get('hardware', 'unknown')}"
        f" ({processes} process{'es' if processes > 1 else ''}, {environment['device']}, mixed precision "
        f"{environment['mixed_precision']})."
    )


def against_probe(summary: dict) -> dict | None:
    """Fine-tuned MER (both modalities) against the best probe condition, by UA and WA averaged over folds: each
    one's score and MER's margin (positive: fine-tuning beat the linear read-out). The probe condition is the one
    that scores best on the test folds, a choice that can only flatter the probe. None without both."""
    probes = [name for name in summary["conditions"] if name in PROBE_CONDITIONS]
    if "test" not in summary["conditions"] or not probes:
        return None
    averaged = summary["averaged"]
    best = max(probes, key=lambda name: averaged[f"{name}_ua"]["mean"])
    comparison = {"probe": best, "probe_description": PROBE_CONDITIONS[best]}
    for key in ("ua", "wa"):
        mer, probe = averaged[f"test_{key}"]["mean"], averaged[f"{best}_{key}"]["mean"]
        comparison |= {f"mer_{key}": mer, f"probe_{key}": probe, f"margin_{key}": mer - probe}
    return comparison


def against_probe_line(summary: dict) -> str:
    """One sentence: did fine-tuning beat the linear read-out of the same encoders, and by how much."""
    comparison = summary.get("against_probe")
    if not comparison:
        return ""
    margin = 100 * comparison["margin_ua"]
    verdict = "beat" if margin > 0 else "did not beat"
    mer_ua, probe_ua = 100 * comparison["mer_ua"], 100 * comparison["probe_ua"]
    mer_wa, probe_wa = 100 * comparison["mer_wa"], 100 * comparison["probe_wa"]
    return (
        f"Fine-tuned MER {verdict} the best frozen-feature probe on the same folds "
        f"({comparison['probe_description']}, the best of the probes on these test folds): UA {mer_ua:.2f} against "
        f"{probe_ua:.2f} ({margin:+.2f} points), WA {mer_wa:.2f} against {probe_wa:.2f} (means over folds)."
    )


def _combine(scored, fold_names: list[str], conditions, metric, label_names: list[str]) -> tuple[dict, dict]:
    """Per condition and score: the mean over folds (std over folds and over seeds), and the pooled score (std over
    seeds). `scored`: seed -> fold -> condition -> scores. Nothing without `label_names` (a dimensions-only
    model)."""
    seeds = sorted(scored)
    averaged, pooled = {}, {}
    if not label_names:
        return averaged, pooled
    for condition in conditions:
        for key in SCORES:
            averaged[f"{condition}_{key}"] = _over_folds_and_seeds(
                [[scored[seed][fold][condition][key] for fold in fold_names] for seed in seeds]
            )
        together = [
            _pooled(metric, [scored[seed][fold][condition] for fold in fold_names], label_names) for seed in seeds
        ]
        for key in SCORES:
            pooled[f"{condition}_{key}"] = _over_seeds([scores[key] for scores in together])
    return averaged, pooled


def _combine_dimensions(scored, fold_names: list[str], conditions, dimensions: list[str]) -> dict:
    """`_combine` for the dimensions, under keys ``<condition>_<dimension>_<score>``: the mean over folds, and the
    score of the pooled test utterances (from each fold's moments), with the unrated ones they left out."""
    seeds = sorted(scored)
    averaged, pooled, unrated = {}, {}, {}
    for condition in conditions:
        if "dimensions" not in scored[seeds[0]][fold_names[0]][condition]:  # the probe predicts classes only
            continue
        for name in dimensions:
            folds = [[scored[seed][fold][condition]["dimensions"][name] for fold in fold_names] for seed in seeds]
            together = [pool_dimension_scores(by_fold) for by_fold in folds]
            for key in DIMENSION_SCORES:
                averaged[f"{condition}_{name}_{key}"] = _over_folds_and_seeds([[f[key] for f in s] for s in folds])
                pooled[f"{condition}_{name}_{key}"] = _over_seeds([scores[key] for scores in together])
            unrated[f"{condition}_{name}"] = together[0]["num_missing"]
    return {"names": list(dimensions), "averaged": averaged, "pooled": pooled, "unrated_test_utterances": unrated}


def _over_folds_and_seeds(grid: list[list[float]]) -> dict:
    """A score of every seed (rows) and fold (columns): its mean, the std over folds of the seeds' mean, and the std
    over seeds of the folds' mean."""
    grid = np.asarray(grid, dtype=np.float64)
    return {
        "mean": float(grid.mean()),
        "std_over_folds": _std(grid.mean(axis=0)),
        "std_over_seeds": _std(grid.mean(axis=1)),
    }


def _over_seeds(values: list[float]) -> dict:
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), "std_over_seeds": _std(values)}


def _per_corpus(scored, conditions, metric, label_names: list[str], dimensions: list[str] | None) -> dict[str, dict]:
    """Each corpus of a pooled run: the folds that tested it, its scores in each (averaged over seeds), and its
    scores averaged over those folds and pooled over them (`_combine`; `_combine_dimensions` for `dimensions`)."""
    seeds = sorted(scored)
    names = sorted({name for folds in scored.values() for record in folds.values() for name in record["corpora"]})
    corpora = {}
    for name in names:
        folds = [fold for fold, record in scored[seeds[0]].items() if name in record.get("corpora", {})]
        mine = {seed: {fold: scored[seed][fold]["corpora"][name] for fold in folds} for seed in seeds}
        averaged, pooled = _combine(mine, folds, conditions, metric, label_names)
        corpora[name] = {
            "folds": {
                fold: {
                    c: {k: float(np.mean([mine[s][fold][c][k] for s in seeds])) for k in SCORES}
                    for c in (conditions if label_names else [])
                }
                for fold in folds
            },
            "test_size": int(sum(mine[seeds[0]][fold][next(iter(conditions))]["num_examples"] for fold in folds)),
            "averaged": averaged,
            "pooled": pooled,
        }
        if dimensions:
            corpora[name]["dimensions"] = _combine_dimensions(mine, folds, conditions, dimensions)
    return corpora


def _std(values: np.ndarray) -> float | None:
    """The sample standard deviation; None for fewer than two values."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def _fold_scores(scored: dict[int, dict[str, dict]], fold_names: list[str], conditions) -> dict[str, dict]:
    """Per fold: each condition's scores averaged over the seeds, and each seed's record under `seeds`."""
    folds = {}
    for fold in fold_names:
        records = {seed: scored[seed][fold] for seed in scored}
        folds[fold] = {
            condition: {
                key: float(np.mean([r[condition][key] for r in records.values()]))
                for key in SCORES
                if key in records[min(records)][condition]  # none for a dimensions-only model
            }
            for condition in conditions
        }
        folds[fold]["seeds"] = records
    return folds


def _pooled(metric, outcomes: list[dict], label_names: list[str]) -> dict:
    """The scores of the test utterances of every fold together: their confusion matrices summed, scored again."""
    confusion = np.sum([outcome["confusion_matrix"] for outcome in outcomes], axis=0)
    references, predictions = np.nonzero(confusion)
    counts = confusion[references, predictions]
    return metric.compute(
        predictions=np.repeat(predictions, counts),
        references=np.repeat(references, counts),
        num_labels=len(label_names),
        label_names=label_names,
    )


def results_table(summary: dict) -> str:
    """Two Markdown tables: every fold's scores (averaged over seeds), then each condition averaged over folds and
    pooled over them, with the word error rate of speech recognition where it made transcripts."""
    if not summary["classes"]:
        return dimensions_only_table(summary)
    conditions = summary["conditions"]
    wer = summary.get("asr", {}).get("word_error_rate", {})
    main = next(iter(conditions))  # MER with both modalities; the speech probe in a run of the probe alone
    others = [name for name in conditions if name != main]
    header = ["fold", *(["ASR WER"] if wer else []), *SCORES.values()]
    header += [f"{conditions[name]}: WA / UA" for name in others]
    lines = [_row(header), _row(["---"] * len(header))]
    for fold, outcome in summary["folds"].items():
        cells = [fold, *([f"{100 * wer[fold]:.1f}" if fold in wer else "-"] if wer else [])]
        cells += [f"{100 * outcome[main][key]:.2f}" for key in SCORES]
        cells += [f"{100 * outcome[name]['wa']:.2f} / {100 * outcome[name]['ua']:.2f}" for name in others]
        lines.append(_row(cells))

    several_seeds = len(summary["seeds"]) > 1
    lines += ["", _row(["condition", "folds combined", *SCORES.values()]), _row(["---"] * (2 + len(SCORES)))]
    for name, description in conditions.items():
        averaged = [summary["averaged"][f"{name}_{key}"] for key in SCORES]
        pooled = [summary["pooled"][f"{name}_{key}"] for key in SCORES]
        lines.append(_row([description, "mean ± std over folds", *(_spread(v, "std_over_folds") for v in averaged)]))
        if several_seeds:
            lines.append(_row(["", f"mean ± std over {len(summary['seeds'])} seeds",
                               *(_spread(v, "std_over_seeds") for v in averaged)]))  # fmt: skip
        spread = "std_over_seeds" if several_seeds else None
        lines.append(
            _row(["", "pooled" + (" ± std over seeds" if spread else ""), *(_spread(v, spread) for v in pooled)])
        )
    if "dimensions" in summary:
        lines += ["", dimensions_table(summary)]
    if summary.get("against_probe"):
        lines += ["", against_probe_line(summary)]
    if "corpora" in summary:
        lines += ["", corpora_table(summary)]
    return "\n".join(lines)


def dimensions_only_table(summary: dict) -> str:
    """A dimensions-only run's tables: every fold's CCC per dimension with both modalities (averaged over seeds),
    then `dimensions_table`."""
    names = summary["dimensions"]["names"]
    lines = [_row(["fold", *(f"{name} CCC" for name in names)]), _row(["---"] * (1 + len(names)))]
    for fold, outcome in summary["folds"].items():
        by_seed = [record["test"] for record in outcome["seeds"].values()] if "seeds" in outcome else [outcome["test"]]
        cccs = [np.mean([scores["dimensions"][name]["ccc"] for scores in by_seed]) for name in names]
        lines.append(_row([fold, *(f"{value:.3f}" for value in cccs)]))
    return "\n".join([*lines, "", dimensions_table(summary)])


def dimensions_table(summary: dict) -> str:
    """Each condition and dimension: CCC averaged over folds (± std over folds) and pooled, Pearson's r and MAE
    pooled, and the test utterances without a rating (left out); then the same for each corpus of a pooled run, over
    the folds that tested it."""
    corpora = [(name, result["dimensions"]) for name, result in summary.get("corpora", {}).items()]
    header = ["condition", "dimension", "CCC (mean ± std over folds)", "CCC pooled", "r pooled", "MAE pooled"]
    header += ["unrated"]
    lines = [_row(header), _row(["---"] * len(header))]
    lines += _dimension_rows(summary["dimensions"], summary["conditions"])
    if corpora:
        lines += ["", _row(["test corpus", *header]), _row(["---"] * (1 + len(header)))]
        lines += [row for name, scores in corpora for row in _dimension_rows(scores, summary["conditions"], name)]
    return "\n".join(lines)


def _dimension_rows(dimensions: dict, conditions: dict, corpus: str | None = None) -> list[str]:
    """`dimensions_table`'s rows for one set of scores (`_combine_dimensions`), after a `corpus` cell if named."""
    rows = []
    for condition, description in conditions.items():
        for name in dimensions["names"]:
            key = f"{condition}_{name}"
            if f"{key}_ccc" not in dimensions["averaged"]:
                continue
            pooled = dimensions["pooled"]
            cells = [*([corpus] if corpus else []), description, name]
            cells.append(_spread(dimensions["averaged"][f"{key}_ccc"], "std_over_folds", 1))
            cells += [f"{pooled[f'{key}_{score}']['mean']:.3f}" for score in DIMENSION_SCORES]
            rows.append(_row(cells + [str(dimensions["unrated_test_utterances"][key])]))
    return rows


def corpora_table(summary: dict) -> str:
    """Each corpus of a pooled run, MER with both modalities and the probe: the folds that tested it, its test
    utterances, and its scores averaged over those folds and pooled over them (std over seeds with several)."""
    several_seeds = len(summary["seeds"]) > 1
    shown = [name for name in summary["conditions"] if name == "test" or name in PROBE_CONDITIONS]
    header = ["test corpus", "tested in", "utterances", "condition", "folds combined", *SCORES.values()]
    lines = [_row(header), _row(["---"] * len(header))]
    for name, result in summary["corpora"].items():
        folds = ", ".join(result["folds"])
        for condition in shown:
            for combined, table, std in (
                ("mean ± std over folds", "averaged", "std_over_folds"),
                ("pooled" + (" ± std over seeds" if several_seeds else ""), "pooled", "std_over_seeds"),
            ):
                if table == "averaged" and len(result["folds"]) == 1:
                    continue  # one fold: its mean is its pooled score
                cells = [_spread(result[table][f"{condition}_{key}"], std) for key in SCORES]
                description = (
                    "MER, " + summary["conditions"][condition]
                    if condition == "test"
                    else (summary["conditions"][condition])
                )
                lines.append(_row([name, folds, str(result["test_size"]), description, combined, *cells]))
    return "\n".join(lines)


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _spread(value: dict, std_key: str | None, scale: float = 100) -> str:
    """``mean ± std`` in percent (`scale` 100, two decimals) or as it is (`scale` 1, three decimals: CCC)."""
    std = value.get(std_key) if std_key else None
    digits = 2 if scale == 100 else 3
    text = f"{scale * value['mean']:.{digits}f}"
    return text + (f" ± {scale * std:.{digits}f}" if std is not None else "")


@dataclass(frozen=True)
class PublishedResult:
    """A published IEMOCAP figure to set a run beside, with the protocol it was measured under."""

    system: str
    transcripts: str
    protocol: str
    wa: float | None
    ua: float | None


PUBLISHED_RESULTS = (
    PublishedResult(
        "Sun, He & Han (ICASSP 2023): wav2vec 2.0 + BERT, cross-modal attention, two auxiliary tasks",
        "gold",
        "IEMOCAP, 4 classes; the folds and how they were combined are not in the public abstract",
        78.42,
        79.71,
    ),
    PublishedResult(
        "Amiriparian et al. (2021): acoustic and linguistic features, decision-level fusion",
        "ASR",
        "IEMOCAP, a speaker-independent test partition (not leave-one-session-out); UAR",
        None,
        73.8,
    ),
)


def comparison_table(summary: dict) -> str:
    """The run's fused scores beside `PUBLISHED_RESULTS`, each row with its transcripts and protocol."""
    asr = summary.get("asr")
    folds = "EmoBox's IEMOCAP folds" if summary["standard_folds"] else f"{summary['dataset']}, leave-one-fold-out"
    lines = [_row(["system", "transcripts", "data and protocol", "WA", "UA"]), _row(["---"] * 5)]
    for name, condition in summary["conditions"].items():
        if not condition.startswith("speech + "):
            continue
        transcripts = "gold"
        if "ASR" in condition and asr:
            transcripts = f"ASR: {asr['model']}, WER {100 * asr['word_error_rate_all_folds']:.1f}%"
        for combined, table in (("averaged over folds", "averaged"), ("pooled over folds", "pooled")):
            wa, ua = (summary[table][f"{name}_{key}"]["mean"] for key in ("wa", "ua"))
            row = ["MER, this run", transcripts, f"{folds}; {combined}", f"{100 * wa:.2f}", f"{100 * ua:.2f}"]
            lines.append(_row(row))
    for published in PUBLISHED_RESULTS:
        scores = [f"{value:.2f}" if value is not None else "not reported" for value in (published.wa, published.ua)]
        lines.append(_row([published.system, published.transcripts, published.protocol, *scores]))
    if asr:
        empty = sum(asr.get("empty_transcripts", {}).values())
        lines += [
            "",
            f"Speech recognition: {asr['model']} ({asr.get('backend', 'auto')}), word error rate "
            f"{100 * asr['word_error_rate_all_folds']:.1f}% against the gold transcripts over all folds; {empty} "
            "utterance(s) in which it heard no words kept an empty transcript.",
        ]
    if summary["standard_folds"]:
        caveat = "This run used IEMOCAP's standard folds; a published row compares like with like only where its "
        caveat += "protocol says the same."
    else:
        caveat = f"This run is not on IEMOCAP's standard folds ({summary['dataset']}): its figures are not "
        caveat += "comparable with the published ones, which show where the field stands."
    return "\n".join(lines) + "\n\n" + caveat


def write_model_card(output_dir: Path, summary: dict, args: Arguments) -> None:
    """README.md: the protocol, the results tables, the comparison with published results, and `model-index` eval
    results (the fused scores averaged over folds, for each transcript condition)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    name = args.hub_model_id or output_dir.name
    results = []

    def result(task: str, dataset: str, dataset_name: str, metric_type: str, metric_name: str, value: float) -> None:
        results.append(
            EvalResult(
                task_type="audio-classification",
                task_name=task,
                dataset_type=dataset,
                dataset_name=dataset_name,
                metric_type=metric_type,
                metric_name=metric_name,
                metric_value=round(value, 4),
            )
        )

    metric_types = {"wa": "accuracy", "ua": "recall", "micro_f1": "f1", "macro_f1": "f1"}
    if not summary["classes"]:  # a dimensions-only model: its CCC alone
        metric_types = {}
    dataset_type = "iemocap" if args.data_dir else (args.dataset or "+".join(summary.get("corpora", {})))
    dimensions = summary.get("dimensions", {})
    for condition, description in summary["conditions"].items():
        if not description.startswith("speech + "):
            continue
        for key, metric_type in metric_types.items():
            value = summary["averaged"][f"{condition}_{key}"]["mean"]
            label = f"{SCORES[key]}, {description} (mean over folds)"
            result("Multimodal emotion recognition", dataset_type, summary["dataset"], metric_type, label, value)
        for dimension in dimensions.get("names", []):  # the fused model's CCC per dimension
            value = dimensions["averaged"][f"{condition}_{dimension}_ccc"]["mean"]
            label = f"CCC of {dimension}, {description} (mean over folds)"
            result("Dimensional emotion recognition", dataset_type, summary["dataset"], "ccc", label, value)
    for corpus, scores in summary.get("corpora", {}).items():  # each corpus of a pooled run, pooled over its folds
        for key, metric_type in metric_types.items() if scores["pooled"] else ():
            label = f"{SCORES[key]}, {summary['conditions']['test']} (pooled over its folds)"
            value = scores["pooled"][f"test_{key}"]["mean"]
            result("Multimodal emotion recognition", corpus, corpus, metric_type, label, value)
    data = ModelCardData(
        library_name="transformers",
        tags=["audio-classification", "emotion-recognition", "multimodal", "wav2vec2", "bert", "mer"],
        model_name=name,
        eval_results=results or None,
    )
    classes = summary["classes"]
    learnt = f"Classes: {', '.join(classes)}." if classes else "A dimensions-only model (no classes)."
    modalities = "Speech only / transcripts only: the same model with the transcript emptied / the audio silenced."
    combined = "Averaged: the mean of the fold scores; pooled: every test utterance scored together."
    probe = (
        "Linear probe: a logistic regression on the pretrained towers' frozen features (mean and standard deviation "
        "over time of the last layer), trained on the same folds, its regularisation chosen on the same validation "
        "speakers: what the encoders give without fine-tuning."
    )
    scores = "WA: accuracy; UA: mean per-class recall; micro-F1 equals WA for single-label classes."
    said = [scores, modalities, probe, combined] if classes else [modalities, combined]
    reading = textwrap.fill(" ".join(said), width=119)
    compared = f"\n## Compared with published results\n\n{comparison_table(summary)}\n" if classes else ""
    answer = (
        "probabilities = model(**inputs).logits.softmax(-1)" if classes else "dimensions = model(**inputs).dimensions"
    )
    body = f"""
# {name}

MER: {args.audio_model} hears the speech, {args.text_model} reads the transcript, and cross-modal attention fuses
them{", trained with two auxiliary tasks (cross-pair emotion prediction and emotion consistency)" if classes else ""}.

Trained and tested on {summary["dataset"]}. {learnt}{_dimensions_line(summary)}

Protocol: {summary["protocol"]}
{_validation_speakers(summary["folds"])}
{summary["table"]}

{training_line(summary)}

{reading}
{compared}
## Use

```python
from transformers import AutoModel, AutoProcessor

model = AutoModel.from_pretrained("{name}", trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained("{name}", trust_remote_code=True)
inputs = processor(audio=waveform, text=transcript, sampling_rate=rate)
{answer}
```
"""
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")
    card.save(output_dir / "README.md")


def _dimensions_line(summary: dict) -> str:
    """What the card says of the dimensions the model predicts, or nothing."""
    names = summary.get("dimensions", {}).get("names")
    if not names:
        return ""
    return (
        f" Dimensions: {', '.join(names)}, each on [0, 1] (0 the lowest rating of the corpus's scale, 1 the highest), "
        "as `outputs.dimensions`; CCC: Lin's concordance correlation coefficient, r: Pearson's, MAE: mean absolute "
        "error on [0, 1]."
    )


def _validation_speakers(folds: dict[str, dict]) -> str:
    """A line naming each fold's validation speakers (speaker validation; per seed with several), or nothing."""
    held = {}
    for fold, outcome in folds.items():
        by_seed = outcome.get("seeds") or {None: outcome}
        for seed, record in by_seed.items():
            if record.get("validation_speakers"):
                held[fold if seed is None else f"{fold} seed {seed}"] = record["validation_speakers"]
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


def _headline_scores(scores: dict) -> dict:
    """A condition's scores as a model's config keeps them: WA and UA (none for a dimensions-only model), the
    utterances, and each dimension's scores."""
    kept = {key: scores[key] for key in ("wa", "ua", "num_examples") if key in scores}
    if "dimensions" in scores:
        kept["dimensions"] = {
            name: {key: value[key] for key in (*DIMENSION_SCORES, "num_examples")}
            for name, value in scores["dimensions"].items()
        }
    return kept


def record_evaluation_in_config(
    model_dir: Path,
    outcome: dict,
    evaluated_on: str,
    training_seconds: Sequence[float] = (),
    conditions: dict[str, str] | None = None,
    trained_on: str | None = None,
    by_corpus: dict[str, dict] | None = None,
) -> None:
    """Writes a fold's test scores (`outcome`: condition -> metrics) into its published model's config as
    `evaluation`, so that whoever loads the model (the Space, for one) knows what each condition is worth, and the
    lengths of the training utterances as the model saw them (`training_seconds`, after cropping) as
    `training_utterance_seconds` (5th percentile, median, 95th percentile), so that a timeline cuts long recordings
    into segments of lengths the model knows. `conditions` (name -> description, e.g. "speech + ASR transcripts")
    say what each condition was, `trained_on` what the model learnt from, and `by_corpus` (corpus -> condition ->
    metrics) the scores of each corpus of a pooled test. Replaces the file rather than rewriting it: the
    checkpoint's copy is a hard link to the same data."""
    config_path = Path(model_dir) / "config.json"
    evaluation = {"evaluated_on": evaluated_on}
    for condition, scores in outcome.items():
        evaluation[condition] = _headline_scores(scores)
        if conditions and condition in conditions:
            evaluation[condition]["condition"] = conditions[condition]
    if trained_on:
        evaluation["trained_on"] = trained_on
    if by_corpus:
        evaluation["corpora"] = {
            corpus: {c: _headline_scores(scores) for c, scores in scores_by_condition.items()}
            for corpus, scores_by_condition in by_corpus.items()
        }
    records = {"evaluation": json.loads(json_text(evaluation))}  # a NaN score as null
    if len(training_seconds):
        percentiles = np.percentile(np.asarray(training_seconds, dtype=float), [5, 50, 95])
        records["training_utterance_seconds"] = {
            key: round(float(value), 3) for key, value in zip(("p05", "median", "p95"), percentiles, strict=True)
        }
    # Through MERConfig, which declares and checks both records, rather than into the JSON by hand.
    config = MERConfig.from_dict({**json.loads(config_path.read_text()), **records})
    staging = config_path.with_suffix(".json.staging")
    staging.write_text(config.to_json_string())
    os.replace(staging, config_path)
