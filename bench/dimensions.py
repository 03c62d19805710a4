"""What the dimension head costs: MER with and without `dimensions` (arousal, valence, dominance), same towers and
fusion, timed on the same batches, at inference and for a training step.

    .venv/bin/python -m bench.dimensions [--quick] [--num-batches 3] [--batch-size 8]

Batches are drawn from IEMOCAP's length distribution (bench.workload.sample_grouped, length-sorted). Inference: the
whole model's forward pass under `torch.inference_mode`. Training: forward and backward in training mode with class
labels (so the auxiliary tasks run) and, for the model with dimensions, dimension labels (the CCC loss). The two
models run in rotating order `--repeats` times per batch and the fastest is kept; times are summed over batches.
"""

from __future__ import annotations

import argparse
from functools import partial

import torch

from bench.measure import Stopwatch, autocast, resolve_device, run_model_benchmark
from bench.record import base_parser, machine_info, markdown_table, settle_arguments, write_report
from bench.workload import build_models, make_inputs, sample_grouped
from modeling_mer import MERModel
from modeling_mer.configuration_mer import DIMENSIONS

__all__ = ["main", "run"]


def add_dimension_head(model: MERModel) -> MERModel:
    """`model` with a dimension head for every dimension: the same towers (shared) and the same fusion weights."""
    config = model.config.to_dict() | {"dimensions": list(DIMENSIONS)}
    other = MERModel(
        type(model.config).from_dict(config), audio_encoder=model.audio_encoder, text_encoder=model.text_encoder
    )
    missing, unexpected = other.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and all(name.startswith("dimension_head.") for name in missing), (missing, unexpected)
    return other.to(next(model.parameters()).device)


def training_step(model: MERModel, inputs: dict) -> None:
    model.zero_grad(set_to_none=True)
    model(**inputs).loss.backward()


def time_models(models: dict[str, MERModel], inputs_list: list[dict], repeats: int, device, bf16: bool) -> dict:
    """Per model: the summed fastest inference time and training-step time over `inputs_list`."""
    totals: dict[str, float] = {}
    for number, inputs in enumerate(inputs_list):
        watch = Stopwatch(device)
        names = list(models)
        features = {key: value for key, value in inputs.items() if not key.endswith("labels")}
        labelled = {  # each model's training inputs: the dimension labels only for the model that predicts them
            name: {**features, "labels": inputs["labels"]}
            | ({"dimension_labels": inputs["dimension_labels"]} if model.config.dimensions else {})
            for name, model in models.items()
        }
        for repeat in range(repeats):
            shift = (number + repeat) % len(names)
            for name in names[shift:] + names[:shift]:
                model = models[name]
                model.eval()
                with torch.inference_mode(), autocast(device, bf16):
                    watch.time(f"{name}/inference", partial(model, **features))
                model.train()
                with autocast(device, bf16):
                    watch.time(f"{name}/training", partial(training_step, model, labelled[name]))
        for name, seconds in watch.seconds.items():
            totals[name] = totals.get(name, 0.0) + min(seconds)
    return totals


def run(args: argparse.Namespace) -> dict:
    """Runs the benchmark described in the module docstring and writes its record to `args.out`."""
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    machine = machine_info(device)
    plain = build_models([2], args.quick, device)[2]
    models = {"classes": plain, "classes + dimensions": add_dimension_head(plain)}
    sample = sample_grouped(args.num_batches, args.batch_size, args.seed)
    inputs_list = []
    for number, group in enumerate(sample.sorted_batches):
        inputs = make_inputs(
            sample.durations[group], sample.token_counts[group], plain, device, args.seed + number, True
        )
        generator = torch.Generator().manual_seed(args.seed + number)
        inputs["dimension_labels"] = torch.rand(len(group), len(DIMENSIONS), generator=generator).to(device)
        inputs_list.append(inputs)
    time_models(models, inputs_list[:1], 1, device, args.bf16)  # warm-up: allocation, kernel choice
    totals = time_models(models, inputs_list, args.repeats, device, args.bf16)

    head = models["classes + dimensions"].dimension_head
    results = {
        "seconds": totals,
        "head_parameters": sum(parameter.numel() for parameter in head.parameters()),
        "model_parameters": sum(parameter.numel() for parameter in plain.parameters()),
    }
    rows = []
    for kind in ("inference", "training"):
        base, extra = totals[f"classes/{kind}"], totals[f"classes + dimensions/{kind}"]
        results[f"{kind}_ratio"] = extra / base
        rows.append([kind, f"{base:.3f}", f"{extra:.3f}", f"{100 * (extra / base - 1):+.1f}%"])
    table = markdown_table(["pass", "classes (s)", "classes + 3 dimensions (s)", "difference"], rows)
    settings = {
        "quick": args.quick,
        "num_batches": args.num_batches,
        "batch_size": args.batch_size,
        "num_utterances": int(len(sample.durations)),
        "audio_seconds": float(sample.durations.sum()),
        "fusion_layers": 2,
        "repeats": args.repeats,
        "bf16": args.bf16,
    }
    return write_report(args.out, "dimensions", machine, settings, results, table)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__, "dimensions")
    parser.add_argument("--num-batches", type=int, default=None, help="Batches drawn (default 3; quick 2).")
    parser.add_argument("--batch-size", type=int, default=None, help="Batch size (default 8; quick 3).")
    parser.add_argument("--repeats", type=int, default=None, help="Runs per batch and model (default 3).")
    return settle_arguments(parser.parse_args(argv), num_batches=(3, 2), batch_size=(8, 3), repeats=(3, 1))


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point; returns the written record."""
    return run_model_benchmark(run, parse_args(argv))


if __name__ == "__main__":
    main()
