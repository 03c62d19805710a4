"""Inference throughput of MER and where its time goes: audio encoder, text encoder, fusion + heads.

    .venv/bin/python -m bench.inference [--quick] [--num-batches 3] [--batch-size 8] [--fusion-layers 2 4]

`--num-batches` batches of `--batch-size` utterances are drawn from IEMOCAP's length distribution as sorting the
whole corpus by length would batch them (bench.workload.sample_grouped), and the same utterances run three ways: one
at a time (batch 1), in those length-sorted batches, and in batches in arrival order. For every input the
benchmark times, in the same process and in rotating order, the audio tower alone and the text tower alone
(`project_audio_features` and `project_text_features`: each encoder and its projection to the fusion size), the
whole model for each K (the models share these very towers), and the fusion + heads alone (`fuse` on the towers'
outputs: K fusion layers, pooling, classifier). Each is run `--repeats` times and the fastest kept, which filters out
interruptions by other work; the per-input times are summed. Throughput is utterances/s of the whole model; the
real-time factor is its time over the audio's duration. The fusion target: whole model <= 1.03 x (audio encoder +
text encoder).
"""

from __future__ import annotations

import argparse
from functools import partial

import torch

from bench.measure import Stopwatch, autocast, resolve_device, run_model_benchmark
from bench.record import base_parser, machine_info, markdown_table, settle_arguments, write_report
from bench.workload import batches, build_models, make_inputs, sample_grouped
from modeling_mer import MERModel
from modeling_mer.modeling_mer import MERFeaturesOutput

__all__ = ["main", "run"]

FUSION_TARGET = 1.03  # whole model / (audio encoder + text encoder)


def encode_audio(model: MERModel, inputs: dict) -> MERFeaturesOutput:
    """The audio tower as `MERModel` runs it: encoder, frame mask, projection to the fusion size."""
    return model.project_audio_features(inputs["input_values"], inputs["audio_attention_mask"])


def encode_text(model: MERModel, inputs: dict) -> MERFeaturesOutput:
    """The text tower as `MERModel` runs it: encoder and projection to the fusion size."""
    return model.project_text_features(inputs["input_ids"], inputs["text_attention_mask"], inputs["token_type_ids"])


def fuse_and_classify(model: MERModel, audio: MERFeaturesOutput, text: MERFeaturesOutput) -> torch.Tensor:
    """What the model adds to its towers at inference: fusion, pooling, classifier."""
    return model.classifier(model.fuse(audio, text).pooler_output)


def time_inputs(
    models: dict[int, MERModel], inputs_list: list[dict], repeats: int, device: torch.device, bf16: bool
) -> dict[str, float]:
    """Sum over inputs of the fastest of `repeats` runs of each condition, conditions in rotating order."""
    reference = next(iter(models.values()))
    totals: dict[str, float] = {}
    for number, inputs in enumerate(inputs_list):
        with torch.inference_mode(), autocast(device, bf16):
            audio_features, text_features = encode_audio(reference, inputs), encode_text(reference, inputs)
            conditions = {
                "audio_encoder": partial(encode_audio, reference, inputs),
                "text_encoder": partial(encode_text, reference, inputs),
            }
            for k, model in models.items():
                conditions[f"model_K{k}"] = partial(model, **inputs)
                conditions[f"fusion_heads_K{k}"] = partial(fuse_and_classify, model, audio_features, text_features)
            names = list(conditions)
            watch = Stopwatch(device)
            for repeat in range(repeats):
                shift = (number + repeat) % len(names)
                for name in names[shift:] + names[:shift]:
                    watch.time(name, conditions[name])
        for name, seconds in watch.seconds.items():
            totals[name] = totals.get(name, 0.0) + min(seconds)
    return totals


def summarise_mode(totals: dict[str, float], fusion_layers: list[int], count: int, audio_seconds: float) -> dict:
    """Throughput, real-time factor and the time split for one way of running the utterances."""
    encoders = totals["audio_encoder"] + totals["text_encoder"]
    per_k = {}
    for k in fusion_layers:
        whole = totals[f"model_K{k}"]
        per_k[str(k)] = {
            "seconds": whole,
            "utterances_per_second": count / whole,
            "real_time_factor": whole / audio_seconds,
            "ratio_to_encoders": whole / encoders,
            "meets_fusion_target": whole / encoders <= FUSION_TARGET,
            "share_audio_encoder": totals["audio_encoder"] / whole,
            "share_text_encoder": totals["text_encoder"] / whole,
            "share_fusion_heads_difference": (whole - encoders) / whole,
            "share_fusion_heads_direct": totals[f"fusion_heads_K{k}"] / whole,
        }
    return {"seconds": totals, "per_fusion_layers": per_k}


