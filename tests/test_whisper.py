"""Whisper encoders as MER's audio tower: only the encoder is kept, it runs on each batch's own length with padding
masked, its frames are masked at its own rate, and the rest of MER (saving, dtype, checkpointing, freezing) works
with it. The real Whisper tiny.en from ../shared/models is used where it is present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import speech_like
from safetensors.torch import load_file
from transformers import AutoModel, BertModel, WhisperModel

from modeling_mer import MERModel, MERProcessor, MERWhisperEncoder

REAL_WHISPER = Path(__file__).resolve().parents[2] / "shared" / "models" / "whisper-tiny.en"
TEXT = ["i love this wonderful day", "hate", "what a great surprise !"]


@pytest.fixture(scope="module")
def whisper_processor(tiny_whisper, tiny_encoders) -> MERProcessor:
    return MERProcessor.from_audio_text_pretrained(tiny_whisper, tiny_encoders[1])


@pytest.fixture
def make_whisper_model(tiny_whisper, tiny_encoders):
    def make(**config_kwargs) -> MERModel:
        torch.manual_seed(0)
        config_kwargs = {"fusion_hidden_size": 16, "fusion_num_heads": 2, **config_kwargs}
        return MERModel.from_audio_text_pretrained(tiny_whisper, tiny_encoders[1], **config_kwargs)

    return make


@pytest.fixture(scope="module")
def batch(whisper_processor):
    audio = [speech_like(1.0, seed=1), speech_like(0.45, seed=2), speech_like(2.3, seed=3)]
    return whisper_processor(audio=audio, text=TEXT, sampling_rate=16000)


def test_only_the_encoder_is_kept_with_its_pretrained_weights(make_whisper_model, tiny_whisper, tmp_path):
    model = make_whisper_model()
    assert isinstance(model.audio_encoder, MERWhisperEncoder) and model.config.audio_family == "whisper"
    pretrained = WhisperModel.from_pretrained(tiny_whisper).encoder.state_dict()
    assert model.audio_encoder.state_dict().keys() == pretrained.keys()
    for name, tensor in model.audio_encoder.state_dict().items():
        assert torch.equal(tensor, pretrained[name]), name
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "model.safetensors")
    assert not any("decoder" in name for name in saved)
    assert {name.split(".")[1] for name in saved if name.startswith("audio_encoder.")} == {
        "conv1", "conv2", "embed_positions", "layers", "layer_norm"
    }  # fmt: skip


def test_the_processor_makes_log_mel_features_of_each_clip_at_any_rate(whisper_processor):
    stereo = (np.stack([speech_like(1.2, seed=4, rate=44100)] * 2) * 20000).astype(np.int16)
    inputs = whisper_processor(
        audio=[stereo, speech_like(0.5, seed=5, rate=44100)], text=["a", ""], sampling_rate=44100
    )
    assert inputs.keys() == {
        "input_features",
        "audio_attention_mask",
        "input_ids",
        "text_attention_mask",
        "token_type_ids",
    }
    assert inputs["input_features"].shape == (2, 80, 120)  # 1.2 s at 16 kHz: 19200 samples, one frame per 160
    assert inputs["audio_attention_mask"].sum(-1).tolist() == [120, 50]
    assert inputs["input_features"][1, :, 50:].abs().max() == 0  # padding is zeros, not log-mel of silence


def test_padding_never_changes_a_prediction(make_whisper_model, whisper_processor, batch):
    model = make_whisper_model().eval()
    audio = [speech_like(1.0, seed=1), speech_like(0.45, seed=2), speech_like(2.3, seed=3)]
    with torch.no_grad():
        together = model(**batch)
        for index, (wave, text) in enumerate(zip(audio, TEXT, strict=True)):
            alone = model(**whisper_processor(audio=wave, text=text, sampling_rate=16000))
            frames = int(alone.audio_frame_mask.sum())
            assert frames == alone.audio_frame_mask.shape[1] == int(together.audio_frame_mask[index].sum())
            difference = (alone.logits[0] - together.logits[index]).abs().max().item()
            print(f"item {index} ({frames} frames): batched vs alone max |logit diff| {difference:.1e}")
            torch.testing.assert_close(alone.logits[0], together.logits[index], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(alone.pooled_output[0], together.pooled_output[index], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("whisper", ["tiny", "real tiny.en"])
def test_a_full_window_gives_exactly_what_whisper_gives(tiny_whisper, tiny_encoders, whisper, tmp_path):
    if whisper == "real tiny.en" and not REAL_WHISPER.is_dir():
        pytest.skip(f"the real Whisper tiny.en is not at {REAL_WHISPER} (it is in the team's ../shared/models)")
    directory = str(REAL_WHISPER) if whisper == "real tiny.en" else tiny_whisper
    processor = MERProcessor.from_audio_text_pretrained(directory, tiny_encoders[1])
    stock = WhisperModel.from_pretrained(directory).encoder.eval()
    ours = MERModel.from_audio_text_pretrained(directory, tiny_encoders[1]).audio_encoder.eval()
    full = processor(audio=[speech_like(30.0, seed=6)], text=["a"], sampling_rate=16000)
    with torch.no_grad():
        expected = stock(full["input_features"]).last_hidden_state
        got = ours(full["input_features"], attention_mask=full["audio_attention_mask"]).last_hidden_state
        # The same 30 s next to a 3 s clip in one batch: the long one's frames do not change.
        both = processor(
            audio=[speech_like(3.0, seed=7), speech_like(30.0, seed=6)], text=["a", "b"], sampling_rate=16000
        )
        batched = ours(both["input_features"], attention_mask=both["audio_attention_mask"]).last_hidden_state[1]
    print(f"{whisper}: own-length encoder vs stock Whisper on 30 s, max |diff| {(got - expected).abs().max():.1e}")
    assert got.shape == expected.shape == (1, 1500, stock.config.d_model)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batched, expected[0], atol=1e-4, rtol=1e-4)


def test_too_short_and_too_long_clips_are_refused_naming_the_item(make_whisper_model, whisper_processor):
    with pytest.raises(ValueError, match="at least 400 samples for one frame: item 1 has 320 samples"):
        whisper_processor(audio=[speech_like(0.5), speech_like(0.02)], text=["a", "b"], sampling_rate=16000)
    with pytest.raises(
        ValueError, match="audio\\[0\\] lasts 31.0 s, longer than the Whisper encoder's window of 30 s"
    ):
        whisper_processor(audio=[speech_like(31.0)], text=["a"], sampling_rate=16000)
    model = make_whisper_model().eval()
    inputs = whisper_processor(audio=[speech_like(0.5)], text=["a"], sampling_rate=16000)
    with pytest.raises(ValueError, match="item 0 has 0 log-mel frames"):
        model(**dict(inputs, audio_attention_mask=torch.zeros_like(inputs["audio_attention_mask"])))
    with pytest.raises(ValueError, match="reads input_features, its log-mel features \\(got input_values instead\\)"):
        model(input_values=torch.zeros(1, 16000), input_ids=inputs["input_ids"])


def test_audio_and_text_checkpoints_of_the_wrong_kind_are_refused(tiny_whisper, tiny_encoders, tmp_path):
    BertModel.from_pretrained(tiny_encoders[1]).save_pretrained(tmp_path / "bert-as-audio")
    with pytest.raises(
        ValueError, match="audio_config \\(bert\\) is not a supported audio encoder. Supported: wav2vec2"
    ):
        MERModel.from_audio_text_pretrained(str(tmp_path / "bert-as-audio"), tiny_encoders[1])
    with pytest.raises(ValueError, match="text_config \\(whisper\\) is not a text encoder"):
        MERModel.from_audio_text_pretrained(tiny_encoders[0], tiny_whisper)


def test_saved_model_loads_in_bf16_and_trains_with_gradient_checkpointing(make_whisper_model, batch, tmp_path):
    make_whisper_model().save_pretrained(tmp_path)
    model = AutoModel.from_pretrained(tmp_path, trust_remote_code=True, dtype=torch.bfloat16).eval()
    assert type(model.audio_encoder).__name__ == "MERWhisperEncoder"
    inputs = dict(batch, input_features=batch["input_features"].to(torch.bfloat16))
    with torch.no_grad():
        assert torch.isfinite(model(**inputs).logits.float()).all()

    gradients = []
    for checkpointing in (False, True):
        model = MERModel.from_pretrained(tmp_path, use_cross_pair_task=False, use_consistency_task=False).train()
        if checkpointing:
            model.activation_checkpointing_enable()
            assert all(layer.gradient_checkpointing for layer in model.audio_encoder.layers)
        torch.manual_seed(1)  # the same dropout masks in both runs
        model(**batch, labels=torch.tensor([0, 1, 2])).loss.backward()
        gradients.append(torch.cat([p.grad.flatten() for p in model.audio_encoder.parameters() if p.grad is not None]))
    torch.testing.assert_close(gradients[1], gradients[0])


@pytest.mark.parametrize(("frozen", "learning_layers"), [(True, []), (1, [1]), (0, [0, 1]), (False, [0, 1])])
def test_freezing_the_audio_encoder_whole_or_its_lower_layers(make_whisper_model, batch, frozen, learning_layers):
    model = make_whisper_model(freeze_audio_encoder=frozen).train()
    model(**batch, labels=torch.tensor([0, 1, 2])).loss.backward()
    encoder = model.audio_encoder
    learned = {
        index for index, layer in enumerate(encoder.layers) if all(p.grad is not None for p in layer.parameters())
    }
    assert learned == set(learning_layers)
    assert all(p.grad is None for p in (*encoder.conv1.parameters(), *encoder.conv2.parameters()))
    assert (encoder.layer_norm.weight.grad is not None) == bool(learning_layers)
    assert model.audio_projection.weight.grad is not None  # what sits on the frozen features still learns
