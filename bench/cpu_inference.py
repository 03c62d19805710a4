"""CPU inference runtimes (`mer.serving.runtime`): eager PyTorch, int8 dynamic quantisation and onnxruntime on the ONNX
export, by speed and by whether they keep the model's answers; picks the CPU default.

    .venv/bin/python -m bench.cpu_inference [--quick] [--num-batches 3] [--repeats 3] [--model DIR] [--corpus DIR]

Speed: wav2vec2-base + bert-base (K = 2, random weights: speed does not depend on them), each runtime made with
`mer.serving.runtime.prepare_for_inference` (the time that takes is recorded). `--num-batches` batches of 8 utterances
are drawn from IEMOCAP's length distribution as sorting the whole corpus by length batches them
(bench.workload.sample_grouped), and built as the processor builds them. They run one at a time (batch 1, arrival
order) and in those length-sorted batches of 8. For every input, each runtime runs once (a warm-up, and the largest
|logit| difference from eager), then `--repeats` times in rotating order; the fastest run of each is kept and the
inputs' times are summed (`torch.inference_mode` around every call).

Agreement: the model `make demo` trains (`--model`, a saved MER model; loaded with the installed `MERModel`, as
`python -m mer.serving.export` loads it) over every utterance of the demo corpus (`--corpus`, IEMOCAP layout) that has
a transcript, all five sessions, one at a time as the processor prepares it from the wav file and its transcript: the
share of utterances whose argmax matches fp32 eager's, and the largest |logit| difference.

The default: the fastest runtime at batch 1 whose agreement is at least 99% (`choose_default` says why batch 1).
`--quick` runs tiny encoders (`mer.tiny`) built in a temporary directory, for speed and agreement
alike, on a handful of drawn utterances and generated waveforms: no `runs/` or `data/` needed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn

from bench.measure import Stopwatch, run_model_benchmark
from bench.record import base_parser, machine_info, markdown_table, settle_arguments, write_report
from bench.workload import build_models, make_inputs, sample_grouped
from dataset_scripts.iemocap.iemocap import scan_corpus
from mer.serving.runtime import RUNTIMES, prepare_for_inference
from mer.tiny import build_tiny_encoders, spread_logits
from modeling_mer import MERModel, MERProcessor

__all__ = ["Utterance", "corpus_utterances", "main", "run"]

REPO = Path(__file__).resolve().parents[1]
DEMO_MODEL = REPO / "runs" / "demo" / "run" / "session1" / "model"
DEMO_CORPUS = REPO / "data" / "synthetic"
FUSION_LAYERS = 2
BATCH_SIZE = 8
AGREEMENT_TARGET = 0.99
MODES = ("batch 1", f"batch {BATCH_SIZE}, length-sorted")
QUICK_WORDS = "i love this wonderful day hate the awful mess what a great surprise".split()


@dataclass(frozen=True)
class Utterance:
    """One recording and its transcript: `waveform` mono float32 at `sampling_rate` Hz."""

    id: str
    waveform: np.ndarray
    sampling_rate: int
    text: str


def corpus_utterances(corpus_dir: str | Path) -> tuple[list[Utterance], int]:
    """Every labelled utterance of an IEMOCAP-layout corpus that has a transcript and a readable wav, all sessions
    (`scan_corpus` with every raw label kept), and the number left out for problems.

    Raises:
        FileNotFoundError, ValueError: as `scan_corpus` (missing directory, not the IEMOCAP layout).
    """
    examples, problems = scan_corpus(corpus_dir, "all")
    utterances = []
    for example in (example for session in sorted(examples) for example in examples[session]):
        waveform, rate = sf.read(example["audio"], dtype="float32", always_2d=True)
        utterances.append(Utterance(example["id"], waveform.mean(axis=1), rate, example["text"]))
    return utterances, sum(problem.utterances for problem in problems)


def generated_utterances(count: int, seed: int, rate: int = 16_000) -> list[Utterance]:
    """`count` utterances of 0.5 to 2 s of decaying tones over noise, each with a few of `QUICK_WORDS`."""
    rng = np.random.default_rng(seed)
    utterances = []
    for index in range(count):
        t = np.arange(int(rng.uniform(0.5, 2.0) * rate)) / rate
        tones = sum(np.sin(2 * np.pi * frequency * t) for frequency in rng.uniform(100, 900, size=3))
        waveform = (0.3 * tones * np.exp(-t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
        text = " ".join(rng.choice(QUICK_WORDS, size=int(rng.integers(1, 6))))
        utterances.append(Utterance(f"generated-{index}", waveform, rate, text))
    return utterances


def tiny_model(directory: Path) -> tuple[MERModel, MERProcessor]:
    """A random-init MER model around `mer.tiny`'s encoders (the demo's sizes, saved under `directory`), its
    classifier spread so that its answers depend on the input (`mer.tiny.spread_logits`: agreement means something),
    and its processor."""
    audio_dir, text_dir = build_tiny_encoders(directory, QUICK_WORDS)
    torch.manual_seed(0)
    model = MERModel.from_audio_text_pretrained(
        str(audio_dir), str(text_dir), fusion_num_layers=FUSION_LAYERS, fusion_hidden_size=32, fusion_num_heads=4
    )
    return spread_logits(model).eval(), MERProcessor.from_audio_text_pretrained(str(audio_dir), str(text_dir))


def prepare_runtimes(model: MERModel, processor: MERProcessor | None) -> tuple[dict[str, nn.Module], dict]:
    """Every runtime of `mer.serving.runtime.RUNTIMES` for `model`, and the seconds each took to prepare."""
    runtimes, seconds = {}, {}
    for name in RUNTIMES:
        start = time.perf_counter()
        runtimes[name] = prepare_for_inference(model, name, processor)
        seconds[name] = time.perf_counter() - start
    return runtimes, seconds


def logits_of(runtime: nn.Module, inputs: dict) -> torch.Tensor:
    """`runtime`'s logits on `inputs` (keyword arguments, as the processor names them), under `inference_mode`."""
    with torch.inference_mode():
        return runtime(**inputs).logits


