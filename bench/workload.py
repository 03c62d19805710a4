"""What the benchmarks run on: IEMOCAP's length distribution, utterances sampled from it and grouped as training
groups them, models built from configs, and input batches as the processor makes them."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import BertConfig, PretrainedConfig, Wav2Vec2Config

from mer.serving.export import noise_inputs
from mer.tiny import tiny_audio_config, tiny_text_config
from modeling_mer import MERConfig, MERModel

__all__ = [
    "IEMOCAP_4CLASS",
    "LengthStats",
    "SAMPLING_RATE",
    "UtteranceSample",
    "batches",
    "build_models",
    "encoder_configs",
    "make_inputs",
    "sample_grouped",
    "sample_utterances",
    "training_default",
]


SAMPLING_RATE = 16_000


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
    """The default of a train.py argument (`mer.training.arguments.Arguments`), so the benchmarks never restate it."""
    from mer.training.arguments import Arguments

    return {field.name: field.default for field in dataclasses.fields(Arguments)}[name]
