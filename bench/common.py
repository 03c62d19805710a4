"""What the benchmarks share: IEMOCAP's length distribution, models built from configs, input batches, timing, FLOP
counting, the machine's matrix-multiplication limit, and the JSON / markdown record of a run."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import datetime
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import transformers
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count
from transformers import BertConfig, PretrainedConfig, Wav2Vec2Config

from mer.export import noise_inputs
from mer.reporting import cpu_model
from mer.tiny import tiny_audio_config, tiny_text_config
from modeling_mer import MERConfig, MERModel

__all__ = [
    "IEMOCAP_4CLASS",
    "RESULTS_DIR",
    "SAMPLING_RATE",
    "LengthStats",
    "Stopwatch",
    "UtteranceSample",
    "autocast",
    "base_parser",
    "batches",
    "bf16_support",
    "build_models",
    "count_flops",
    "encoder_configs",
    "keep_freed_memory",
    "machine_info",
    "make_inputs",
    "markdown_table",
    "matmul_flops_per_second",
    "peak_memory_bytes",
    "resolve_device",
    "sample_grouped",
    "sample_utterances",
    "settle_arguments",
    "synchronize",
    "torch_threads",
    "training_default",
    "write_report",
]

SAMPLING_RATE = 16_000
RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO = RESULTS_DIR.parents[1]


@dataclass(frozen=True)
class LengthStats:
    """Summary of a corpus's utterance durations in seconds."""

    count: int
    mean: float
    median: float
    p90: float
    p99: float
    min: float
    max: float


# IEMOCAP, 4 classes (neutral, happy + excited, angry, sad), as the issue states it.
IEMOCAP_4CLASS = LengthStats(count=5531, mean=4.55, median=3.58, p90=8.69, p99=15.55, min=0.58, max=34.1)
# Transcripts: 5 to 40 tokens (with [CLS] and [SEP]), about 3 tokens per second of speech.
MIN_TOKENS, MAX_TOKENS, TOKENS_PER_SECOND = 5, 40, 3.0


def sample_utterances(count: int, seed: int, stats: LengthStats = IEMOCAP_4CLASS) -> tuple[np.ndarray, np.ndarray]:
    """Durations (s) and token counts of `count` utterances drawn in arrival (random) order.

    Durations follow a log-normal fitted to the median and mean (`mu = ln median`, `sigma^2 = 2 ln(mean / median)`;
    for IEMOCAP it gives a 90th percentile of 8.7 s, as measured, and a 99th of 17.9 s against 15.6 s), clipped
    to the corpus's min and max. Token counts are `3 tokens/s x duration x U(0.75, 1.25)`, clipped to 5..40.
    """
    rng = np.random.default_rng(seed)
    sigma = math.sqrt(2.0 * math.log(stats.mean / stats.median))
    durations = np.clip(rng.lognormal(math.log(stats.median), sigma, size=count), stats.min, stats.max)
    tokens = np.rint(TOKENS_PER_SECOND * durations * rng.uniform(0.75, 1.25, size=count))
    return durations, np.clip(tokens, MIN_TOKENS, MAX_TOKENS).astype(int)


@dataclass
class UtteranceSample:
    """Utterances drawn for a benchmark: `durations` (s) and `token_counts`, in arrival order, and `sorted_batches`,
    their indices in length-grouped batches (each batch of similar lengths, as sorting a whole corpus makes them)."""

    durations: np.ndarray
    token_counts: np.ndarray
    sorted_batches: list[list[int]]