def time_runtimes(runtimes: dict[str, nn.Module], inputs_list: list[dict], repeats: int) -> tuple[dict, dict]:
    """(seconds summed over `inputs_list` of each runtime's fastest of `repeats` runs, largest |logit| difference
    of each from eager). Each input runs once per runtime first (warm-up), then in rotating order."""
    names = list(runtimes)
    totals = dict.fromkeys(names, 0.0)
    differences = dict.fromkeys(names, 0.0)
    for number, inputs in enumerate(inputs_list):
        expected = logits_of(runtimes["eager"], inputs)
        for name in names:
            difference = (logits_of(runtimes[name], inputs) - expected).abs().max().item()
            differences[name] = max(differences[name], difference)
        watch = Stopwatch(torch.device("cpu"))
        for repeat in range(repeats):
            shift = (number + repeat) % len(names)
            for name in names[shift:] + names[:shift]:
                watch.time(name, partial(logits_of, runtimes[name], inputs))
        for name in names:
            totals[name] += min(watch.seconds[name])
    return totals, differences


def measure_agreement(
    runtimes: dict[str, nn.Module], processor: MERProcessor, utterances: list[Utterance]
) -> dict[str, dict]:
    """Per runtime: the share of `utterances` (each alone, as the processor prepares it) whose argmax matches
    eager's, the largest |logit| difference from eager, and the ids of the utterances where the argmax differs."""
    agree = dict.fromkeys(runtimes, 0)
    largest = dict.fromkeys(runtimes, 0.0)
    disagreements: dict[str, list[str]] = {name: [] for name in runtimes}
    for utterance in utterances:
        inputs = dict(
            processor(audio=[utterance.waveform], text=[utterance.text], sampling_rate=utterance.sampling_rate)
        )
        expected = logits_of(runtimes["eager"], inputs)
        for name, runtime in runtimes.items():
            logits = logits_of(runtime, inputs)
            largest[name] = max(largest[name], (logits - expected).abs().max().item())
            if int(logits.argmax(-1)) == int(expected.argmax(-1)):
                agree[name] += 1
            else:
                disagreements[name].append(utterance.id)
    return {
        name: {
            "agreement": agree[name] / len(utterances),
            "max_abs_logit_difference": largest[name],
            "disagreements": disagreements[name],
        }
        for name in runtimes
    }


