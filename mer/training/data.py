"""Utterances from a `datasets` corpus to model batches: decoding, length-grouped training batches, evaluation batches
that padding cannot change, and collation (with the single-modality conditions and modality dropout)."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import datasets
import torch
from torch.utils.data import Dataset, Sampler
from transformers import BatchFeature

from modeling_mer.processing_mer import resample

__all__ = [
    "MODALITIES",
    "AudioHeader",
    "LengthGroupedSampler",
    "MERCollator",
    "UtteranceDataset",
    "audio_durations",
    "audio_headers",
    "decode_audio",
    "evaluation_batches",
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


@dataclass(frozen=True)
class AudioHeader:
    """What a file's header says about one utterance's audio."""

    seconds: float
    sampling_rate: int
    channels: int


def audio_headers(dataset: datasets.Dataset, audio_column: str = "audio") -> list[AudioHeader]:
    """Duration, rate and channels of every utterance, read from the file headers (nothing is decoded, except a
    file whose header lacks the duration).

    Raises:
        ValueError: listing every file that cannot be read, by path (or row index for embedded audio).
    """
    from torchcodec.decoders import AudioDecoder

    encoded = dataset.select_columns([audio_column]).cast_column(audio_column, datasets.Audio(decode=False))
    headers, problems = [], []
    for row, value in enumerate(encoded[audio_column]):
        source = value["bytes"] if value["bytes"] is not None else value["path"]
        try:
            metadata = AudioDecoder(source).metadata
            duration = metadata.duration_seconds_from_header
            if duration is None:
                duration = AudioDecoder(source).get_all_samples().duration_seconds
            headers.append(AudioHeader(float(duration), int(metadata.sample_rate), int(metadata.num_channels)))
        except Exception as error:  # noqa: BLE001 - every decoding failure is reported together below
            problems.append(f"{value['path'] or f'row {row}'}: {error}")
    if problems:
        listed = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ValueError(f"{len(problems)} audio file(s) cannot be read:\n  {listed}{more}")
    return headers


def audio_durations(dataset: datasets.Dataset, audio_column: str = "audio") -> list[float]:
    """Duration in seconds of every utterance (`audio_headers`)."""
    return [header.seconds for header in audio_headers(dataset, audio_column)]


class UtteranceDataset(Dataset):
    """A `datasets.Dataset` seen as `{"audio", "sampling_rate", "text", "label"}` items (plus `"index"` with
    `with_index`, and `"dimensions"`, the ratings of `dimension_columns` with NaN for a missing one), audio decoded
    on access."""

    def __init__(
        self,
        dataset: datasets.Dataset,
        audio_column: str = "audio",
        text_column: str = "text",
        label_column: str = "label",
        with_index: bool = False,
        dimension_columns: Sequence[str] = (),
    ):
        self.dataset = dataset.select_columns([audio_column, text_column, label_column, *dimension_columns])
        self.columns = (audio_column, text_column, label_column)
        self.dimension_columns = tuple(dimension_columns)
        self.with_index = with_index

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        audio_column, text_column, label_column = self.columns
        row = self.dataset[int(index)]
        audio, rate = decode_audio(row[audio_column])
        item = {"audio": audio, "sampling_rate": rate, "text": row[text_column], "label": row[label_column]}
        if self.dimension_columns:
            item["dimensions"] = [math.nan if row[c] is None else float(row[c]) for c in self.dimension_columns]
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


def evaluation_batches(
    durations: Sequence[float], batch_size: int, equal_lengths_only: bool = False
) -> list[list[int]]:
    """Every utterance exactly once, longest first, in batches of at most `batch_size` (little padding).

    With `equal_lengths_only` a batch holds only utterances of one length, so nothing is padded: for audio encoders
    that are not given the sample mask (group-norm wav2vec2 such as wav2vec2-base), whose group norm and
    self-attention would otherwise see the padding, and whose predictions would depend on the batch.
    """
    order = sorted(range(len(durations)), key=lambda index: -durations[index])
    batches: list[list[int]] = []
    for index in order:
        last = batches[-1] if batches else None
        fits = last is not None and len(last) < batch_size
        if fits and (not equal_lengths_only or durations[last[0]] == durations[index]):
            last.append(index)
        else:
            batches.append([index])
    return batches


@dataclass
class MERCollator:
    """Turns `UtteranceDataset` items into a model batch with `labels` (and `dimension_labels` when the items have
    dimensions).

    Args:
        processor: the [`MERProcessor`] (resampling, normalisation, padding, tokenisation).
        max_audio_seconds: crop longer audio to a random window of this length (training); `None` keeps whole
            utterances (evaluation).
        window_seconds: the longest audio the audio encoder takes in one pass (Whisper: 30 s), or `None`. Audio
            still longer after the training crop keeps its first `window_seconds`.
        keep_only: `"audio"` empties every transcript, `"text"` replaces every waveform by silence of the same
            length: the single-modality conditions of a fused model.
        modality_dropout: the share of utterances that lose one modality, the transcript or the audio with equal
            chance, as `keep_only` would remove it (training: a missing modality at inference is then a case the
            model has seen). Drawn from torch's random number generator.
        with_labels: `False` leaves the class `labels` out of the batch: a dimensions-only model, which has no
            classes, refuses them in training.
    """

    processor: object
    max_audio_seconds: float | None = None
    window_seconds: float | None = None
    keep_only: str | None = None
    modality_dropout: float = 0.0
    with_labels: bool = True

    def __post_init__(self):
        if self.keep_only not in (None, *MODALITIES):
            raise ValueError(f"keep_only must be one of {MODALITIES} or None, got {self.keep_only!r}.")
        if not 0.0 <= self.modality_dropout < 1.0:
            raise ValueError(f"modality_dropout must be in [0, 1), got {self.modality_dropout!r}.")

    def __call__(self, items: list[dict]) -> BatchFeature:
        rate, audio = self._one_rate(items)
        audio = [self._crop(wave, rate) for wave in audio]
        text = [item["text"] for item in items]
        for index, kept in enumerate(self._kept_modalities(len(items))):
            if kept == "audio":
                text[index] = ""
            elif kept == "text":
                audio[index] = torch.zeros_like(audio[index])
        batch = self.processor(audio=audio, text=text, sampling_rate=rate)
        if self.with_labels:
            batch["labels"] = torch.tensor([item["label"] for item in items], dtype=torch.long)
        if "dimensions" in items[0]:  # NaN where an utterance has no rating: the loss leaves it out
            batch["dimension_labels"] = torch.tensor([item["dimensions"] for item in items], dtype=torch.float32)
        if "index" in items[0]:  # lets evaluation put gathered predictions back in dataset order
            batch["indices"] = torch.tensor([item["index"] for item in items], dtype=torch.long)
        return batch

    def _one_rate(self, items: list[dict]) -> tuple[int, list[torch.Tensor]]:
        """The batch's audio at one rate: as it is when every item shares one, else each resampled to the audio
        encoder's rate (pooled corpora recorded at 16, 22.05 and 48 kHz)."""
        rates = {item["sampling_rate"] for item in items}
        if len(rates) == 1:
            return rates.pop(), [item["audio"] for item in items]
        target = self.processor.sampling_rate
        return target, [resample(item["audio"], item["sampling_rate"], target) for item in items]

    def _kept_modalities(self, size: int) -> list[str | None]:
        """Per item: the one modality it keeps, or None when it keeps both."""
        if self.keep_only is not None:
            return [self.keep_only] * size
        if self.modality_dropout == 0.0:
            return [None] * size
        dropped = (torch.rand(size) < self.modality_dropout).tolist()
        keeps = torch.randint(0, len(MODALITIES), (size,)).tolist()
        return [MODALITIES[keep] if drop else None for drop, keep in zip(dropped, keeps, strict=True)]

    def _crop(self, wave: torch.Tensor, rate: int) -> torch.Tensor:
        if self.max_audio_seconds is not None:
            keep = math.ceil(self.max_audio_seconds * rate)
            if wave.shape[-1] > keep:
                start = int(torch.randint(0, wave.shape[-1] - keep + 1, ()).item())
                wave = wave[..., start : start + keep]
        if self.window_seconds is not None:
            wave = wave[..., : math.floor(self.window_seconds * rate)]
        return wave
