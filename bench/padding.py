"""Padding waste of training batches: the share of audio samples in a batch that are padding.

    .venv/bin/python -m bench.padding [--quick] [--batch-sizes 4 8 16] [--epochs 5]

IEMOCAP-sized sets of utterance lengths (5531, drawn from its length distribution, bench.workload.sample_utterances)
are cropped to train.py's `max_audio_seconds`, as its collator crops them, and cut into batches in the order of
`mer.training.data.LengthGroupedSampler`: with length grouping (train.py's default, the sampler's default
mega-batches) and without (one batch per mega-batch: random batches, what `--group_by_length false` does). The
padding share `mer.training.data.padding_share` is 1 - real samples / (batch size x longest item), summed over the
epoch; the table gives its mean over `--epochs` epochs (sampler orders). No model runs: this costs seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import math

import numpy as np

from bench.measure import resolve_device
from bench.record import base_parser, machine_info, markdown_table, settle_arguments, write_report
from bench.workload import IEMOCAP_4CLASS, SAMPLING_RATE, sample_utterances, training_default
from mer.training.data import LengthGroupedSampler, evaluation_batches, padding_share

__all__ = ["main", "run"]

PADDING_TARGET = 0.05  # with length grouping


def epoch_padding(lengths: list[int], batch_size: int, mega_batches: int, seed: int, epochs: int) -> list[float]:
    """Padding share of each of `epochs` epochs of `LengthGroupedSampler` order."""
    sampler = LengthGroupedSampler(lengths, batch_size, seed=seed, mega_batches=mega_batches)
    shares = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        shares.append(padding_share(lengths, list(sampler), batch_size))
    return shares


def run(args: argparse.Namespace) -> dict:
    """Runs the benchmark described in the module docstring and writes its record to `args.out`."""
    machine = machine_info(resolve_device("cpu"))
    max_seconds = training_default("max_audio_seconds")
    grouped_mega_batches = inspect.signature(LengthGroupedSampler).parameters["mega_batches"].default
    durations, _ = sample_utterances(args.num_utterances, args.seed)
    lengths = [int(round(min(d, max_seconds) * SAMPLING_RATE)) for d in durations]
    cropped = float(np.mean(durations > max_seconds))

    results, rows = {"batch_sizes": {}}, []
    for batch_size in args.batch_sizes:
        entry = {}
        for name, mega in (("length_grouped", grouped_mega_batches), ("random", 1)):
            shares = epoch_padding(lengths, batch_size, mega, args.seed, args.epochs)
            entry[name] = {"mean": float(np.mean(shares)), "max": float(np.max(shares)), "epochs": shares}
        # Evaluation batches (train.py's whole_utterance_loader): whole utterances, longest first.
        whole = [int(round(d * SAMPLING_RATE)) for d in durations]
        order = [index for batch in evaluation_batches(whole, batch_size) for index in batch]
        entry["sorted_whole_utterances"] = padding_share(whole, order, batch_size)
        entry["meets_target"] = entry["length_grouped"]["mean"] <= PADDING_TARGET
        results["batch_sizes"][str(batch_size)] = entry
        rows.append(
            [
                batch_size,
                f"{100 * entry['length_grouped']['mean']:.2f}%",
                f"{100 * entry['random']['mean']:.1f}%",
                f"{100 * entry['sorted_whole_utterances']:.2f}%",
                "yes" if entry["meets_target"] else "no",
            ]
        )
    results["target"] = PADDING_TARGET
    results["target_met"] = all(entry["meets_target"] for entry in results["batch_sizes"].values())
    table = markdown_table(
        [
            "batch size",
            f"length-grouped ({grouped_mega_batches} batches per mega-batch)",
            "random batches",
            "evaluation (sorted, whole)",
            "<= 5%",
        ],
        rows,
    )
    settings = {
        "quick": args.quick,
        "num_utterances": args.num_utterances,
        "length_distribution": dataclasses.asdict(IEMOCAP_4CLASS),
        "sampled_mean_seconds": float(np.mean(durations)),
        "sampled_percentiles_50_90_99": [float(np.percentile(durations, q)) for q in (50, 90, 99)],
        "max_audio_seconds": max_seconds,
        "share_cropped": cropped,
        "epochs": args.epochs,
        "mega_batches_grouped": grouped_mega_batches,
        "batches_per_epoch": {str(b): math.ceil(len(lengths) / b) for b in args.batch_sizes},
    }
    return write_report(args.out, "padding", machine, settings, results, table)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__, "padding", model_options=False)
    parser.add_argument("--num-utterances", type=int, default=None, help="Utterances per epoch (default 5531).")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 8, 16], help="Batch sizes to compare.")
    parser.add_argument("--epochs", type=int, default=None, help="Sampler epochs averaged (default 5; quick 2).")
    return settle_arguments(parser.parse_args(argv), num_utterances=(IEMOCAP_4CLASS.count, 200), epochs=(5, 2))


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point; returns the written record."""
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
