"""CPU inference of the exported model: onnxruntime on MER's ONNX graph against eager PyTorch, one utterance at a
time (batch 1, what a service answering one request does).

    .venv/bin/python -m bench.deploy [--quick] [--num-utterances 24] [--repeats 3]

The model (wav2vec2-base + bert-base, K = 2, random weights) is exported with `mer.serving.export.write_onnx`, the path
`python -m mer.serving.export` takes, and the export's wall time is recorded. `--num-utterances` utterances are drawn
from IEMOCAP's length distribution (bench.workload.sample_utterances) and built as the processor builds them. For each,
eager PyTorch (`torch.inference_mode`, SDPA) and an onnxruntime session (CPU provider, graph optimisations on,
as many intra-op threads as torch uses) run in alternating order `--repeats` times after one warm-up each; the
fastest run of each is kept and summed. Reported: utterances/s and real-time factor of each, the speed-up, and the
largest |logit| difference between them over all utterances.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from bench.measure import Stopwatch, run_model_benchmark
from bench.record import base_parser, machine_info, markdown_table, settle_arguments, write_report
from bench.workload import build_models, make_inputs, sample_utterances
from mer.serving.export import write_onnx
from mer.serving.runtime import onnxruntime_session

__all__ = ["main", "run"]

FUSION_LAYERS = 2


def run(args: argparse.Namespace) -> dict:
    """Runs the benchmark described in the module docstring and writes its record to `args.out`."""
    device = torch.device("cpu")
    torch.manual_seed(args.seed)
    machine = machine_info(device)
    model = build_models([FUSION_LAYERS], args.quick, device)[FUSION_LAYERS].eval()
    durations, tokens = sample_utterances(args.num_utterances, args.seed)
    inputs_list = [
        make_inputs(durations[i : i + 1], tokens[i : i + 1], model, device, seed=args.seed + i)
        for i in range(len(durations))
    ]
    traced = make_inputs([1.3, 0.8], [9, 5], model, device, seed=args.seed)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "model.onnx"
        start = time.perf_counter()
        write_onnx(model, traced, path)
        export_seconds = time.perf_counter() - start
        onnx_bytes = path.stat().st_size
        session = onnxruntime_session(path, torch.get_num_threads())
        names = [entry.name for entry in session.get_inputs()]

        def eager(inputs):
            with torch.inference_mode():
                return model(**inputs).logits.numpy()

        def onnx(inputs):
            return session.run(["logits"], {name: inputs[name].numpy() for name in names})[0]

        runtimes = {"eager": eager, "onnxruntime": onnx}
        totals = dict.fromkeys(runtimes, 0.0)
        largest_difference = 0.0
        for number, inputs in enumerate(inputs_list):
            largest_difference = max(largest_difference, float(np.abs(eager(inputs) - onnx(inputs)).max()))
            watch = Stopwatch(device)
            for repeat in range(args.repeats):
                order = ("eager", "onnxruntime") if (number + repeat) % 2 == 0 else ("onnxruntime", "eager")
                for name in order:
                    watch.time(name, partial(runtimes[name], inputs))
            for name in totals:
                totals[name] += min(watch.seconds[name])

    audio_seconds = float(durations.sum())
    count = len(durations)
    results = {
        name: {
            "seconds": seconds,
            "utterances_per_second": count / seconds,
            "real_time_factor": seconds / audio_seconds,
        }
        for name, seconds in totals.items()
    }
    results["speedup_onnxruntime_over_eager"] = totals["eager"] / totals["onnxruntime"]
    results["max_abs_logit_difference"] = largest_difference
    results["export_seconds"] = export_seconds
    results["onnx_megabytes"] = onnx_bytes / 2**20
    rows = [
        [name, results[name]["utterances_per_second"], results[name]["real_time_factor"], results[name]["seconds"]]
        for name in totals
    ]
    table = markdown_table(["runtime (batch 1)", "utterances/s", "real-time factor", "seconds"], rows)
    table += (
        f"\n\nonnxruntime / eager speed-up: {results['speedup_onnxruntime_over_eager']:.2f}x; "
        f"max |logit difference|: {largest_difference:.2e}; export: {export_seconds:.0f} s, "
        f"{results['onnx_megabytes']:.0f} MiB."
    )
    settings = {
        "quick": args.quick,
        "num_utterances": count,
        "audio_seconds": audio_seconds,
        "repeats": args.repeats,
        "fusion_layers": FUSION_LAYERS,
        "batch_size": 1,
        "attn_implementation": "sdpa",
        "onnxruntime_threads": torch.get_num_threads(),
    }
    return write_report(args.out, "deploy", machine, settings, results, table)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__, "deploy", model_options=False)
    parser.add_argument("--num-utterances", type=int, default=None, help="Utterances drawn (default 24; quick 3).")
    parser.add_argument("--repeats", type=int, default=None, help="Runs per utterance and runtime (default 3).")
    return settle_arguments(parser.parse_args(argv), num_utterances=(24, 3), repeats=(3, 1))


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point; returns the written record."""
    return run_model_benchmark(run, parse_args(argv))


if __name__ == "__main__":
    main()
