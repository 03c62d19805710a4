"""MERProcessor: raw speech at any rate (mono or stereo, float or integer) and transcripts in, model inputs out."""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral

import torch
from torch.nn import functional as F
from transformers import AutoFeatureExtractor, AutoTokenizer, BatchFeature, PretrainedConfig
from transformers.processing_utils import ProcessorMixin

__all__ = ["MERProcessor", "resample", "to_mono_float32"]

# Largest number of channels we read as channels rather than as samples when an item is 2-D.
_MAX_CHANNELS = 16


class MERProcessor(ProcessorMixin):
    r"""
    Wraps a wav2vec2-style feature extractor and a tokenizer into one processor for [`MERModel`].

    Audio is converted to mono float32 (integers are scaled to [-1, 1], channels averaged), resampled to the feature
    extractor's rate with a windowed-sinc filter in plain torch, normalised per utterance and zero-padded; the
    sample mask is always returned, so the model can exclude padding frames whatever its front end.

    Args:
        feature_extractor ([`Wav2Vec2FeatureExtractor`] or compatible):
            Turns waveforms into `input_values`.
        tokenizer ([`PreTrainedTokenizerBase`]):
            Turns transcripts into `input_ids`.
    """

    def __init__(self, feature_extractor, tokenizer):
        super().__init__(feature_extractor, tokenizer)

    @classmethod
    def from_audio_text_pretrained(
        cls, audio_model_name_or_path: str, text_model_name_or_path: str, **kwargs
    ) -> MERProcessor:
        """Builds the processor from the feature extractor of an audio model and the tokenizer of a text model
        (Hub ids or local directories); `kwargs` go to both `from_pretrained` calls (e.g. `revision`)."""
        feature_extractor = AutoFeatureExtractor.from_pretrained(audio_model_name_or_path, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(text_model_name_or_path, **kwargs)
        return cls(feature_extractor=feature_extractor, tokenizer=tokenizer)

    @classmethod
    def _load_tokenizer_from_pretrained(
        cls, sub_processor_type, pretrained_model_name_or_path, subfolder="", **kwargs
    ):
        # The tokenizer's own files name its class. Without a config given, AutoTokenizer would load the MER model's
        # config (custom code) only to look for a tokenizer class there, and ask whether to trust that code.
        kwargs.setdefault("config", PretrainedConfig())
        return super()._load_tokenizer_from_pretrained(
            sub_processor_type, pretrained_model_name_or_path, subfolder=subfolder, **kwargs
        )

    @property
    def sampling_rate(self) -> int:
        """The rate the audio encoder expects; audio at other rates is resampled to it."""
        return self.feature_extractor.sampling_rate

    @property
    def reads_log_mel(self) -> bool:
        """Whether the audio encoder reads log-mel features (Whisper) rather than waveforms (wav2vec2-style)."""
        return "input_features" in self.feature_extractor.model_input_names

    @property
    def model_input_names(self) -> list[str]:
        audio = "input_features" if self.reads_log_mel else "input_values"
        return [audio, "audio_attention_mask", *_text_input_names(self.tokenizer)]

    def __call__(
        self,
        audio=None,
        text: str | Sequence[str] | None = None,
        sampling_rate: int | None = None,
        return_tensors: str | None = "pt",
        max_text_length: int | None = None,
        **kwargs,
    ) -> BatchFeature:
        r"""
        Prepares one utterance or a batch.

        Args:
            audio (`np.ndarray`, `torch.Tensor`, or a list of them):
                One waveform or a list of waveforms: float (any range, expected in [-1, 1]) or integer PCM (int16,
                int32, uint8), shaped `(samples,)`, `(channels, samples)` or `(samples, channels)` (the smaller axis
                of at most 16 is read as channels).
            text (`str` or `list[str]`):
                The transcript(s), one per waveform. An empty transcript is valid (laughter, silence).
            sampling_rate (`int`):
                Rate of `audio` in Hz (required). Audio at another rate than the feature extractor's is resampled.
            return_tensors (`str`, *optional*, defaults to `"pt"`):
                `"pt"`, `"np"` or `None` (lists).
            max_text_length (`int`, *optional*):
                Truncate transcripts to this many tokens; defaults to the tokenizer's maximum.

        Returns:
            [`BatchFeature`] with `input_values`, `audio_attention_mask`, `input_ids`, `text_attention_mask` and,
            for tokenizers that make them, `token_type_ids`.

        Raises:
            ValueError: naming the item, for a missing modality, batches of different sizes, a `sampling_rate`
                that is not a positive integer, empty audio, NaN or Inf samples, or a transcript that is not a string.
        """
        if kwargs:
            raise ValueError(f"Unexpected arguments {sorted(kwargs)}.")
        if audio is None or text is None:
            missing = " and ".join(name for name, value in (("audio", audio), ("text", text)) if value is None)
            raise ValueError(f"MER needs both modalities: {missing} missing. Pass `audio=` and `text=`.")
        if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, Integral) or sampling_rate <= 0:
            raise ValueError(f"sampling_rate must be a positive integer (Hz), got {sampling_rate!r}.")

        waveforms = _as_batch(audio)
        texts = [text] if isinstance(text, str) else list(text)
        if len(waveforms) != len(texts):
            raise ValueError(f"Got {len(waveforms)} audio items but {len(texts)} transcripts: one each is needed.")
        for index, item in enumerate(texts):
            if not isinstance(item, str):
                raise ValueError(f"text[{index}] must be a string (possibly empty), got {type(item).__name__}.")

        target_rate = self.sampling_rate
        waveforms = [
            resample(to_mono_float32(wave, name=f"audio[{index}]"), int(sampling_rate), target_rate).numpy()
            for index, wave in enumerate(waveforms)
        ]
        if self.reads_log_mel:
            audio_inputs = self._log_mel(waveforms)
            if return_tensors is None:
                audio_inputs = {name: tensor.tolist() for name, tensor in audio_inputs.items()}
        else:
            audio_inputs = self.feature_extractor(
                waveforms,
                sampling_rate=target_rate,
                padding=True,
                return_attention_mask=True,
                return_tensors=return_tensors,
            )
        text_inputs = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=max_text_length,
            return_tensors=return_tensors,
        )
        audio_name = self.model_input_names[0]
        features = {
            audio_name: audio_inputs[audio_name],
            "audio_attention_mask": audio_inputs["attention_mask"],
            "input_ids": text_inputs["input_ids"],
            "text_attention_mask": text_inputs["attention_mask"],
        }
        if "token_type_ids" in text_inputs:
            features["token_type_ids"] = text_inputs["token_type_ids"]
        return BatchFeature(features, tensor_type=return_tensors)

    def _log_mel(self, waveforms: list) -> dict[str, torch.Tensor]:
        """Whisper's log-mel features of each waveform on its own length (not padded to the 30 s window), zero-padded
        on the right to the longest, with the mask of real log-mel frames.

        Raises:
            ValueError: naming the item, for a clip shorter than one analysis window or longer than the window the
                encoder takes (30 s).
        """
        extractor = self.feature_extractor
        rate = self.sampling_rate
        window, longest = extractor.n_fft, extractor.n_samples
        for index, wave in enumerate(waveforms):
            if len(wave) < window:
                raise ValueError(
                    f"Audio too short for the audio encoder, which needs at least {window} samples for one frame: "
                    f"item {index} has {len(wave)} samples."
                )
            if len(wave) > longest:
                raise ValueError(
                    f"audio[{index}] lasts {len(wave) / rate:.1f} s, longer than the Whisper encoder's window of "
                    f"{longest / rate:.0f} s: crop it, or split it into windows and classify each."
                )
        features = [
            torch.from_numpy(
                extractor(wave, sampling_rate=rate, padding="longest", return_tensors="np")["input_features"][0]
            )
            for wave in waveforms
        ]
        frames = max(item.shape[-1] for item in features)
        padded = torch.zeros((len(features), features[0].shape[0], frames), dtype=torch.float32)
        mask = torch.zeros((len(features), frames), dtype=torch.int32)
        for row, item in enumerate(features):
            padded[row, :, : item.shape[-1]] = item
            mask[row, : item.shape[-1]] = 1
        return {"input_features": padded, "attention_mask": mask}


