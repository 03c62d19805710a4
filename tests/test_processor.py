"""MERProcessor: any rate, mono or stereo, float or integer audio in; masks out; clear errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import speech_like

from modeling_mer.processing_mer import resample


def test_outputs_and_masks(processor):
    audio = [speech_like(0.5), speech_like(1.0)]
    inputs = processor(audio=audio, text=["i love this day", ""], sampling_rate=16000)
    assert set(inputs) == {
        "input_values",
        "audio_attention_mask",
        "input_ids",
        "text_attention_mask",
        "token_type_ids",
    }
    assert inputs["input_values"].shape == (2, 16000)
    assert inputs["audio_attention_mask"].sum(-1).tolist() == [8000, 16000]
    assert torch.all(inputs["input_values"][0, 8000:] == 0)
    # Each utterance is normalised over its own samples, not over the padding.
    real = inputs["input_values"][0, :8000]
    assert abs(real.mean().item()) < 1e-4 and abs(real.std().item() - 1) < 1e-2
    # An empty transcript is valid: just [CLS] [SEP].
    assert inputs["text_attention_mask"][1].sum().item() == 2


def test_integer_pcm_is_scaled_like_float(processor):
    wave = speech_like(0.5)
    as_int16 = np.round(wave * 32767).astype(np.int16)
    from_float = processor(audio=wave, text="a", sampling_rate=16000)["input_values"]
    from_int = processor(audio=as_int16, text="a", sampling_rate=16000)["input_values"]
    torch.testing.assert_close(from_float, from_int, atol=2e-3, rtol=0)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last", "torch"])
def test_stereo_is_mixed_to_mono(processor, layout):
    left, right = speech_like(0.5, seed=1), speech_like(0.5, seed=2)
    stereo = np.stack([left, right])
    stereo = {"channels_first": stereo, "channels_last": stereo.T, "torch": torch.from_numpy(stereo)}[layout]
    mixed = processor(audio=stereo, text="a", sampling_rate=16000)["input_values"]
    mono = processor(audio=(left + right) / 2, text="a", sampling_rate=16000)["input_values"]
    torch.testing.assert_close(mixed, mono)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000, 44101])
def test_resampling_keeps_a_tone_and_the_duration(rate):
    seconds, frequency = 1.5, 440.0
    wave = torch.sin(2 * torch.pi * frequency * torch.arange(int(seconds * rate), dtype=torch.float64) / rate)
    out = resample(wave.float(), rate, 16000)
    assert len(out) == int(np.ceil(len(wave) * 16000 / rate))
    reference = torch.sin(2 * torch.pi * frequency * torch.arange(len(out), dtype=torch.float64) / 16000)
    assert (out[400:-400] - reference[400:-400]).abs().max() < 1e-3


def test_resampling_removes_what_the_new_rate_cannot_carry():
    rate = 44100
    t = torch.arange(rate, dtype=torch.float64) / rate
    above_nyquist = torch.sin(2 * torch.pi * 10_000 * t)  # above 8 kHz: must not alias into the 16 kHz signal
    assert resample(above_nyquist, rate, 16000)[400:-400].abs().max() < 0.01


def test_processor_resamples_to_the_feature_extractor_rate(processor):
    inputs = processor(audio=speech_like(1.0, rate=44100), text="a", sampling_rate=44100)
    assert inputs["input_values"].shape == (1, 16000)


@pytest.mark.parametrize(
    ("audio", "text", "sampling_rate", "message"),
    [
        (np.zeros(0, np.float32), "a", 16000, "audio\\[0\\] is empty"),
        (np.array([0.1, np.nan, 0.2], np.float32), "a", 16000, r"audio\[0\] holds 1 samples that are not numbers"),
        (
            [speech_like(0.2), np.array([0.1, np.inf] * 800, np.float32)],
            ["a", "b"],
            16000,
            r"audio\[1\] holds 800 samples that are not numbers \(NaN or infinite\), the first at sample 1\.",
        ),
        ([speech_like(0.2), speech_like(0.2)], ["only one"], 16000, "2 audio items but 1 transcripts"),
        (None, "a", 16000, "both modalities: audio missing"),
        (speech_like(0.2), None, 16000, "both modalities: text missing"),
        (speech_like(0.2), "a", "16000", "sampling_rate must be a positive integer"),
        (speech_like(0.2), "a", 16000.0, "sampling_rate must be a positive integer"),
        (speech_like(0.2), "a", None, "sampling_rate must be a positive integer"),
        (speech_like(0.2), "a", True, "sampling_rate must be a positive integer"),
        (speech_like(0.2), "a", -8000, "sampling_rate must be a positive integer"),
        (speech_like(0.2), [None], 16000, "text\\[0\\] must be a string"),
        (np.zeros((3, 40, 40), np.float32), "a", 16000, "audio\\[0\\] has shape \\(3, 40, 40\\)"),
        (np.zeros((100, 200), np.float32), "a", 16000, "at most 16 channels"),
        (np.array(["a", "b"]), "a", 16000, "audio\\[0\\] must be a numeric array"),
    ],
)
def test_bad_input_is_refused_naming_the_item(processor, audio, text, sampling_rate, message):
    with pytest.raises(ValueError, match=message):
        processor(audio=audio, text=text, sampling_rate=sampling_rate)


def test_numpy_integer_sampling_rate_is_accepted(processor):
    inputs = processor(audio=speech_like(0.2), text="a", sampling_rate=np.int64(16000))
    assert inputs["input_values"].shape == (1, 3200)
