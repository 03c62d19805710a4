"""The data path of training: decoding, resampling, the processor and collation, against the model's appetite.

    .venv/bin/python -m bench.data_path [--quick] [--per-dialog 20] [--workers 0 1 2]
        [--training-results bench/results/training.json]

A synthetic corpus in the IEMOCAP layout (espeak-ng speech, `dataset_scripts.synthetic.generate_corpus`) is
written at 16 kHz, and a copy of it at 44.1 kHz, so that the processor has to resample. Each is loaded with
`dataset_scripts.iemocap.load_iemocap(DIR, "4class")` (the 44.1 kHz copy decoded at its own rate) and read for one
epoch exactly as train.py reads it: `UtteranceDataset` -> `DataLoader(batch_size, LengthGroupedSampler,
num_workers)` -> `MERCollator(processor, max_audio_seconds)`, with a base-size processor
(`Wav2Vec2FeatureExtractor()` and a BERT WordPiece tokenizer over the corpus's vocabulary). Throughput is
utterances and audio seconds per second over the epoch, after the first batch (whose latency, including the
workers' start, is given apart). With no workers the benchmark also splits the time between decoding and the
collator (resampling, normalisation, padding, tokenisation).

The comparison with the model uses audio seconds per second, because the synthetic utterances are shorter than
IEMOCAP's and both costs grow with the audio: the data path is not the bottleneck when it delivers more audio per
second than a training step consumes (`bench.training`'s figure for the default condition, read from
`--training-results`). On a CPU-only machine the workers share the cores with training, so the table also gives
the share of the time an inline data path (no workers) would take from a training step.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import soundfile as sf
from scipy.signal import resample_poly
from torch.utils.data import DataLoader
from transformers import BertTokenizer, Wav2Vec2FeatureExtractor

from bench.measure import resolve_device, run_model_benchmark
from bench.record import RESULTS_DIR, base_parser, machine_info, markdown_table, settle_arguments, write_report
from bench.workload import IEMOCAP_4CLASS, training_default
from dataset_scripts.iemocap import load_iemocap
from dataset_scripts.synthetic import generate_corpus, vocabulary
from mer.tiny import SPECIAL_TOKENS
from mer.training.data import LengthGroupedSampler, MERCollator, UtteranceDataset, audio_durations
from modeling_mer import MERProcessor

__all__ = ["base_processor", "main", "resampled_copy", "run"]

TRAINING_CONDITION = "frozen CNN"  # train.py's default


def base_processor() -> MERProcessor:
    """A processor like wav2vec2-base + bert-base-uncased's, built offline: `Wav2Vec2FeatureExtractor()` (16 kHz,
    per-utterance normalisation) and a lowercasing WordPiece tokenizer over the synthetic corpus's words."""
    vocab = SPECIAL_TOKENS + [token for token in vocabulary() if token not in SPECIAL_TOKENS]
    tokenizer = BertTokenizer(vocab={token: index for index, token in enumerate(vocab)}, model_max_length=512)
    return MERProcessor(feature_extractor=Wav2Vec2FeatureExtractor(), tokenizer=tokenizer)


