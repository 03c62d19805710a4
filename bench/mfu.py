"""Model FLOP utilisation of MER inference, and what wastes it.

    .venv/bin/python -m bench.mfu [--quick] [--num-batches 2] [--batch-size 8]

MFU = FLOPs of the forward pass / seconds / the machine's limit. FLOPs are counted by
`torch.utils.flop_counter.FlopCounterMode` (matrix products, convolutions, attention); the limit is the FLOP/s of a
large matrix product (`--matmul-size`, fastest of 5) measured in this process on this device, in fp32, and in bf16
for the bf16 rows. Two FLOP counts: *executed* (of the padded batches the model is given) and *useful* (the sum of
each utterance's own forward pass at batch 1): padding shows as executed FLOPs that are not useful.

`--num-batches` batches of `--batch-size` utterances are drawn from IEMOCAP's length distribution as sorting the
whole corpus by length would batch them (bench.workload.sample_grouped). Every variant runs the same utterances; each
input is timed `--repeats` times and the fastest kept. Variants, each changing one thing from the batched
length-sorted baseline (SDPA attention, `torch.inference_mode`, fp32, torch's default threads, glibc's default
malloc): batch 1; arrival order (padding); eager attention; `torch.no_grad`; one thread; bf16 autocast (when the
device has bf16 arithmetic: CPU `avx512_bf16` / `amx_bf16`, or CUDA); on CPU, last, glibc malloc keeping freed
memory (bench.measure.keep_freed_memory), at batch 1 and batched. The baseline is also split by component: the
audio encoder's CNN feature encoder, the rest of the audio encoder (transformer), the text encoder, fusion + heads.
"""

from __future__ import annotations

import argparse
from functools import partial

import torch

from bench.inference import encode_audio, encode_text
from bench.measure import (
    Stopwatch,
    autocast,
    bf16_support,
    count_flops,
    keep_freed_memory,
    matmul_flops_per_second,
    resolve_device,
    run_model_benchmark,
    torch_threads,
)
from bench.record import base_parser, machine_info, markdown_table, settle_arguments, write_report
from bench.workload import batches, build_models, make_inputs, sample_grouped
from modeling_mer import MERModel

__all__ = ["main", "run"]

FUSION_LAYERS = 2


def fastest_total(function, inputs_list: list[dict], repeats: int, device: torch.device) -> float:
    """Sum over inputs of the fastest of `repeats` calls of `function(inputs)`."""
    total = 0.0
    for inputs in inputs_list:
        watch = Stopwatch(device)
        for _ in range(repeats):
            watch.time("call", partial(function, inputs))
        total += min(watch.seconds["call"])
    return total


def flops_of(function, inputs_list: list[dict]) -> int:
    """FLOPs of `function` over all inputs (counted under `torch.no_grad`: under `torch.inference_mode`
    FlopCounterMode breaks wav2vec2's weight-normed positional convolution)."""
    with torch.no_grad():
        return sum(count_flops(partial(function, inputs)) for inputs in inputs_list)


def _forward(model: MERModel, inputs: dict):
    return model(**inputs)


def _feature_encoder(model: MERModel, inputs: dict):
    return model.audio_encoder.feature_extractor(inputs["input_values"])


def bf16_available(device: torch.device) -> bool:
    """Whether the device does bf16 arithmetic natively (else autocast only converts back and forth)."""
    support = bf16_support(device)
    return bool(support.get("native") or support.get("avx512_bf16") or support.get("amx_bf16"))