def sample_grouped(
    num_batches: int,
    batch_size: int,
    seed: int,
    crop_seconds: float | None = None,
    stats: LengthStats = IEMOCAP_4CLASS,
) -> UtteranceSample:
    """`num_batches` batches as length-sorted batching of a whole corpus makes them, with little padding.

    A corpus-sized set (`stats.count` utterances, `sample_utterances`) is sorted by duration (cropped to
    `crop_seconds`, as training crops) and cut into batches; one batch is picked at random in each of `num_batches`
    equal strata of that order (stratified, so the lengths span the distribution). The picked utterances are
    returned in a random (arrival) order, with `sorted_batches` indexing them."""
    durations, tokens = sample_utterances(stats.count, seed, stats)
    if crop_seconds is not None:
        durations = np.minimum(durations, crop_seconds)
    corpus_batches = batches(np.argsort(-durations, kind="stable").tolist(), batch_size)
    corpus_batches = [batch for batch in corpus_batches if len(batch) == batch_size]
    rng = np.random.default_rng(seed + 1)
    edges = np.linspace(0, len(corpus_batches), num_batches + 1).astype(int)
    picked = [corpus_batches[rng.integers(low, high)] for low, high in zip(edges[:-1], edges[1:], strict=True)]
    chosen = np.array([index for batch in picked for index in batch])
    arrival = rng.permutation(len(chosen))  # position in arrival order of each chosen utterance
    position = {int(chosen[a]): n for n, a in enumerate(arrival)}
    return UtteranceSample(
        durations=durations[chosen[arrival]],
        token_counts=tokens[chosen[arrival]],
        sorted_batches=[[position[int(index)] for index in batch] for batch in picked],
    )


def batches(order: Sequence[int], batch_size: int) -> list[list[int]]:
    """`order` cut into consecutive batches of `batch_size` (the last one may be shorter)."""
    order = list(order)
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


# ----------------------------------------------------------------------------------------------------------------
# Models and inputs


def encoder_configs(quick: bool) -> tuple[PretrainedConfig, PretrainedConfig]:
    """(audio, text) encoder configs: wav2vec2-base and bert-base, or the tiny test encoders with `quick`.

    wav2vec2-base's LayerDrop is switched off (`layerdrop=0`): in training it skips each transformer layer with
    probability 0.1, which makes the cost of a step random; SpecAugment masking (cheap) stays as configured."""
    if quick:
        return tiny_audio_config(), tiny_text_config(vocab_size=64)
    return Wav2Vec2Config(layerdrop=0.0), BertConfig()


def build_models(
    fusion_layers: Sequence[int],
    quick: bool,
    device: torch.device,
    attn_implementation: str = "sdpa",
    **config_kwargs,
) -> dict[int, MERModel]:
    """One `MERModel` per K in `fusion_layers`, all sharing the same two encoders (so timing them alone measures
    exactly the encoders inside every model). Random weights: speed does not depend on them.

    `config_kwargs` go to `MERConfig` (e.g. `freeze_feature_encoder=False`); `attn_implementation` (`"sdpa"` or
    `"eager"`) reaches both encoders through the config's sub-configs."""
    audio_config, text_config = encoder_configs(quick)
    if quick:  # a fusion as small as the tiny encoders (the demo's), else it would dominate their cost
        config_kwargs = {"fusion_hidden_size": 32, "fusion_num_heads": 4, **config_kwargs}
    models: dict[int, MERModel] = {}
    for k in fusion_layers:
        config = MERConfig(
            audio_config=audio_config,
            text_config=text_config,
            fusion_num_layers=k,
            attn_implementation=attn_implementation,
            **config_kwargs,
        )
        if not models:
            model = MERModel(config)
        else:
            first = next(iter(models.values()))
            model = MERModel(config, audio_encoder=first.audio_encoder, text_encoder=first.text_encoder)
        models[k] = model.to(device)
    return models


def make_inputs(
    durations: Sequence[float],
    token_counts: Sequence[int],
    model: MERModel,
    device: torch.device,
    seed: int = 0,
    with_labels: bool = False,
) -> dict[str, torch.Tensor]:
    """A model batch as `MERProcessor` makes it: unit-variance noise waveforms of the given durations, zero-padded
    on the right with their sample mask; random token ids, padded, with their mask and `token_type_ids`."""
    generator = torch.Generator().manual_seed(seed)
    samples = [max(int(round(d * SAMPLING_RATE)), model.config.audio_receptive_field) for d in durations]
    inputs = noise_inputs(model.config, samples, token_counts, generator)
    if with_labels:
        inputs["labels"] = torch.randint(0, model.config.num_labels, (len(samples),), generator=generator)
    return {name: tensor.to(device) for name, tensor in inputs.items()}


def training_default(name: str):
    """The default of a train.py argument (`mer.arguments.Arguments`), so the benchmarks never restate it."""
    from mer.arguments import Arguments

    return {field.name: field.default for field in dataclasses.fields(Arguments)}[name]


