"""What the benchmarks record: their common arguments, the machine they ran on, the JSON and markdown record of a
run under bench/results/, and train.py runs."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import transformers

from bench.measure import bf16_support
from mer.training.reporting import cpu_model

__all__ = [
    "REPO",
    "RESULTS_DIR",
    "base_parser",
    "machine_info",
    "markdown_table",
    "run_train",
    "settle_arguments",
    "write_report",
]


RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO = RESULTS_DIR.parents[1]


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
            help="glibc malloc keeps freed memory instead of unmapping it (bench.measure.keep_freed_memory).",
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