def run(args: argparse.Namespace) -> dict:
    """Runs the benchmark described in the module docstring and writes its record to `args.out`."""
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    machine = machine_info(device)
    threads = torch.get_num_threads()
    peak = {"fp32": matmul_flops_per_second(device, torch.float32, args.matmul_size)}
    if bf16_available(device):
        peak["bf16"] = matmul_flops_per_second(device, torch.bfloat16, args.matmul_size)
    model = build_models([FUSION_LAYERS], args.quick, device)[FUSION_LAYERS].eval()
    eager = build_models([FUSION_LAYERS], args.quick, device, attn_implementation="eager")[FUSION_LAYERS].eval()

    sample = sample_grouped(args.num_batches, args.batch_size, args.seed)
    durations, tokens = sample.durations, sample.token_counts
    count = len(durations)
    arrival = list(range(count))

    def inputs_for(groups: list[list[int]]) -> list[dict]:
        return [make_inputs(durations[g], tokens[g], model, device, seed=args.seed + n) for n, g in enumerate(groups)]

    single, arrival_batches = inputs_for(batches(arrival, 1)), inputs_for(batches(arrival, args.batch_size))
    sorted_batches = inputs_for(sample.sorted_batches)
    forward = partial(_forward, model)
    useful = flops_of(forward, single)
    executed = {
        "batch 1": useful,
        "arrival": flops_of(forward, arrival_batches),
        "sorted": flops_of(forward, sorted_batches),
    }

    def timed(function, inputs_list, grad_mode=torch.inference_mode, bf16=False, thread_count=None) -> float:
        with torch_threads(thread_count), grad_mode(), autocast(device, bf16):
            function(inputs_list[0])  # warm-up for this setting
            return fastest_total(function, inputs_list, args.repeats, device)

    sorted_name = f"batch {args.batch_size}, length-sorted (baseline)"
    variants = {
        "batch 1": ("batch 1", timed(forward, single), "fp32"),
        f"batch {args.batch_size}, arrival order": ("arrival", timed(forward, arrival_batches), "fp32"),
        sorted_name: ("sorted", timed(forward, sorted_batches), "fp32"),
        "... eager attention": ("sorted", timed(partial(_forward, eager), sorted_batches), "fp32"),
        "... torch.no_grad": ("sorted", timed(forward, sorted_batches, grad_mode=torch.no_grad), "fp32"),
    }
    if device.type == "cpu" and threads > 1:
        variants["... 1 thread"] = ("sorted", timed(forward, sorted_batches, thread_count=1), "fp32")
    if "bf16" in peak:
        variants["... bf16 autocast"] = ("sorted", timed(forward, sorted_batches, bf16=True), "bf16")
    components = measure_components(model, sorted_batches, partial(timed))
    # Last: it cannot be undone in this process.
    if device.type == "cpu" and not args.keep_freed_memory and keep_freed_memory():
        for name, inputs_list, key in (("batch 1", single, "batch 1"), (sorted_name, sorted_batches, "sorted")):
            variants[f"{name}, glibc malloc keeps freed memory"] = (key, timed(forward, inputs_list), "fp32")

    results = {"matmul_flops_per_second": peak, "useful_flops": useful, "executed_flops": executed, "variants": {}}
    rows = []
    baseline_seconds = variants[sorted_name][1]
    for name, (flops_key, seconds, precision) in variants.items():
        entry = {
            "seconds": seconds,
            "executed_flops": executed[flops_key],
            "precision": precision,
            "utterances_per_second": count / seconds,
            "mfu_executed": executed[flops_key] / seconds / peak[precision],
            "mfu_useful": useful / seconds / peak[precision],
            "mfu_useful_vs_fp32_limit": useful / seconds / peak["fp32"],
            "speed_vs_baseline": baseline_seconds / seconds,
        }
        results["variants"][name] = entry
        rows.append(
            [
                name,
                entry["utterances_per_second"],
                f"{useful / seconds / 1e9:.1f}",
                f"{100 * entry['mfu_executed']:.1f}%",
                f"{100 * entry['mfu_useful']:.1f}%",
                f"{entry['speed_vs_baseline']:.2f}x",
            ]
        )
    results["components"] = {}
    for name, entry in components.items():
        entry = {**entry, "mfu": entry["flops"] / entry["seconds"] / peak["fp32"] if entry["seconds"] > 0 else None}
        entry["flops_share"] = entry["flops"] / components["whole model"]["flops"]
        entry["time_share"] = entry["seconds"] / components["whole model"]["seconds"]
        results["components"][name] = entry
        rows.append(
            [
                f"component: {name}",
                None,
                f"{entry['flops'] / entry['seconds'] / 1e9:.1f}" if entry["seconds"] > 0 else None,
                f"{100 * entry['mfu']:.1f}%" if entry["mfu"] is not None else None,
                None,
                f"FLOPs {100 * entry['flops_share']:.1f}% / time {100 * entry['time_share']:.1f}%",
            ]
        )
    table = markdown_table(
        ["variant", "utterances/s", "useful GFLOP/s", "MFU executed", "MFU useful", "speed vs baseline / share"],
        rows,
    )
    table += "\n\n" + " ".join(f"{precision} limit {value / 1e9:.1f} GFLOP/s." for precision, value in peak.items())
    settings = {
        "quick": args.quick,
        "num_batches": args.num_batches,
        "num_utterances": count,
        "audio_seconds": float(durations.sum()),
        "batch_size": args.batch_size,
        "fusion_layers": FUSION_LAYERS,
        "repeats": args.repeats,
        "threads": threads,
        "matmul_size": args.matmul_size,
        "bf16_support": bf16_support(device),
        "keep_freed_memory": args.keep_freed_memory,
    }
    return write_report(args.out, "mfu", machine, settings, results, table)