def resampled_copy(root: Path, destination: Path, rate: int) -> Path:
    """Copies an IEMOCAP-layout corpus with every wav resampled to `rate` (16-bit PCM); returns the copy's root.
    Hidden files (macOS `._*` resource forks, which the real release has too) are copied as they are."""
    shutil.copytree(root, destination)
    for path in destination.rglob("*.wav"):
        if path.name.startswith("."):
            continue
        samples, original = sf.read(path, dtype="float64")
        divisor = np.gcd(rate, original)
        resampled = resample_poly(samples, rate // divisor, original // divisor)
        sf.write(path, np.clip(resampled, -1.0, 1.0), rate, subtype="PCM_16")
    return destination


def load_corpus(root: Path, cache_dir: Path, native_rate: bool) -> datasets.Dataset:
    """All sessions of the 4-class corpus as one dataset; `native_rate` decodes audio at the files' own rate."""
    splits = load_iemocap(root, "4class", cache_dir=cache_dir)
    dataset = datasets.concatenate_datasets([splits[name] for name in sorted(splits)])
    return dataset.cast_column("audio", datasets.Audio()) if native_rate else dataset


def read_epoch(loader: DataLoader) -> dict:
    """Iterates `loader` once; returns the first batch's latency and the throughput after it."""
    start = time.perf_counter()
    first_batch_seconds, first_count, first_samples, count, samples = None, 0, 0, 0, 0
    for batch in loader:
        size = len(batch["labels"])
        count += size
        samples += int(batch["audio_attention_mask"].sum())
        if first_batch_seconds is None:
            first_batch_seconds, first_count, first_samples = time.perf_counter() - start, size, samples
    total = time.perf_counter() - start
    rest = max(total - first_batch_seconds, 1e-9)
    rate = loader.collate_fn.processor.sampling_rate
    return {
        "utterances": count,
        "seconds": total,
        "first_batch_seconds": first_batch_seconds,
        "utterances_per_second": (count - first_count) / rest if count > first_count else count / total,
        "audio_seconds_per_second": (samples - first_samples) / rate / rest if count > first_count else 0.0,
    }


def split_inline(dataset: UtteranceDataset, collator: MERCollator, order: list[int], batch_size: int) -> dict:
    """Seconds per utterance of decoding and of the collator (resample + feature extractor + tokenizer), inline."""
    start = time.perf_counter()
    items = [dataset[index] for index in order]
    decoding = time.perf_counter() - start
    start = time.perf_counter()
    for first in range(0, len(items), batch_size):
        collator(items[first : first + batch_size])
    collating = time.perf_counter() - start
    return {
        "decode_seconds_per_utterance": decoding / len(items),
        "collate_seconds_per_utterance": collating / len(items),
    }


def training_appetite(path: Path) -> dict | None:
    """Utterances and audio seconds per second of training's default condition, from bench.training's JSON."""
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    entry = record["results"]["conditions"].get(TRAINING_CONDITION)
    if entry is None:
        return None
    return {
        "source": str(path),
        "device": record["machine"]["device"],
        "quick": record["settings"]["quick"],
        "utterances_per_second": entry["utterances_per_second"],
        "audio_seconds_per_second": entry["audio_seconds_per_second"],
    }


def run(args: argparse.Namespace) -> dict:
    """Runs the benchmark described in the module docstring and writes its record to `args.out`."""
    machine = machine_info(resolve_device("cpu"))
    batch_size, max_seconds = training_default("batch_size"), training_default("max_audio_seconds")
    processor = base_processor()
    datasets.disable_progress_bars()
    appetite = training_appetite(args.training_results)
    with tempfile.TemporaryDirectory(prefix="mer-data-path-") as scratch:
        scratch = Path(scratch)
        began = time.perf_counter()
        corpus = generate_corpus(scratch / "corpus-16k", per_dialog=args.per_dialog, seed=args.seed).path
        corpora = {
            "16 kHz wav": (corpus, False),
            "44.1 kHz wav (resampled)": (resampled_copy(corpus, scratch / "corpus-44k", 44_100), True),
        }
        preparation_seconds = time.perf_counter() - began
        results, rows = {"corpora": {}, "training": appetite}, []
        for name, (root, native_rate) in corpora.items():
            dataset = load_corpus(root, scratch / "cache", native_rate)
            durations = audio_durations(dataset)
            utterances = UtteranceDataset(dataset)
            collator = MERCollator(processor, max_audio_seconds=max_seconds)
            sampler = LengthGroupedSampler(durations, batch_size, seed=args.seed)
            entry = {
                "utterances": len(dataset),
                "mean_seconds": float(np.mean(durations)),
                "inline_split": split_inline(utterances, collator, list(sampler), batch_size),
                "workers": {},
            }
            for workers in args.workers:
                loader = DataLoader(
                    utterances, batch_size=batch_size, sampler=sampler, collate_fn=collator, num_workers=workers
                )
                entry["workers"][str(workers)] = measured = read_epoch(loader)
                if appetite is not None:
                    measured["headroom_over_training"] = (
                        measured["audio_seconds_per_second"] / appetite["audio_seconds_per_second"]
                    )
                rows.append(_row(name, workers, measured, entry, appetite))
            results["corpora"][name] = entry
    if appetite is not None:
        results["never_the_bottleneck"] = all(
            measured["headroom_over_training"] > 1.0
            for entry in results["corpora"].values()
            for measured in entry["workers"].values()
        )
    table = markdown_table(
        [
            "audio files",
            "workers",
            "utterances/s",
            "audio s/s",
            "IEMOCAP-length utterances/s",
            "first batch s",
            "decode / collate ms per utterance (inline)",
            "x training's audio s/s",
            "inline share of a training step",
        ],
        rows,
    )
    settings = {
        "quick": args.quick,
        "per_dialog": args.per_dialog,
        "batch_size": batch_size,
        "max_audio_seconds": max_seconds,
        "workers": args.workers,
        "corpus_preparation_seconds": preparation_seconds,
        "iemocap_mean_seconds": IEMOCAP_4CLASS.mean,
        "processor": "Wav2Vec2FeatureExtractor() + BertTokenizer over the synthetic vocabulary",
    }
    return write_report(args.out, "data_path", machine, settings, results, table)


def _row(name: str, workers: int, measured: dict, entry: dict, appetite: dict | None) -> list:
    split = entry["inline_split"]
    inline_cost = split["decode_seconds_per_utterance"] + split["collate_seconds_per_utterance"]
    if appetite is not None:
        headroom = f"{measured['headroom_over_training']:.3g}x"
        # Per audio second: inline data-path cost against the training step's cost.
        data_cost = inline_cost / entry["mean_seconds"]
        share = data_cost / (data_cost + 1.0 / appetite["audio_seconds_per_second"])
        share = f"{100 * share:.2f}%"
    else:
        headroom = share = "no training results"
    return [
        name,
        workers,
        measured["utterances_per_second"],
        measured["audio_seconds_per_second"],
        measured["audio_seconds_per_second"] / IEMOCAP_4CLASS.mean,
        measured["first_batch_seconds"],
        f"{1000 * split['decode_seconds_per_utterance']:.2f} / {1000 * split['collate_seconds_per_utterance']:.2f}",
        headroom,
        share,
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__, "data_path", model_options=False)
    parser.add_argument("--per-dialog", type=int, default=None, help="Utterances per dialog (20 dialogs; default 20).")
    parser.add_argument("--workers", type=int, nargs="+", default=None, help="DataLoader workers (default 0 1 2).")
    parser.add_argument(
        "--training-results",
        type=Path,
        default=RESULTS_DIR / "training.json",
        help="bench.training's JSON, for the comparison (default: %(default)s).",
    )
    return settle_arguments(parser.parse_args(argv), per_dialog=(20, 2), workers=([0, 1, 2], [0, 1]))


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point; returns the written record."""
    return run_model_benchmark(run, parse_args(argv))


if __name__ == "__main__":
    main()