def choose_default(results: dict[str, dict]) -> str:
    """The fastest runtime at batch 1 among those whose agreement is at least `AGREEMENT_TARGET` (eager always is:
    it is the reference). Batch 1 because the Space answers one recording at a time, and `mer predict`, which
    batches, prepares its runtime on every call: what a runtime gains in batches must first pay for its preparation
    (`prepare_seconds`, recorded beside)."""
    qualifying = [name for name, entry in results.items() if entry["agreement"] >= AGREEMENT_TARGET]
    return max(qualifying, key=lambda name: results[name][MODES[0]]["utterances_per_second"])


def speed_inputs(model: MERModel, num_batches: int, seed: int) -> tuple[dict[str, list[dict]], np.ndarray]:
    """Inputs of each mode (batch 1 in arrival order; length-sorted batches) and the utterances' durations."""
    sample = sample_grouped(num_batches, BATCH_SIZE, seed)
    durations, tokens = sample.durations, sample.token_counts
    cpu = torch.device("cpu")
    one_by_one = [
        make_inputs(durations[i : i + 1], tokens[i : i + 1], model, cpu, seed + i) for i in range(len(tokens))
    ]
    batched = [
        make_inputs(durations[batch], tokens[batch], model, cpu, seed + number)
        for number, batch in enumerate(sample.sorted_batches)
    ]
    return dict(zip(MODES, (one_by_one, batched), strict=True)), durations


def summarise(timed: dict, prepare_seconds: dict, agreement: dict, durations: np.ndarray) -> dict[str, dict]:
    """Per runtime: preparation time; per mode seconds, utterances/s, real-time factor, largest |logit| difference
    from eager; speed-ups over eager in each mode; the agreement entries."""
    results = {}
    for name in RUNTIMES:
        seconds = {mode: timed[mode][0][name] for mode in MODES}
        speedups = {mode: timed[mode][0]["eager"] / seconds[mode] for mode in MODES}
        modes = {
            mode: {
                "seconds": seconds[mode],
                "utterances_per_second": len(durations) / seconds[mode],
                "real_time_factor": seconds[mode] / float(durations.sum()),
                "max_abs_logit_difference": timed[mode][1][name],
            }
            for mode in MODES
        }
        results[name] = {"prepare_seconds": prepare_seconds[name], **modes, "speedup_over_eager": speedups}
        results[name].update(agreement[name])
    return results


def results_table(results: dict[str, dict]) -> str:
    """The markdown table: speed of each mode, speed-ups, agreement, largest logit difference, preparation time."""
    rows = []
    for name, entry in results.items():
        speedups = " / ".join(f"{entry['speedup_over_eager'][mode]:.2f}x" for mode in MODES)
        rows.append(
            [
                name,
                entry[MODES[0]]["utterances_per_second"],
                entry[MODES[1]]["utterances_per_second"],
                speedups,
                f"{100 * entry['agreement']:.2f}%",
                f"{entry['max_abs_logit_difference']:.2e}",
                entry["prepare_seconds"],
            ]
        )
    headers = [
        "runtime",
        "utt/s batch 1",
        f"utt/s batch {BATCH_SIZE}",
        f"speed-up over eager (1 / {BATCH_SIZE})",
        "agreement with eager",
        "max abs logit diff",
        "prepare s",
    ]
    return markdown_table(headers, rows)


def repository_path(path: Path) -> str:
    """`path` relative to the repository when it lies inside it (so a record reads the same on every checkout)."""
    resolved = path.resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(path)


