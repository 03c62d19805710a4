"""Measures the local app as a user meets it: cold start of `python space/app.py` (process start to the page being
served) and the latency of requests through gradio_client. Not part of the deployed Space.

    python space/measure_latency.py --model runs/demo/run/session1/model [--asr_model openai/whisper-small.en]
    python space/measure_latency.py            # no model yet: a tiny random MER model (space/dev_models.py)

Without --asr_model, speech recognition is a tiny random CTC model built here (offline; it transcribes nonsense),
so the figures are MER's own plus the app's overhead.

Requests use the app's example clips (espeak-ng, about 1.5 s) and a 10 s clip made by repeating one; each figure is
the median (and slowest) of `--requests` calls after the first, which is reported on its own.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
from dev_models import save_tiny_asr, save_tiny_mer  # this script's folder, space/, is on sys.path
from example_clips import make_example_clips

SPACE_DIR = Path(__file__).resolve().parent


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="MER_MODEL for the app; default: a tiny random model built here")
    parser.add_argument("--asr_model", help="MER_ASR_MODEL; default: a tiny random CTC model built here")
    parser.add_argument("--requests", type=int, default=10, help="timed requests per case, after a first one")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mer-latency-") as work:
        model = args.model or str(save_tiny_mer(Path(work) / "mer"))
        asr_model = args.asr_model or str(save_tiny_asr(Path(work) / "asr"))
        if args.model is None:
            print("No --model: timing a tiny random MER model (wav2vec2 and BERT of width 32), not a trained one.")
        clip, long_clip = _clips(Path(work))
        port = _free_port()
        env = {
            **os.environ,
            "MER_MODEL": model,
            "MER_ASR_MODEL": asr_model,
            "GRADIO_SERVER_PORT": str(port),
            "GRADIO_ANALYTICS_ENABLED": "False",
        }
        started = time.perf_counter()
        app = subprocess.Popen([sys.executable, str(SPACE_DIR / "app.py")], env=env, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}/"
            _wait_until_served(url, app)
            print(f"cold start (process start to page served): {time.perf_counter() - started:.1f} s")
            _time_requests(url, clip, long_clip, args.requests)
        finally:
            app.terminate()
            app.wait(timeout=30)


def _clips(work: Path) -> tuple[Path, Path]:
    clip = Path(make_example_clips(work / "examples")[0][0])
    wave, rate = sf.read(clip, dtype="float32")
    long_clip = work / "ten-seconds.wav"
    sf.write(long_clip, np.resize(wave, 10 * rate), rate)
    return clip, long_clip


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_served(url: str, process: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the app exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the app did not serve {url} within {timeout} s")


def _time_requests(url: str, clip: Path, long_clip: Path, count: int) -> None:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    cases: dict[str, Callable[[], object]] = {
        f"/predict, typed transcript, {sf.info(clip).duration:.1f} s clip": lambda: client.predict(
            handle_file(str(clip)), "what a wonderful party!", api_name="/predict"
        ),
        "/predict, typed transcript, 10 s clip": lambda: client.predict(
            handle_file(str(long_clip)), "what a wonderful party!", api_name="/predict"
        ),
        f"/analyse (UI: + attention picture), {sf.info(clip).duration:.1f} s clip": lambda: client.predict(
            handle_file(str(clip)), "what a wonderful party!", api_name="/analyse"
        ),
        "/predict, no transcript (speech recognition), 10 s clip": lambda: client.predict(
            handle_file(str(long_clip)), "", api_name="/predict"
        ),
    }
    for name, call in cases.items():
        first = _seconds(call)
        times = [_seconds(call) for _ in range(count)]
        print(
            f"{name}: first {1000 * first:.0f} ms, then median {1000 * statistics.median(times):.0f} ms, "
            f"slowest {1000 * max(times):.0f} ms over {count}"
        )


def _seconds(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
