"""What training, the Space and the benchmarks share: reading utterances, batching by length, collating."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import datasets
import torch
from torch.utils.data import Dataset, Sampler
from transformers import BatchFeature

__all__ = [
    "MODALITIES",
    "LengthGroupedSampler",
    "MERCollator",
    "UtteranceDataset",
    "audio_durations",
    "decode_audio",
    "padding_share",
]

MODALITIES = ("audio", "text")


def decode_audio(value) -> tuple[torch.Tensor, int]:
    """Decodes a `datasets` Audio value (a torchcodec decoder, or a `{"array", "sampling_rate"}` dict) into a
    `(channels, samples)` float32 tensor and its rate."""
    if isinstance(value, dict) and "array" in value:
        return torch.as_tensor(value["array"], dtype=torch.float32), int(value["sampling_rate"])
    samples = value.get_all_samples()
    return samples.data.to(torch.float32), int(samples.sample_rate)


def audio_durations(dataset: datasets.Dataset, audio_column: str = "audio") -> list[float]:
    """Duration in seconds of every utterance, read from the file headers (nothing is decoded).

    Raises:
        ValueError: listing every file that cannot be read, by path (or row index for embedded audio).
    """
    from torchcodec.decoders import AudioDecoder

    encoded = dataset.select_columns([audio_column]).cast_column(audio_column, datasets.Audio(decode=False))
    durations, problems = [], []
    for row, value in enumerate(encoded[audio_column]):
        source = value["bytes"] if value["bytes"] is not None else value["path"]
        try:
            metadata = AudioDecoder(source).metadata
            duration = metadata.duration_seconds_from_header
            if duration is None:
                duration = AudioDecoder(source).get_all_samples().duration_seconds
            durations.append(float(duration))
        except Exception as error:  # noqa: BLE001 - every decoding failure is reported together below
            problems.append(f"{value['path'] or f'row {row}'}: {error}")
    if problems:
        listed = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ValueError(f"{len(problems)} audio file(s) cannot be read:\n  {listed}{more}")
    return durations


class UtteranceDataset(Dataset):
    """A `datasets.Dataset` seen as `{"audio", "sampling_rate", "text", "label"}` items (plus `"index"` with
    `with_index`), audio decoded on access."""

    def __init__(
        self,
        dataset: datasets.Dataset,
        audio_column: str = "audio",
        text_column: str = "text",
        label_column: str = "label",
        with_index: bool = False,
    ):
        self.dataset = dataset.select_columns([audio_column, text_column, label_column])
        self.columns = (audio_column, text_column, label_column)
        self.with_index = with_index

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        audio_column, text_column, label_column = self.columns
        row = self.dataset[int(index)]
        audio, rate = decode_audio(row[audio_column])
        item = {"audio": audio, "sampling_rate": rate, "text": row[text_column], "label": row[label_column]}
        return {**item, "index": int(index)} if self.with_index else item


class LengthGroupedSampler(Sampler[int]):
    """Shuffled indices arranged so that each run of `batch_size` consecutive indices has similar lengths.

    Each epoch: shuffle, cut into mega-batches of `mega_batches * batch_size`, sort each by length, cut into batches,
    shuffle the full batches and put the short one (if any) last. Little padding, still random. The order depends
    only on `seed` and the epoch (`set_epoch`), so every process of a distributed run agrees on it.
    """

    def __init__(self, lengths: Sequence[float], batch_size: int, seed: int = 0, mega_batches: int = 50):
        self.lengths, self.batch_size, self.seed, self.mega_batches = list(lengths), batch_size, seed, mega_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        span = self.mega_batches * self.batch_size
        batches = []
        for start in range(0, len(order), span):
            mega = sorted(order[start : start + span], key=self.lengths.__getitem__, reverse=True)
            batches += [mega[i : i + self.batch_size] for i in range(0, len(mega), self.batch_size)]
        # Only full batches are shuffled: a short one in the middle would shift every later batch across two length
        # groups once the DataLoader cuts the stream into runs of `batch_size`.
        full = [batch for batch in batches if len(batch) == self.batch_size]
        rng.shuffle(full)
        short = [batch for batch in batches if len(batch) < self.batch_size]
        return (index for batch in full + short for index in batch)


def padding_share(lengths: Sequence[float], order: Sequence[int], batch_size: int) -> float:
    """Share of the padded batch area that is padding when `order` is cut into batches of `batch_size`."""
    padded = real = 0.0
    for start in range(0, len(order), batch_size):
        batch = [lengths[i] for i in order[start : start + batch_size]]
        padded += max(batch) * len(batch)
        real += sum(batch)
    return 1.0 - real / padded if padded else 0.0


@dataclass
class MERCollator:
    """Turns `UtteranceDataset` items into a model batch with `labels`.

    Args:
        processor: the [`MERProcessor`] (resampling, normalisation, padding, tokenisation).
        max_audio_seconds: crop longer audio to a random window of this length (training); `None` keeps whole
            utterances (evaluation).
        masked_modality: `"audio"` replaces each waveform by silence of the same length, `"text"` each transcript by
            an empty one: the single-modality ablations of a fused model.
    """

    processor: object
    max_audio_seconds: float | None = None
    masked_modality: str | None = None

    def __post_init__(self):
        if self.masked_modality not in (None, *MODALITIES):
            raise ValueError(f"masked_modality must be one of {MODALITIES} or None, got {self.masked_modality!r}.")

    def __call__(self, items: list[dict]) -> BatchFeature:
        rates = {item["sampling_rate"] for item in items}
        if len(rates) != 1:
            raise ValueError(f"A batch mixes sampling rates {sorted(rates)}; cast the audio column to one rate.")
        rate = rates.pop()
        audio = [self._crop(item["audio"], rate) for item in items]
        text = [item["text"] for item in items]
        if self.masked_modality == "audio":
            audio = [torch.zeros_like(wave) for wave in audio]
        elif self.masked_modality == "text":
            text = [""] * len(text)
        batch = self.processor(audio=audio, text=text, sampling_rate=rate)
        batch["labels"] = torch.tensor([item["label"] for item in items], dtype=torch.long)
        if "index" in items[0]:  # lets evaluation put gathered predictions back in dataset order
            batch["indices"] = torch.tensor([item["index"] for item in items], dtype=torch.long)
        return batch

    def _crop(self, wave: torch.Tensor, rate: int) -> torch.Tensor:
        if self.max_audio_seconds is None:
            return wave
        keep = math.ceil(self.max_audio_seconds * rate)
        if wave.shape[-1] <= keep:
            return wave
        start = int(torch.randint(0, wave.shape[-1] - keep + 1, ()).item())
        return wave[..., start : start + keep]