def _text_input_names(tokenizer) -> list[str]:
    names = ["input_ids", "text_attention_mask"]
    return names + ["token_type_ids"] if "token_type_ids" in tokenizer.model_input_names else names


def _as_batch(audio) -> list:
    """A single waveform (1-D, or 2-D with channels) becomes a batch of one; a list or tuple is a batch."""
    if isinstance(audio, (list, tuple)):
        if not audio:
            raise ValueError("audio is an empty list: give at least one waveform.")
        if all(isinstance(item, (int, float)) for item in audio):
            return [torch.tensor(audio, dtype=torch.float32)]
        return list(audio)
    return [audio]


def to_mono_float32(wave, name: str = "audio", sampling_rate: int | None = None) -> torch.Tensor:
    """Returns a 1-D float32 tensor from a numpy array or tensor: integer PCM scaled to [-1, 1], channels averaged.

    Raises:
        ValueError: naming `name`, for an empty waveform, NaN or Inf samples (where the first is: in seconds when
            `sampling_rate` is given, else as a sample index), or an unsupported dtype or shape.
    """
    try:
        wave = torch.as_tensor(wave).detach().cpu()
    except (TypeError, RuntimeError, ValueError) as error:
        raise ValueError(f"{name} must be a numeric array or tensor, got {type(wave).__name__}.") from error
    if wave.dtype == torch.bool or wave.is_complex():
        raise ValueError(f"{name} must hold real numbers, got dtype {wave.dtype}.")
    if not wave.is_floating_point():  # integer PCM: full scale is 2 ** (bits - 1); unsigned PCM is offset by that
        info = torch.iinfo(wave.dtype)
        full_scale = 2.0 ** (info.bits - 1)
        wave = (wave.double() - (full_scale if info.min == 0 else 0.0)) / full_scale
    if wave.dim() == 2:
        channel_axis = int(torch.tensor(wave.shape).argmin())
        if wave.shape[channel_axis] > _MAX_CHANNELS:
            raise ValueError(
                f"{name} has shape {tuple(wave.shape)}: expected (samples,), (channels, samples) or "
                f"(samples, channels) with at most {_MAX_CHANNELS} channels. Pass a batch as a list of waveforms."
            )
        wave = wave.double().mean(dim=channel_axis)
    elif wave.dim() != 1:
        raise ValueError(f"{name} has shape {tuple(wave.shape)}: expected (samples,) or (channels, samples).")
    if wave.numel() == 0:
        raise ValueError(f"{name} is empty: it has no samples.")
    finite = torch.isfinite(wave)
    if not finite.all():  # in the words of `pipeline_mer.audio_problem`, which knows the time
        first = int((~finite).reshape(-1).nonzero()[0])
        where = f"sample {first}." if sampling_rate is None else f"{first / sampling_rate:.2f} s: the file is damaged."
        raise ValueError(
            f"{name} holds {int((~finite).sum())} samples that are not numbers (NaN or infinite), the first at {where}"
        )
    return wave.to(torch.float32).contiguous()


