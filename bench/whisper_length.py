"""What running Whisper's encoder on the utterance's own length saves against padding every input to 30 s.

    .venv/bin/python -m bench.whisper_length [--quick] [--num-utterances 24] [--sizes tiny base] [--repeats 2]

Stock Whisper pads every input to its 30 s window (3000 log-mel frames) and encodes 1500 frames whatever the
utterance; MER's audio tower (`MERWhisperEncoder`) encodes the utterance's own frames. For each Whisper size
(random weights: speed does not depend on them; `tiny` is tiny.en's shape, `base` base's), `--num-utterances`
utterances are drawn from IEMOCAP's length distribution (bench.workload.sample_utterances, clipped to 30 s), turned
into log-mel features as each tower takes them, and encoded one at a time (batch 1) by both, alternating, the
fastest of `--repeats` runs kept and summed. Reported: utterances/s of each, the speed-up, and the encoder frames
each computes. Quick mode: the tiny test Whisper (`mer.tiny`) and 3 utterances.
"""

from __future__ import annotations

import argparse
from functools import partial

import numpy as np
import torch
from transformers import WhisperConfig, WhisperFeatureExtractor
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from bench.measure import Stopwatch, run_model_benchmark
from bench.record import base_parser, machine_info, markdown_table, settle_arguments, write_report
from bench.workload import SAMPLING_RATE, sample_utterances
from mer.tiny import tiny_whisper_config
from modeling_mer import MERWhisperEncoder

__all__ = ["SIZES", "main", "run"]

SIZES = {
    "tiny": {"d_model": 384, "encoder_layers": 4, "encoder_attention_heads": 6, "encoder_ffn_dim": 1536},
    "base": {"d_model": 512, "encoder_layers": 6, "encoder_attention_heads": 8, "encoder_ffn_dim": 2048},
}
WINDOW_SECONDS = 30.0


def encoders(size: str, quick: bool) -> tuple[WhisperEncoder, MERWhisperEncoder]:
    """The stock encoder and MER's, with the same random weights."""
    config = tiny_whisper_config() if quick else WhisperConfig(**SIZES[size])
    torch.manual_seed(0)
    stock = WhisperEncoder(config).eval()
    ours = MERWhisperEncoder(config).eval()
    ours.load_state_dict(stock.state_dict())
    return stock, ours


def run(args: argparse.Namespace) -> dict:
    """Runs the benchmark described in the module docstring and writes its record to `args.out`."""
    device = torch.device("cpu")
    machine = machine_info(device)
    durations, _ = sample_utterances(args.num_utterances, args.seed)
    durations = np.minimum(durations, WINDOW_SECONDS)
    extractor = WhisperFeatureExtractor(feature_size=80)
    rng = np.random.default_rng(args.seed)
    waves = [(0.1 * rng.standard_normal(int(d * SAMPLING_RATE))).astype(np.float32) for d in durations]
    padded = [
        torch.from_numpy(extractor(w, sampling_rate=SAMPLING_RATE, return_tensors="np")["input_features"])
        for w in waves
    ]
    own = [
        torch.from_numpy(
            extractor(w, sampling_rate=SAMPLING_RATE, padding="longest", return_tensors="np")["input_features"]
        )
        for w in waves
    ]
    sizes = ["quick"] if args.quick else args.sizes
    results, rows = {}, []
    for size in sizes:
        stock, ours = encoders(size, args.quick)
        totals = {"padded to 30 s": 0.0, "own length": 0.0}
        frames = {"padded to 30 s": 0, "own length": 0}
        with torch.inference_mode():
            for number, (full, short) in enumerate(zip(padded, own, strict=True)):
                calls = {"padded to 30 s": partial(stock, full), "own length": partial(ours, short)}
                for call in calls.values():
                    call()  # warm-up
                watch = Stopwatch(device)
                for repeat in range(args.repeats):
                    names = list(calls) if (number + repeat) % 2 == 0 else list(calls)[::-1]
                    for name in names:
                        watch.time(name, calls[name])
                for name in totals:
                    totals[name] += min(watch.seconds[name])
                frames["padded to 30 s"] += stock.config.max_source_positions
                frames["own length"] += (short.shape[-1] - 1) // 2 + 1
        count = len(waves)
        entry = {
            name: {"seconds": seconds, "utterances_per_second": count / seconds, "encoder_frames": frames[name]}
            for name, seconds in totals.items()
        }
        entry["speedup_own_length"] = totals["padded to 30 s"] / totals["own length"]
        results[size] = entry
        for name in totals:
            rows.append(
                [
                    size,
                    name,
                    entry[name]["utterances_per_second"],
                    entry[name]["encoder_frames"],
                    entry[name]["seconds"],
                ]
            )
        rows.append([size, "speed-up", f"{entry['speedup_own_length']:.2f}x", "", ""])
    table = markdown_table(["Whisper encoder", "input", "utterances/s (batch 1)", "encoder frames", "seconds"], rows)
    settings = {
        "quick": args.quick,
        "num_utterances": len(waves),
        "audio_seconds": float(durations.sum()),
        "mean_seconds": float(durations.mean()),
        "sizes": sizes,
        "repeats": args.repeats,
        "grad_mode": "torch.inference_mode",
    }
    return write_report(args.out, "whisper_length", machine, settings, results, table)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__, "whisper_length", model_options=False)
    parser.add_argument("--num-utterances", type=int, default=None, help="Utterances drawn (default 24; quick 3).")
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES), help="Whisper sizes.")
    parser.add_argument("--repeats", type=int, default=None, help="Runs per utterance and input (default 2).")
    return settle_arguments(parser.parse_args(argv), num_utterances=(24, 3), repeats=(2, 1))


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point; returns the written record."""
    return run_model_benchmark(run, parse_args(argv))


if __name__ == "__main__":
    main()
