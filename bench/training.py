"""Training step throughput and peak memory of MER, and the cost of its two auxiliary tasks.

    .venv/bin/python -m bench.training [--quick] [--batch-size 8] [--num-batches 2] [--conditions ...]

A training step is what train.py does per batch: forward with labels, backward, AdamW step, zero_grad (no
gradient clipping, no accumulation). Batches are length-grouped as in training: `--num-batches` batches drawn
from IEMOCAP's length distribution, cropped to train.py's `max_audio_seconds`, as sorting the whole corpus by
length would batch them (bench.workload.sample_grouped); the same batches for every condition.

Conditions: the CNN feature encoder frozen (the default) or trainable, each with and without gradient
checkpointing (`model.activation_checkpointing_enable()`). Each condition runs in a fresh process (spawned), so
that its peak memory is its own: on CPU the peak resident set size (`ru_maxrss`), on GPU
`torch.cuda.max_memory_allocated`. After two warm-up steps, every batch is stepped `--repeats` times in each of two
modes, alternating, and the fastest step of each kept: with the auxiliary tasks (labels given to the model: its
loss is CE + w1 aux1 + w2 aux2) and with the main loss alone (the model called without labels, CE computed on its
logits: no auxiliary work at all). The extra cost of the auxiliary tasks is measured three ways: the time it adds
to forward + backward of everything but the encoders (`time_beyond_encoders`: many cheap runs, so little noise),
over the main-loss step time; the ratio of the FLOPs counted by `torch.utils.flop_counter` over one forward +
backward of the shortest batch (exact, blind to memory-bound work); and the whole-step time ratio (noisy: a single
step on a shared 2-core machine varies by more than the auxiliary tasks cost). MFU: those FLOPs over that batch's
step time over the FLOP/s of a large matrix product measured in this process.
Target: auxiliary tasks <= 5% over the main loss alone.
"""

from __future__ import annotations

import argparse
import multiprocessing
import traceback
from functools import partial

import torch
from torch.nn import functional as F
from transformers.modeling_outputs import BaseModelOutput

from bench.measure import (
    Stopwatch,
    autocast,
    count_flops,
    keep_freed_memory,
    matmul_flops_per_second,
    peak_memory_bytes,
    resolve_device,
    torch_threads,
)
from bench.record import base_parser, machine_info, markdown_table, settle_arguments, write_report
from bench.workload import SAMPLING_RATE, build_models, make_inputs, sample_grouped, training_default

__all__ = ["CONDITIONS", "main", "run"]

AUX_TARGET = 0.05  # extra step cost of the auxiliary tasks over the main loss alone
FUSION_LAYERS = 2
# name -> (freeze_feature_encoder, gradient checkpointing)
CONDITIONS = {
    "frozen CNN": (True, False),
    "frozen CNN + checkpointing": (True, True),
    "trainable CNN": (False, False),
    "trainable CNN + checkpointing": (False, True),
}


def compute_loss(model, inputs: dict, with_aux: bool, device: torch.device, bf16: bool) -> torch.Tensor:
    """The training loss; `with_aux=False` is the main loss alone (no auxiliary work runs in the model)."""
    with autocast(device, bf16):
        if with_aux:
            return model(**inputs).loss
        logits = model(**{name: value for name, value in inputs.items() if name != "labels"}).logits
        return F.cross_entropy(logits.float(), inputs["labels"])


def training_step(model, optimizer, inputs: dict, with_aux: bool, device: torch.device, bf16: bool) -> None:
    """One train.py step: loss, backward, AdamW step, zero_grad."""
    compute_loss(model, inputs, with_aux, device, bf16).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _forward_backward(model, inputs: dict, with_aux: bool, device: torch.device, bf16: bool) -> None:
    compute_loss(model, inputs, with_aux, device, bf16).backward()
    model.zero_grad(set_to_none=True)