def run(args: argparse.Namespace) -> dict:
    """Runs the benchmark described in the module docstring and writes its record to `args.out`."""
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    machine = machine_info(device)
    models = build_models(args.fusion_layers, args.quick, device)
    for model in models.values():
        model.eval()
    reference = next(iter(models.values()))
    sample = sample_grouped(args.num_batches, args.batch_size, args.seed)
    durations, tokens = sample.durations, sample.token_counts
    count = len(durations)
    audio_seconds = float(durations.sum())

    def inputs_for(groups: list[list[int]]) -> list[dict]:
        return [
            make_inputs(durations[group], tokens[group], reference, device, seed=args.seed + n)
            for n, group in enumerate(groups)
        ]

    arrival = list(range(count))
    modes = {
        "batch 1": inputs_for(batches(arrival, 1)),
        f"batch {args.batch_size}, length-sorted": inputs_for(sample.sorted_batches),
        f"batch {args.batch_size}, arrival order": inputs_for(batches(arrival, args.batch_size)),
    }
    # Warm-up: the first calls allocate memory and pick kernels.
    time_inputs(models, modes["batch 1"][:2], 1, device, args.bf16)

    results = {"modes": {}}
    for mode, inputs_list in modes.items():
        padded = sum(inputs["input_values"].numel() for inputs in inputs_list)
        real = sum(int(inputs["audio_attention_mask"].sum()) for inputs in inputs_list)
        totals = time_inputs(models, inputs_list, args.repeats, device, args.bf16)
        summary = summarise_mode(totals, args.fusion_layers, count, audio_seconds)
        summary["audio_padding_share"] = 1.0 - real / padded
        results["modes"][mode] = summary
    results["fusion_target"] = FUSION_TARGET
    results["fusion_target_met"] = all(
        entry["meets_fusion_target"]
        for mode in results["modes"].values()
        for entry in mode["per_fusion_layers"].values()
    )

    rows = []
    for mode, summary in results["modes"].items():
        seconds = summary["seconds"]
        for k, entry in summary["per_fusion_layers"].items():
            rows.append(
                [
                    mode,
                    k,
                    entry["utterances_per_second"],
                    entry["real_time_factor"],
                    f"{100 * summary['audio_padding_share']:.1f}%",
                    f"{seconds['audio_encoder']:.2f} / {seconds['text_encoder']:.2f} / "
                    f"{seconds[f'fusion_heads_K{k}']:.3f}",
                    f"{100 * entry['share_fusion_heads_direct']:.2f}%",
                    f"{entry['ratio_to_encoders']:.3f}" + ("" if entry["meets_fusion_target"] else " (over 1.03)"),
                ]
            )
    table = markdown_table(
        [
            "inputs",
            "K",
            "utterances/s",
            "real-time factor",
            "padding",
            "audio / text / fusion+heads s",
            "fusion+heads share",
            "whole / encoders",
        ],
        rows,
    )
    settings = {
        "quick": args.quick,
        "num_batches": args.num_batches,
        "num_utterances": count,
        "audio_seconds": audio_seconds,
        "batch_size": args.batch_size,
        "fusion_layers": args.fusion_layers,
        "repeats": args.repeats,
        "bf16": args.bf16,
        "keep_freed_memory": args.keep_freed_memory,
        "grad_mode": "torch.inference_mode",
        "attn_implementation": "sdpa",
    }
    return write_report(args.out, "inference", machine, settings, results, table)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__, "inference")
    parser.add_argument("--num-batches", type=int, default=None, help="Batches drawn (default 3; quick 2).")
    parser.add_argument("--batch-size", type=int, default=None, help="Batch size (default 8; quick 3).")
    parser.add_argument("--fusion-layers", type=int, nargs="+", default=[2, 4], help="The K values to compare.")
    parser.add_argument("--repeats", type=int, default=None, help="Runs per input and condition (default 2).")
    return settle_arguments(parser.parse_args(argv), num_batches=(3, 2), batch_size=(8, 3), repeats=(2, 1))


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point; returns the written record."""
    return run_model_benchmark(run, parse_args(argv))


if __name__ == "__main__":
    main()