def resample(
    wave: torch.Tensor,
    orig_freq: int,
    new_freq: int,
    lowpass_filter_width: int = 6,
    rolloff: float = 0.99,
) -> torch.Tensor:
    """Band-limited resampling of `wave` `(..., samples)` from `orig_freq` to `new_freq` Hz, in plain torch.

    Each output sample is the input convolved with a Hann-windowed sinc low-pass filter evaluated at the output
    instant, with the cut-off at `rolloff` times the lower of the two Nyquist frequencies and `lowpass_filter_width`
    zero crossings on each side. Rates whose ratio reduces to small integers (44.1 kHz, 48 kHz, 8 kHz to 16 kHz)
    run as one strided convolution with a filter per output phase; any other pair of rates evaluates the filter
    at each output instant, in chunks. Returns `ceil(samples * new_freq / orig_freq)` samples.
    """
    if orig_freq == new_freq:
        return wave
    if orig_freq <= 0 or new_freq <= 0:
        raise ValueError(f"Sampling rates must be positive, got {orig_freq} -> {new_freq}.")
    divisor = math.gcd(orig_freq, new_freq)
    step, phases = orig_freq // divisor, new_freq // divisor  # `phases` outputs for every `step` inputs
    band = rolloff * min(1.0, new_freq / orig_freq)  # cut-off as a fraction of the input Nyquist frequency
    half_width = lowpass_filter_width / band  # filter half-length, in input samples
    num_samples = wave.shape[-1]
    num_out = math.ceil(num_samples * phases / step)
    flat = wave.reshape(-1, num_samples).to(torch.float64)
    reach = math.ceil(half_width)
    if phases * (step + 2 * reach + 1) <= _MAX_POLYPHASE_TAPS:
        output = _resample_polyphase(flat, step, phases, band, half_width, reach, num_out)
    else:
        output = _resample_direct(flat, step / phases, band, half_width, reach, num_out)
    dtype = wave.dtype if wave.is_floating_point() else torch.float32
    return output.to(dtype).reshape(*wave.shape[:-1], num_out)