# ----------------------------------------------------------------------------------------------------------------
# Device, timing, FLOPs, memory


def resolve_device(name: str) -> torch.device:
    """`auto` is cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def synchronize(device: torch.device) -> None:
    """Waits for queued GPU work, so wall-clock time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on `device` when `bf16`, else nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def bf16_support(device: torch.device) -> dict:
    """What the device offers for bf16: on CPU the ISA flags (`avx512_bf16` has bf16 dot products, `amx_bf16`
    tile matrix units) and whether oneDNN reports native bf16; on GPU `torch.cuda.is_bf16_supported()`."""
    if device.type == "cuda":
        return {"native": bool(torch.cuda.is_bf16_supported())}
    flags = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    onednn = getattr(torch.backends.mkldnn, "is_bf16_supported", None)
    return {
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "onednn_bf16": bool(onednn()) if onednn is not None else None,
    }


class Stopwatch:
    """Times callables on `device` (synchronising before and after) and keeps the results by name."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, list[float]] = {}

    def time(self, name: str, function: Callable[[], object]) -> float:
        synchronize(self.device)
        start = time.perf_counter()
        function()
        synchronize(self.device)
        elapsed = time.perf_counter() - start
        self.seconds.setdefault(name, []).append(elapsed)
        return elapsed


# The CPU flash-attention kernel that SDPA uses has no formula in torch.utils.flop_counter: count it as attention.
_ATEN = torch.ops.aten
_EXTRA_FLOP_FORMULAS = {
    _ATEN._scaled_dot_product_flash_attention_for_cpu: lambda q, k, v, *args, out_shape=None, **kwargs: (
        sdpa_flop_count(q, k, v)
    ),
    _ATEN._scaled_dot_product_flash_attention_for_cpu_backward: lambda g, q, k, v, *args, out_shape=None, **kwargs: (
        sdpa_backward_flop_count(g, q, k, v)
    ),
}


def count_flops(function: Callable[[], object]) -> int:
    """FLOPs of the matrix multiplications, convolutions and attention `function` runs (forward, and backward when
    it calls it), counted by `torch.utils.flop_counter.FlopCounterMode`; it runs `function` once."""
    with FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOP_FORMULAS) as counter:
        function()
    return int(counter.get_total_flops())


def matmul_flops_per_second(
    device: torch.device, dtype: torch.dtype = torch.float32, size: int = 4096, repeats: int = 5
) -> float:
    """The machine's practical limit: FLOP/s of the fastest of `repeats` `size x size` matrix products (after one
    warm-up), `2 size^3` FLOPs each."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    watch = Stopwatch(device)
    for _ in range(repeats + 1):
        watch.time("mm", lambda: a @ b)
    return 2.0 * size**3 / min(watch.seconds["mm"][1:])


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory of this process: `torch.cuda.max_memory_allocated` on GPU; on CPU the peak resident set size
    (`resource.getrusage(RUSAGE_SELF).ru_maxrss`, the whole process, never reset)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux


def keep_freed_memory() -> bool:
    """Makes glibc's malloc serve every allocation from its heap and keep what is freed there, for the rest of the
    process: `mallopt(M_MMAP_MAX, 0)` and `mallopt(M_TRIM_THRESHOLD, 2 GiB)`, the in-process equivalent of
    `MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647`.

    By default glibc gives each allocation above 32 MiB its own mmap and unmaps it when freed, so every such tensor
    (wav2vec2's CNN makes 6.5 MB of activations per second of audio per layer) is paid for again in page faults
    that the kernel zero-fills. Returns False (and changes nothing) where the C library is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # from glibc's malloc.h
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))


# ----------------------------------------------------------------------------------------------------------------
# Command line and record


def base_parser(description: str, name: str, model_options: bool = True) -> argparse.ArgumentParser:
    """Arguments every benchmark takes: `--quick`, `--out`, `--seed`, `--threads`; with `model_options` also
    `--device` and `--bf16`."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Tiny encoders and a handful of utterances (tests).")
    parser.add_argument(
        "--out", type=Path, default=RESULTS_DIR / f"{name}.json", help="JSON to write (default: %(default)s)."
    )
    if model_options:
        parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1, ...")
        parser.add_argument("--bf16", action="store_true", help="Run the model under bf16 autocast.")
        parser.add_argument(
            "--keep-freed-memory",
            action="store_true",
            help="glibc malloc keeps freed memory instead of unmapping it (bench.common.keep_freed_memory).",
        )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the sampled utterances and inputs.")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's choice, one per core; 1 with --quick, where tiny models are "
        "dominated by per-operation overhead).",
    )
    return parser


