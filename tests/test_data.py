"""The shared batching pieces: length-grouped sampling and collation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import speech_like

from mer_tools.data import LengthGroupedSampler, MERCollator, padding_share


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
    silent = MERCollator(processor, masked_modality="audio")(items)
    assert torch.all(silent["input_values"] == 0) and silent["input_values"].shape == (2, 48000)
    no_words = MERCollator(processor, masked_modality="text")(items)
    assert no_words["text_attention_mask"].sum(-1).tolist() == [2, 2]  # [CLS] [SEP] only
    with pytest.raises(ValueError, match="masked_modality must be one of"):
        MERCollator(processor, masked_modality="video")
