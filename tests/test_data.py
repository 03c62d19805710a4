"""The shared batching pieces: length-grouped sampling and collation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import speech_like

from mer.training.data import LengthGroupedSampler, MERCollator, evaluation_batches, padding_share


def iemocap_like_lengths(count: int = 5531, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(np.log(3.58), 0.7, count), 0.58, 15.0).tolist()


@pytest.mark.parametrize("batch_size", [4, 8, 16])
def test_length_grouping_keeps_padding_under_five_percent(batch_size):
    lengths = iemocap_like_lengths()  # 5531 is not a multiple of any batch size: one short batch per epoch
    sampler = LengthGroupedSampler(lengths, batch_size, seed=3)
    order = list(sampler)
    assert sorted(order) == list(range(len(lengths)))
    grouped = padding_share(lengths, order, batch_size)
    random_batches = padding_share(
        lengths, list(LengthGroupedSampler(lengths, batch_size, mega_batches=1)), batch_size
    )
    assert grouped <= 0.05 < random_batches


def test_the_order_follows_seed_and_epoch():
    lengths = iemocap_like_lengths(200)
    first, again = LengthGroupedSampler(lengths, 8, seed=1), LengthGroupedSampler(lengths, 8, seed=1)
    assert list(first) == list(again)
    again.set_epoch(1)
    assert list(first) != list(again)


def test_collator_crops_for_training_and_masks_a_modality(processor):
    items = [
        {"audio": torch.from_numpy(speech_like(3.0))[None], "sampling_rate": 16000, "text": "a great day", "label": 1},
        {"audio": torch.from_numpy(speech_like(0.5))[None], "sampling_rate": 16000, "text": "the mess", "label": 2},
    ]
    batch = MERCollator(processor, max_audio_seconds=1.0)(items)
    assert batch["input_values"].shape == (2, 16000)
    assert batch["labels"].tolist() == [1, 2]
    silent = MERCollator(processor, keep_only="text")(items)
    assert torch.all(silent["input_values"] == 0) and silent["input_values"].shape == (2, 48000)
    no_words = MERCollator(processor, keep_only="audio")(items)
    assert no_words["text_attention_mask"].sum(-1).tolist() == [2, 2]  # [CLS] [SEP] only
    with pytest.raises(ValueError, match="keep_only must be one of"):
        MERCollator(processor, keep_only="video")
    with pytest.raises(ValueError, match=r"modality_dropout must be in \[0, 1\)"):
        MERCollator(processor, modality_dropout=1.0)


def test_a_batch_of_corpora_recorded_at_different_rates_and_channels_is_resampled_to_the_encoders(processor):
    """EmoDB's 22.05 kHz mono beside RAVDESS's 48 kHz (here stereo): each at the encoder's 16 kHz, lengths kept."""
    emodb = torch.from_numpy(speech_like(1.0, rate=22050))[None]
    ravdess = torch.from_numpy(speech_like(0.5, rate=48000))[None].repeat(2, 1)
    items = [
        {"audio": emodb, "sampling_rate": 22050, "text": "a great day", "label": 1},
        {"audio": ravdess, "sampling_rate": 48000, "text": "the mess", "label": 2},
    ]
    batch = MERCollator(processor)(items)
    assert batch["input_values"].shape == (2, 16000)
    assert batch["audio_attention_mask"].sum(-1).tolist() == [16000, 8000]
    alone = MERCollator(processor)(items[1:])  # one rate: the processor resamples it as before
    assert torch.allclose(alone["input_values"][0, :8000], batch["input_values"][1, :8000], atol=1e-4)


def test_modality_dropout_empties_or_silences_the_given_share(processor):
    # Offset from zero, so that only a silenced waveform is all zeros after normalisation.
    waves = [torch.from_numpy(0.1 + speech_like(0.5, seed=i))[None] for i in range(400)]
    items = [{"audio": wave, "sampling_rate": 16000, "text": "a great day", "label": 0} for wave in waves]
    torch.manual_seed(0)
    batch = MERCollator(processor, modality_dropout=0.3)(items)
    no_words = batch["text_attention_mask"].sum(-1) == 2
    silent = (batch["input_values"] == 0).all(-1)
    assert not (no_words & silent).any()  # an utterance loses one modality, never both
    assert 0.25 < (no_words | silent).float().mean() < 0.35
    assert abs(no_words.float().mean() - silent.float().mean()) < 0.08  # transcript or audio, equally often
    torch.manual_seed(0)
    again = MERCollator(processor, modality_dropout=0.3)(items)
    assert torch.equal(again["input_values"], batch["input_values"])  # drawn from torch's seeded generator
    assert (MERCollator(processor)(items)["text_attention_mask"].sum(-1) > 2).all()


@pytest.mark.parametrize("equal_lengths_only", [False, True])
def test_evaluation_batches_hold_every_utterance_once_longest_first(equal_lengths_only):
    durations = [1.0, 3.0, 2.0, 3.0, 1.0, 1.0, 2.5, 3.0]
    batches = evaluation_batches(durations, 2, equal_lengths_only=equal_lengths_only)
    assert sorted(index for batch in batches for index in batch) == list(range(len(durations)))
    assert all(len(batch) <= 2 for batch in batches)
    flat = [durations[index] for batch in batches for index in batch]
    assert flat == sorted(flat, reverse=True)
    mixed = [batch for batch in batches if len({durations[index] for index in batch}) > 1]
    assert (mixed == []) == equal_lengths_only