def run(args: argparse.Namespace) -> dict:
    """Runs the benchmark described in the module docstring and writes its record to `args.out`."""
    torch.manual_seed(args.seed)
    machine = machine_info(torch.device("cpu"))
    with tempfile.TemporaryDirectory(prefix="cpu-inference-") as directory:
        if args.quick:  # one tiny model for both parts: its export alone takes most of the quick run
            speed_model, processor = tiny_model(Path(directory))
            demo_model, demo_processor = speed_model, processor
            utterances, left_out = generated_utterances(6, args.seed), 0
        else:
            speed_model = build_models([FUSION_LAYERS], quick=False, device=torch.device("cpu"))[FUSION_LAYERS]
            processor = None  # the base-size encoders have no tokenizer here: the export traces on random ids
            demo_model = MERModel.from_pretrained(args.model, dtype=torch.float32).eval()
            demo_processor = MERProcessor.from_pretrained(args.model)
            utterances, left_out = corpus_utterances(args.corpus)
        runtimes, prepare_seconds = prepare_runtimes(speed_model.eval(), processor)
        inputs, durations = speed_inputs(speed_model, args.num_batches, args.seed)
        timed = {mode: time_runtimes(runtimes, inputs[mode], args.repeats) for mode in MODES}
        if demo_model is not speed_model:
            runtimes, _ = prepare_runtimes(demo_model, demo_processor)
        agreement = measure_agreement(runtimes, demo_processor, utterances)

    results = summarise(timed, prepare_seconds, agreement, durations)
    default = choose_default(results)
    encoders = "tiny" if args.quick else "wav2vec2-base + bert-base"
    corpus = "generated" if args.quick else repository_path(args.corpus)
    table = results_table(results) + (
        f"\n\nSpeed: {len(durations)} utterances ({durations.sum():.0f} s of audio), {encoders}, best of "
        f"{args.repeats}. Agreement: {len(utterances)} utterances ({corpus}), one at a time. Default (fastest with "
        f"agreement >= {AGREEMENT_TARGET:.0%}, at batch 1): {default}."
    )
    settings = {
        "quick": args.quick,
        "runtimes": list(RUNTIMES),
        "fusion_layers": FUSION_LAYERS,
        "num_utterances": len(durations),
        "audio_seconds": float(durations.sum()),
        "batch_size": BATCH_SIZE,
        "num_batches": args.num_batches,
        "repeats": args.repeats,
        "agreement_target": AGREEMENT_TARGET,
        "model": None if args.quick else repository_path(args.model),
        "corpus": None if args.quick else repository_path(args.corpus),
        "agreement_utterances": len(utterances),
        "agreement_utterances_left_out": left_out,
        "threads": torch.get_num_threads(),
    }
    record = {"runtimes": results, "default": default}
    return write_report(args.out, "cpu_inference", machine, settings, record, table)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__, "cpu_inference", model_options=False)
    parser.add_argument("--num-batches", type=int, default=None, help=f"Batches of {BATCH_SIZE} drawn (default 3).")
    parser.add_argument("--repeats", type=int, default=None, help="Runs per input and runtime (default 3; quick 1).")
    parser.add_argument("--model", type=Path, default=DEMO_MODEL, help="Saved MER model for the agreement.")
    parser.add_argument("--corpus", type=Path, default=DEMO_CORPUS, help="IEMOCAP-layout corpus for the agreement.")
    args = settle_arguments(parser.parse_args(argv), num_batches=(3, 1), repeats=(3, 1))
    if not args.quick:
        for name, path, hint in (("--model", args.model, "make demo"), ("--corpus", args.corpus, "make demo")):
            if not path.exists():
                parser.error(f"{name} {path} does not exist: `{hint}` makes it, or pass another.")
    return args


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point; returns the written record."""
    return run_model_benchmark(run, parse_args(argv))


if __name__ == "__main__":
    main()
