"""MER on real emotional speech: EmoDB, speaker-independent folds, MER with a Whisper tower fine-tuned by train.py,
against three references measured in the same command on the same folds.

    .venv/bin/python -m bench.emodb [--conditions ...] [--mer-args "--num_epochs 16 ..."] [--quick]

EmoDB (`--data`, default `../shared/data/emodb`: 535 utterances by 10 actors, 7 emotions, German; its README says
what was done to the audio) is split into 5 folds of two held-out speakers each, one male and one female (sorted
by speaker id and paired). Every condition trains on the other 8 speakers of a fold and is scored on the held-out
two; WA is accuracy, UA the mean per-class recall. Conditions:

- `logmel_probe`: logistic regression (standardised features, balanced class weights, C = 1) on the mean and
  standard deviation over time of each of Whisper's 80 log-mel bins;
- `whisper_probe`: the same logistic regression on the frozen Whisper encoder's last layer, averaged over the
  utterance's frames (MER's own-length encoder, so no 30 s padding is averaged in);
- `mer_tiny`: train.py with the demo's tiny random-init towers and settings (`make demo`);
- `mer_whisper`: train.py with the Whisper tower (`--whisper`, default `../shared/models/whisper-tiny.en`) and a
  tiny random-init BERT over the corpus's words as text tower (EmoDB's ten sentences are emotionally neutral: the
  emotion is in the voice). `--mer-args` replaces its train.py settings.

train.py validates on whole training speakers (its default), so no test speaker chooses anything. `--quick` runs a
few utterances of one fold with tiny towers (tests). Writes bench/results/emodb.json and prints the table.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from transformers import AutoModel, WhisperFeatureExtractor

from bench.record import REPO, base_parser, machine_info, markdown_table, run_train, settle_arguments, write_report
from mer.tiny import build_tiny_encoders, build_tiny_whisper
from modeling_mer import MERWhisperEncoder
from modeling_mer.processing_mer import resample

__all__ = ["CONDITIONS", "load_emodb", "main", "run", "speaker_folds"]

SHARED = REPO.parent / "shared"
CONDITIONS = ("logmel_probe", "whisper_probe", "mer_tiny", "mer_whisper")
RATE = 16_000
MER_TINY_ARGS = (  # the demo's settings (Makefile)
    "--num_epochs 16 --early_stopping_patience 6 --learning_rate 3e-3 --encoder_learning_rate 1e-3 --batch_size 8"
)
MER_WHISPER_ARGS = (
    "--num_epochs 16 --early_stopping_patience 6 --learning_rate 5e-4 --encoder_learning_rate 5e-5 --batch_size 8"
)


def load_emodb(root: Path) -> list[dict]:
    """The manifest's rows, each with its absolute `path`."""
    with open(root / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["path"] = str(root / row["path"])
    return rows


def speaker_folds(rows: list[dict]) -> list[list[str]]:
    """Five folds of two test speakers, one of each gender, paired in speaker-id order."""
    by_gender = {}
    for row in rows:
        by_gender.setdefault(row["gender"], set()).add(row["speaker"])
    first, second = (sorted(speakers) for speakers in by_gender.values())
    return [sorted(pair) for pair in zip(first, second, strict=True)]


def log_mel(rows: list[dict]) -> list[np.ndarray]:
    """Whisper's log-mel features `(80, frames)` of each utterance on its own length."""
    extractor = WhisperFeatureExtractor(feature_size=80)
    features = []
    for row in rows:
        wave, rate = soundfile.read(row["path"], dtype="float32", always_2d=True)
        wave = resample(torch.from_numpy(wave.mean(axis=1)), rate, RATE).numpy()
        features.append(
            extractor(wave, sampling_rate=RATE, padding="longest", return_tensors="np")["input_features"][0]
        )
    return features


def whisper_embeddings(features: list[np.ndarray], whisper: str) -> np.ndarray:
    """The frozen Whisper encoder's last layer averaged over each utterance's frames (run on its own length)."""
    encoder = MERWhisperEncoder.from_whisper(AutoModel.from_pretrained(whisper)).eval()
    with torch.inference_mode():
        return np.stack(
            [encoder(torch.from_numpy(item)[None]).last_hidden_state[0].mean(dim=0).numpy() for item in features]
        )


def probe(features: np.ndarray, labels: np.ndarray, speakers: np.ndarray, folds: list[list[str]]) -> list[dict]:
    """Per fold: WA and UA of a logistic regression trained on the other speakers."""
    scores = []
    for test_speakers in folds:
        test = np.isin(speakers, test_speakers)
        classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, class_weight="balanced"))
        classifier.fit(features[~test], labels[~test])
        predicted = classifier.predict(features[test])
        scores.append(
            {
                "wa": float((predicted == labels[test]).mean()),
                "ua": float(balanced_accuracy_score(labels[test], predicted)),
            }
        )
    return scores


def write_dataset(rows: list[dict], folds: list[list[str]], out: Path) -> Path:
    """The corpus as a `save_to_disk` folder for train.py: audio bytes, text, label, speaker, fold (1..5)."""
    import datasets

    fold_of = {speaker: number for number, pair in enumerate(folds, start=1) for speaker in pair}
    table = {
        "audio": [{"bytes": Path(row["path"]).read_bytes(), "path": Path(row["path"]).name} for row in rows],
        "text": [row["text"] for row in rows],
        "label": [row["emotion"] for row in rows],
        "speaker": [row["speaker"] for row in rows],
        "fold": [fold_of[row["speaker"]] for row in rows],
    }
    dataset = datasets.Dataset.from_dict(table).cast_column("audio", datasets.Audio())
    dataset.save_to_disk(str(out))
    return out