# Above this filter-bank size (phases x taps) the per-instant evaluation is cheaper than the convolution.
_MAX_POLYPHASE_TAPS = 1 << 21


def _lowpass(distance: torch.Tensor, band: float, half_width: float) -> torch.Tensor:
    """The Hann-windowed sinc filter at `distance` input samples from its centre."""
    window = torch.cos(distance.clamp(-half_width, half_width) * (math.pi / (2 * half_width))) ** 2
    return band * torch.sinc(band * distance) * window * (distance.abs() <= half_width)


def _resample_polyphase(
    flat: torch.Tensor, step: int, phases: int, band: float, half_width: float, reach: int, num_out: int
) -> torch.Tensor:
    # Output q * phases + r lies at input position q * step + r * step / phases: phase r's filter, read at the
    # inputs q * step + k for k in [-reach, step + reach], is one row of a strided convolution.
    offsets = torch.arange(-reach, step + reach + 1, dtype=torch.float64)
    centres = torch.arange(phases, dtype=torch.float64)[:, None] * (step / phases)
    bank = _lowpass(centres - offsets, band, half_width)  # (phases, taps)
    padded = F.pad(flat[:, None, :].float(), (reach, step + reach))  # float32: float64 convolutions are slow
    output = F.conv1d(padded, bank[:, None, :].float(), stride=step)  # (channels, phases, blocks)
    return output.transpose(1, 2).reshape(len(flat), -1)[:, :num_out]


def _resample_direct(
    flat: torch.Tensor, ratio: float, band: float, half_width: float, reach: int, num_out: int, chunk: int = 1 << 16
) -> torch.Tensor:
    num_samples = flat.shape[-1]
    taps = torch.arange(-reach, reach + 2)
    output = torch.empty(len(flat), num_out, dtype=torch.float64)
    for start in range(0, num_out, chunk):
        position = torch.arange(start, min(start + chunk, num_out), dtype=torch.float64) * ratio
        index = position.floor().long()[:, None] + taps  # (chunk, taps): the inputs around each output instant
        weights = _lowpass(position[:, None] - index, band, half_width)
        inside = (index >= 0) & (index < num_samples)
        samples = flat[:, index.clamp(0, num_samples - 1)] * inside  # (channels, chunk, taps)
        output[:, start : start + len(position)] = (samples * weights).sum(dim=-1)
    return output