def settle_arguments(args: argparse.Namespace, **defaults) -> argparse.Namespace:
    """Fills the arguments left at None with `defaults[name] = (full, quick)` by `args.quick`, and `threads`."""
    for name, (full, quick) in {**defaults, "threads": (None, 1)}.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def machine_info(device: torch.device) -> dict:
    """Where and with what a benchmark ran: CPU model and cores, torch threads, GPU, versions, date, load."""
    info = {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "bf16": bf16_support(device),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "environment": {name: value for name, value in os.environ.items() if name.startswith(_RECORDED_VARIABLES)},
        "load_average_start": _load_average(),
        "_cpu_snapshot": _cpu_snapshot(),
    }
    return info


_RECORDED_VARIABLES = ("OMP_", "MKL_", "KMP_", "MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD", "CUDA_VISIBLE_DEVICES")


def _cpu_snapshot() -> tuple[float, float, float] | None:
    """(busy CPU seconds of the whole machine from /proc/stat, CPU seconds of this process and its finished
    children, wall-clock seconds), or None where /proc/stat is missing."""
    try:
        fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    busy = (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    own = sum(
        getattr(resource.getrusage(who), field)
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        for field in ("ru_utime", "ru_stime")
    )
    return busy, own, time.monotonic()


def _other_processes_cpu_share(start: tuple[float, float, float] | None) -> float | None:
    """Share of the machine's CPU time that other processes used since `start`: how disturbed the run was."""
    end = _cpu_snapshot()
    if start is None or end is None:
        return None
    others = (end[0] - start[0]) - (end[1] - start[1])
    return max(others, 0.0) / ((end[2] - start[2]) * (os.cpu_count() or 1))


def _load_average() -> list[float] | None:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub markdown table; floats are written with 3 significant digits."""

    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
        return "-" if value is None else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(path: Path, benchmark: str, machine: dict, settings: dict, results: dict, table: str) -> dict:
    """Writes `{benchmark, machine, settings, results, table}` as JSON to `path` (adding the load average at the
    end of the run to `machine`), prints the table, and returns the record."""
    machine = dict(machine)
    machine["other_processes_cpu_share"] = _other_processes_cpu_share(machine.pop("_cpu_snapshot", None))
    machine["load_average_end"] = _load_average()
    record = {"benchmark": benchmark, "machine": machine, "settings": settings, "results": results, "table": table}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=_jsonable) + "\n")
    where = f"{machine['gpu'] or machine['cpu']} ({machine['device']})"
    load = f"load average {machine['load_average_start']} -> {machine['load_average_end']}"
    if machine["other_processes_cpu_share"] is not None:
        load += f", other processes used {100 * machine['other_processes_cpu_share']:.1f}% of the CPU time"
    print(f"{benchmark} on {where}, {load}\n\n{table}\n\nwritten to {path}")
    return record


def _jsonable(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (Path, torch.device, torch.dtype)):
        return str(value)
    raise TypeError(f"Cannot write {type(value).__name__} to JSON.")


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Runs the block with `count` intra-op threads (None: leave as is)."""
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def run_model_benchmark(run, args) -> dict:
    """What every model benchmark's `main` does with its parsed arguments: apply the allocator setting when asked,
    then `run(args)` under the requested thread count."""
    if getattr(args, "keep_freed_memory", False):
        keep_freed_memory()
    with torch_threads(args.threads):
        return run(args)


def run_train(arguments: list[str], what: str) -> tuple[list[str], float]:
    """train.py with `arguments`, one process, from the repository root: the whole command and its wall time.

    Raises:
        RuntimeError: train.py failed (naming `what`, with the end of its error output).
    """
    command = [sys.executable, str(REPO / "train.py"), *arguments]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"train.py ({what}) failed:\n{result.stderr[-3000:]}")
    return command, time.perf_counter() - started