def measure_condition(spec: dict) -> dict:
    """Builds the model for one condition, steps every batch with and without the auxiliary tasks, and returns
    step times, FLOPs and peak memory. Meant to run alone in its process (see `run`)."""
    device = resolve_device(spec["device"])
    if spec["keep_freed_memory"]:
        keep_freed_memory()
    with torch_threads(spec["threads"]):
        torch.manual_seed(spec["seed"])
        model = build_models(
            [FUSION_LAYERS], spec["quick"], device, freeze_feature_encoder=spec["freeze_feature_encoder"]
        )[FUSION_LAYERS]
        model.train()
        if spec["gradient_checkpointing"]:
            model.activation_checkpointing_enable()
        trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=1e-6)
        inputs_list = [
            make_inputs(durations, tokens, model, device, seed=spec["seed"] + n, with_labels=True)
            for n, (durations, tokens) in enumerate(spec["batches"])
        ]
        memory_after_build = peak_memory_bytes(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

        # FLOPs on the shortest batch (the cheapest to count twice).
        shortest = min(range(len(inputs_list)), key=lambda number: inputs_list[number]["input_values"].numel())
        flops = {
            name: count_flops(partial(_forward_backward, model, inputs_list[shortest], with_aux, device, spec["bf16"]))
            for name, with_aux in (("with_aux", True), ("main_loss_only", False))
        }
        # Warm-up, one step in each mode on the longest batch: the first steps allocate the optimizer state and
        # grow the heap to its peak, and take longer than any later one.
        longest = max(inputs_list, key=lambda inputs: inputs["input_values"].numel())
        for with_aux in (True, False):
            training_step(model, optimizer, longest, with_aux, device, spec["bf16"])
        # step_seconds[mode][batch]: the fastest of `repeats` steps, modes alternating in order.
        fastest = {"with_aux": [], "main_loss_only": []}
        for number, inputs in enumerate(inputs_list):
            watch = Stopwatch(device)
            for repeat in range(spec["repeats"]):
                order = (True, False) if (number + repeat) % 2 == 0 else (False, True)
                for with_aux in order:
                    name = "with_aux" if with_aux else "main_loss_only"
                    watch.time(name, partial(training_step, model, optimizer, inputs, with_aux, device, spec["bf16"]))
            for name in fastest:
                fastest[name].append(min(watch.seconds[name]))
        peak_memory = peak_memory_bytes(device)
        return {
            "step_seconds": fastest,
            "flops_shortest_batch": flops,
            "shortest_batch": shortest,
            "beyond_encoders_seconds": time_beyond_encoders(model, inputs_list, spec),
            "peak_memory_bytes": peak_memory,
            "memory_after_build_bytes": memory_after_build,
            "trainable_parameters": sum(parameter.numel() for parameter in trainable),
        }


class _CachedEncoder(torch.nn.Module):
    """Stands in for an encoder and returns outputs computed beforehand, so that only what MER adds runs."""

    def __init__(self, output: BaseModelOutput):
        super().__init__()
        self.output = output
        self.dtype = output.last_hidden_state.dtype  # the model casts its inputs to the encoder's dtype

    def forward(self, *args, **kwargs) -> BaseModelOutput:
        return self.output


def time_beyond_encoders(model, inputs_list: list[dict], spec: dict) -> dict[str, list[float]]:
    """Forward + backward of everything but the encoders (projections, fusion, heads, losses), with and without the
    auxiliary tasks: per batch, the fastest of `5 x repeats` runs of each, alternating.

    The encoders are replaced by stand-ins returning their outputs as leaves that require grad, so the backward
    reaches the encoder outputs as it does in training. The auxiliary tasks add work only here (the encoders run
    once either way, and their backward takes the summed gradient), so the difference between the two modes is
    their whole cost, measured without the noise of timing whole steps. Replaces the model's encoders: call last."""
    device = resolve_device(spec["device"])
    cached = []
    with torch.no_grad(), autocast(device, spec["bf16"]):
        for inputs in inputs_list:
            mask = inputs["audio_attention_mask"] if model.config.audio_encoder_takes_mask else None
            audio = model.audio_encoder(inputs["input_values"], attention_mask=mask).last_hidden_state
            text = model.text_encoder(
                inputs["input_ids"],
                attention_mask=inputs["text_attention_mask"],
                token_type_ids=inputs["token_type_ids"],
            ).last_hidden_state
            cached.append((audio, text))
    fastest = {"with_aux": [], "main_loss_only": []}
    for number, (inputs, (audio, text)) in enumerate(zip(inputs_list, cached, strict=True)):
        model.audio_encoder = _CachedEncoder(BaseModelOutput(last_hidden_state=audio.detach().requires_grad_()))
        model.text_encoder = _CachedEncoder(BaseModelOutput(last_hidden_state=text.detach().requires_grad_()))
        watch = Stopwatch(device)
        for repeat in range(5 * spec["repeats"] + 1):  # the first round warms up
            order = (True, False) if (number + repeat) % 2 == 0 else (False, True)
            for with_aux in order:
                name = "with_aux" if with_aux else "main_loss_only"
                function = partial(_forward_backward, model, inputs, with_aux, device, spec["bf16"])
                if repeat == 0:
                    function()
                else:
                    watch.time(name, function)
        for name in fastest:
            fastest[name].append(min(watch.seconds[name]))
    return fastest


def _worker(connection, spec: dict) -> None:
    try:
        connection.send(("ok", measure_condition(spec)))
    except BaseException:  # noqa: BLE001 - the parent re-raises it with the child's traceback
        connection.send(("error", traceback.format_exc()))
    finally:
        connection.close()


def run_isolated(spec: dict) -> dict:
    """`measure_condition(spec)` in a freshly spawned process, so its peak memory is its own."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_worker, args=(sender, spec))
    process.start()
    sender.close()
    try:
        status, payload = receiver.recv()
    except EOFError as error:
        process.join()
        raise RuntimeError(
            f"The benchmark process for {spec['name']!r} died (exit code {process.exitcode})."
        ) from error
    process.join()
    if status != "ok":
        raise RuntimeError(f"The benchmark process for {spec['name']!r} failed:\n{payload}")
    return payload


def run(args: argparse.Namespace) -> dict:
    """Runs the benchmark described in the module docstring and writes its record to `args.out`."""
    device = resolve_device(args.device)
    machine = machine_info(device)
    max_seconds = training_default("max_audio_seconds")
    sample = sample_grouped(args.num_batches, args.batch_size, args.seed, crop_seconds=max_seconds)
    durations, tokens = sample.durations, sample.token_counts
    count = len(durations)
    batch_specs = [(durations[group].tolist(), tokens[group].tolist()) for group in sample.sorted_batches]
    audio_seconds = float(durations.sum())
    with torch_threads(args.threads):
        peak = matmul_flops_per_second(device, torch.bfloat16 if args.bf16 else torch.float32, args.matmul_size)

    results = {"conditions": {}, "matmul_flops_per_second": peak}
    rows = []
    for name in args.conditions:
        freeze, checkpointing = CONDITIONS[name]
        spec = {
            "name": name,
            "device": str(device),
            "threads": args.threads,
            "quick": args.quick,
            "seed": args.seed,
            "bf16": args.bf16,
            "keep_freed_memory": args.keep_freed_memory,
            "repeats": args.repeats,
            "freeze_feature_encoder": freeze,
            "gradient_checkpointing": checkpointing,
            "batches": batch_specs,
        }
        outcome = run_isolated(spec) if args.isolate else measure_condition(spec)
        seconds = {key: float(sum(values)) for key, values in outcome["step_seconds"].items()}
        flops = outcome["flops_shortest_batch"]
        beyond = {key: float(sum(values)) for key, values in outcome["beyond_encoders_seconds"].items()}
        entry = {
            **outcome,
            "utterances_per_second": count / seconds["with_aux"],
            "audio_seconds_per_second": audio_seconds / seconds["with_aux"],
            "utterances_per_second_main_loss_only": count / seconds["main_loss_only"],
            "aux_overhead_time": seconds["with_aux"] / seconds["main_loss_only"] - 1.0,
            "aux_extra_seconds_beyond_encoders": beyond["with_aux"] - beyond["main_loss_only"],
            "aux_overhead_beyond_encoders": (beyond["with_aux"] - beyond["main_loss_only"])
            / seconds["main_loss_only"],
            "aux_overhead_flops": flops["with_aux"] / flops["main_loss_only"] - 1.0,
            "model_flops_utilisation": flops["with_aux"]
            / (outcome["step_seconds"]["with_aux"][outcome["shortest_batch"]] * peak),
        }
        # Judged on the two exact measures; the whole-step ratio carries the timing noise of whole steps.
        entry["meets_aux_target"] = (
            entry["aux_overhead_flops"] <= AUX_TARGET and entry["aux_overhead_beyond_encoders"] <= AUX_TARGET
        )
        results["conditions"][name] = entry
        rows.append(
            [
                name,
                entry["utterances_per_second"],
                entry["audio_seconds_per_second"],
                f"{entry['peak_memory_bytes'] / 2**30:.2f}",
                f"{(entry['peak_memory_bytes'] - entry['memory_after_build_bytes']) / 2**30:.2f}",
                f"{100 * entry['aux_overhead_beyond_encoders']:+.2f}%",
                f"{100 * entry['aux_overhead_flops']:+.2f}%",
                f"{100 * entry['aux_overhead_time']:+.1f}%",
                f"{100 * entry['model_flops_utilisation']:.0f}%",
            ]
        )
    results["aux_target"] = AUX_TARGET
    table = markdown_table(
        [
            "condition",
            "utterances/s",
            "audio s/s",
            "peak memory GiB",
            "of it in steps GiB",
            "aux extra time (measured beyond encoders)",
            "aux extra FLOPs",
            "aux extra time (whole steps, noisy)",
            "MFU (shortest batch)",
        ],
        rows,
    )
    settings = {
        "quick": args.quick,
        "batch_size": args.batch_size,
        "num_batches": args.num_batches,
        "repeats": args.repeats,
        "batch_seconds": [float(sum(d)) for d, _ in batch_specs],
        "audio_seconds": audio_seconds,
        "max_audio_seconds": max_seconds,
        "sampling_rate": SAMPLING_RATE,
        "fusion_layers": FUSION_LAYERS,
        "optimizer": "AdamW (trainable parameters only)",
        "bf16": args.bf16,
        "keep_freed_memory": args.keep_freed_memory,
        "isolated_processes": args.isolate,
        "peak_memory": "torch.cuda.max_memory_allocated" if device.type == "cuda" else "ru_maxrss of the process",
    }
    return write_report(args.out, "training", machine, settings, results, table)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__, "training")
    parser.add_argument("--batch-size", type=int, default=None, help="Utterances per step (default: train.py's).")
    parser.add_argument("--num-batches", type=int, default=None, help="Timed batches (default 2).")
    parser.add_argument(
        "--repeats", type=int, default=None, help="Steps per batch and mode, fastest kept (default 1)."
    )
    parser.add_argument(
        "--conditions", nargs="+", choices=list(CONDITIONS), default=list(CONDITIONS), help="Conditions to run."
    )
    parser.add_argument(
        "--no-isolate",
        dest="isolate",
        action="store_false",
        help="Run the conditions in this process (faster to start; peak memory is then the process's high-water "
        "mark over all of them).",
    )
    parser.add_argument("--matmul-size", type=int, default=None, help="Side of the reference matrix product.")
    return settle_arguments(
        parser.parse_args(argv),
        batch_size=(training_default("batch_size"), 4),
        num_batches=(2, 2),
        repeats=(1, 1),
        matmul_size=(4096, 256),
    )


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point; returns the written record."""
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
