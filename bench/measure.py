"""How the benchmarks measure: the device, wall-clock timing, FLOP counting, the machine's matrix-multiplication
limit, peak memory and the allocator, the thread count."""

from __future__ import annotations

import contextlib
import ctypes
import resource
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

__all__ = [
    "Stopwatch",
    "autocast",
    "bf16_support",
    "count_flops",
    "keep_freed_memory",
    "matmul_flops_per_second",
    "peak_memory_bytes",
    "resolve_device",
    "run_model_benchmark",
    "synchronize",
    "torch_threads",
]


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