def train_mer(
    dataset: Path, audio_model: str, text_model: str, out: Path, settings: str, folds: list[int]
) -> list[dict]:
    """train.py on the corpus, one process; per fold the test WA and UA (both modalities)."""
    arguments = [
        "--dataset", str(dataset), "--fold_column", "fold", "--speaker_column", "speaker",
        "--audio_model", audio_model, "--text_model", text_model, "--output_dir", str(out),
        "--folds", *map(str, folds), "--num_workers", "0", "--ablations", "false", *shlex.split(settings),
    ]  # fmt: skip
    run_train(arguments, out.name)
    scores = []
    for number in folds:
        test = json.loads((out / f"fold{number}" / "metrics.json").read_text())["test"]
        scores.append({"wa": test["wa"], "ua": test["ua"]})
    return scores


def summarise(scores: list[dict]) -> dict:
    wa, ua = np.array([s["wa"] for s in scores]), np.array([s["ua"] for s in scores])
    return {"folds": scores, "wa_mean": wa.mean(), "wa_std": wa.std(), "ua_mean": ua.mean(), "ua_std": ua.std()}


def run(args: argparse.Namespace) -> dict:
    machine = machine_info(torch.device("cpu"))
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="emodb-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = load_emodb(Path(args.data))
    folds = speaker_folds(rows)
    fold_numbers = list(range(1, len(folds) + 1))
    if args.quick:  # one fold, at most three utterances per speaker and emotion
        fold_numbers, kept = [1], {}
        for row in rows:
            kept.setdefault((row["speaker"], row["emotion"]), []).append(row)
        rows = [row for group in kept.values() for row in group[:3]]
    used_folds = [folds[number - 1] for number in fold_numbers]
    labels = np.array([row["emotion"] for row in rows])
    speakers = np.array([row["speaker"] for row in rows])
    words = sorted({word.strip(".,!?").lower() for row in rows for word in row["text"].split()})
    tiny_audio, tiny_text = build_tiny_encoders(work / "encoders", words)
    whisper = str(build_tiny_whisper(work / "encoders")) if args.quick else args.whisper

    results = {}
    features = log_mel(rows) if {"logmel_probe", "whisper_probe"} & set(args.conditions) else None
    if "logmel_probe" in args.conditions:
        stats = np.stack([np.concatenate([f.mean(axis=1), f.std(axis=1)]) for f in features])
        results["logmel_probe"] = summarise(probe(stats, labels, speakers, used_folds))
    if "whisper_probe" in args.conditions:
        embeddings = whisper_embeddings(features, whisper)
        results["whisper_probe"] = summarise(probe(embeddings, labels, speakers, used_folds))
    if {"mer_tiny", "mer_whisper"} & set(args.conditions):
        dataset = write_dataset(rows, folds, work / "dataset")
        quick_settings = "--num_epochs 1 --batch_size 4"
        if "mer_tiny" in args.conditions:
            settings = quick_settings if args.quick else MER_TINY_ARGS
            scores = train_mer(dataset, str(tiny_audio), str(tiny_text), work / "mer_tiny", settings, fold_numbers)
            results["mer_tiny"] = summarise(scores)
        if "mer_whisper" in args.conditions:
            settings = quick_settings if args.quick else args.mer_args
            scores = train_mer(dataset, whisper, str(tiny_text), work / "mer_whisper", settings, fold_numbers)
            results["mer_whisper"] = summarise(scores)

    headers = [
        "condition",
        *[f"fold {n} ({'+'.join(folds[n - 1])}) UA" for n in fold_numbers],
        "WA mean ± std",
        "UA mean ± std",
    ]
    table_rows = [
        [
            name,
            *[f"{100 * s['ua']:.1f}" for s in entry["folds"]],
            f"{100 * entry['wa_mean']:.1f} ± {100 * entry['wa_std']:.1f}",
            f"{100 * entry['ua_mean']:.1f} ± {100 * entry['ua_std']:.1f}",
        ]
        for name, entry in results.items()
    ]
    table = markdown_table(headers, table_rows)
    settings = {
        "quick": args.quick,
        "data": str(args.data),
        "whisper": whisper,
        "utterances": len(rows),
        "folds": {str(n): folds[n - 1] for n in fold_numbers},
        "mer_whisper_args": args.mer_args,
        "mer_tiny_args": MER_TINY_ARGS,
        "work_dir": str(work),
    }
    return write_report(args.out, "emodb", machine, settings, results, table)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__, "emodb", model_options=False)
    parser.add_argument("--data", default=str(SHARED / "data" / "emodb"), help="EmoDB folder with manifest.csv.")
    parser.add_argument("--whisper", default=str(SHARED / "models" / "whisper-tiny.en"), help="Whisper checkpoint.")
    parser.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=list(CONDITIONS))
    parser.add_argument("--mer-args", default=MER_WHISPER_ARGS, help="train.py settings of mer_whisper.")
    parser.add_argument("--work-dir", default=None, help="Where datasets and runs go (default: a temporary folder).")
    args = settle_arguments(parser.parse_args(argv))
    if not (Path(args.data) / "manifest.csv").is_file():
        parser.error(f"--data {args.data}: no manifest.csv there (EmoDB is in the team's ../shared/data/emodb).")
    return args


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point; returns the written record."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads or torch.get_num_threads())
    return run(args)


if __name__ == "__main__":
    main()
