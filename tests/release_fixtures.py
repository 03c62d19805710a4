"""Small trees in the layout of the public releases, with real decodable audio, for the builders' and the corpora's
tests. Each writes a few files per speaker, at the release's own rate, and returns the root it wrote."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = ["SHARED_DATA", "write_clip", "write_emodb", "write_ravdess"]

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def write_clip(path: Path, rate: int = 16_000, seconds: float = 0.3, seed: int = 0, channels: int = 1) -> Path:
    """A short tone with noise at `path` (the format follows the suffix: .wav, .flac, .ogg ...)."""
    rng = np.random.default_rng(seed)
    time = np.arange(int(rate * seconds)) / rate
    wave = 0.3 * np.sin(2 * np.pi * (150 + 10 * (seed % 20)) * time) + 0.01 * rng.standard_normal(time.size)
    if channels > 1:
        wave = np.stack([wave] * channels, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave.astype(np.float32), rate)
    return path


def write_ravdess(root: Path, emotions=("01", "03", "04", "05"), statements=("01",), flat: bool = False) -> Path:
    """RAVDESS speech as released (``Actor_NN/03-01-EE-II-SS-RR-NN.wav``, 48 kHz) for every actor, normal intensity,
    first repetition, the given emotions and statements; `flat` puts every file in `root` itself."""
    for actor in range(1, 25):
        for emotion in emotions:
            for statement in statements:
                name = f"03-01-{emotion}-01-{statement}-01-{actor:02d}.wav"
                folder = root if flat else root / f"Actor_{actor:02d}"
                write_clip(folder / name, rate=48_000, seed=actor * 10 + int(emotion))
    return root


def write_emodb(root: Path, emotions: str = "NFWT", per_cell: int = 1) -> Path:
    """EmoDB as released (``wav/SSTTTEV.wav``; 22.05 kHz here, as in republished copies): for every speaker and each
    of `emotions` (the release's letters), the first `per_cell` of the release's own file names."""
    from dataset_scripts.emodb.emodb import RELEASE_NAMES

    for speaker in ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16"):
        for emotion in emotions:
            names = sorted(name for name in RELEASE_NAMES if name.startswith(speaker) and name[5] == emotion)
            for name in names[:per_cell]:
                write_clip(root / "wav" / f"{name}.wav", rate=22_050, seed=int(speaker) + ord(emotion))
    return root