def measure_components(model: MERModel, inputs_list: list[dict], timed) -> dict[str, dict]:
    """FLOPs and seconds of the CNN feature encoder, the rest of the audio encoder, the text encoder, and fusion +
    heads (whole model minus both encoders) over `inputs_list`; `timed(function, inputs_list)` times."""
    functions = {
        "audio CNN feature encoder": partial(_feature_encoder, model),
        "audio encoder (all)": partial(encode_audio, model),
        "text encoder": partial(encode_text, model),
        "whole model": partial(_forward, model),
    }
    measured = {
        name: {"flops": flops_of(function, inputs_list), "seconds": timed(function, inputs_list)}
        for name, function in functions.items()
    }
    encoders = _sum(measured["audio encoder (all)"], measured["text encoder"])
    return {
        "audio CNN feature encoder": measured["audio CNN feature encoder"],
        "audio transformer (rest of the audio encoder)": _difference(
            measured["audio encoder (all)"], measured["audio CNN feature encoder"]
        ),
        "text encoder": measured["text encoder"],
        "fusion + heads (whole - encoders)": _difference(measured["whole model"], encoders),
        "whole model": measured["whole model"],
    }


def _sum(first: dict, second: dict) -> dict:
    return {"flops": first["flops"] + second["flops"], "seconds": first["seconds"] + second["seconds"]}


def _difference(whole: dict, part: dict) -> dict:
    return {"flops": whole["flops"] - part["flops"], "seconds": max(whole["seconds"] - part["seconds"], 0.0)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__, "mfu")
    parser.set_defaults(bf16=False)  # bf16 is one of the variants: it runs whenever the device has bf16 arithmetic
    parser.add_argument("--num-batches", type=int, default=None, help="Batches drawn (default 2; quick 2).")
    parser.add_argument("--batch-size", type=int, default=None, help="Batch size (default 8; quick 2).")
    parser.add_argument("--repeats", type=int, default=None, help="Runs per input (default 2; quick 1).")
    parser.add_argument("--matmul-size", type=int, default=None, help="Side of the reference matrix product.")
    return settle_arguments(
        parser.parse_args(argv), num_batches=(2, 2), batch_size=(8, 2), repeats=(2, 1), matmul_size=(4096, 256)
    )


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point; returns the written record."""
    return run_model_benchmark(run, parse_args(argv))


if __name__ == "__main__":
    main()
