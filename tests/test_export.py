"""Export for deployment: torch.export with dynamic shapes, and `python -m mer.serving.export` to ONNX run by
onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime
import pytest
import torch
from conftest import speech_like
from transformers import AutoConfig, AutoProcessor

from mer.serving import export
from modeling_mer import MERModel, MERProcessor
from modeling_mer.pipeline_mer import save_with_pipeline


@pytest.fixture(scope="module")
def traced_batch(processor):
    audio = [speech_like(1.3, seed=4), speech_like(0.8, seed=5)]
    return dict(processor(audio=audio, text=["i love this wonderful day", "hate"], sampling_rate=16000))


@pytest.fixture(scope="module")
def other_batch(processor):
    """Another batch size, other audio and text lengths, padded: not the shapes the export was traced on."""
    audio = [speech_like(2.2, seed=6), speech_like(0.3, seed=7), speech_like(0.9, seed=8)]
    text = ["what a great surprise", "", "the meeting starts at noon . i hate the awful mess"]
    return dict(processor(audio=audio, text=text, sampling_rate=16000))


def test_torch_export_with_dynamic_shapes_matches_eager(make_model, traced_batch, other_batch):
    model = make_model(fusion_num_layers=2).eval()
    program = export.export_program(model, traced_batch)
    for batch in (traced_batch, other_batch):
        with torch.no_grad():
            expected = model(**batch)
        got = program.module()(**batch)
        difference = (got.logits - expected.logits).abs().max().item()
        print(f"torch.export vs eager, batch {tuple(batch['input_values'].shape)}: max |logit diff| {difference:.2e}")
        torch.testing.assert_close(got.logits, expected.logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got.pooled_output, expected.pooled_output, atol=1e-5, rtol=1e-5)


def test_a_whisper_tower_exports_to_torch_export_and_onnx(tiny_whisper, tiny_encoders, tmp_path):
    torch.manual_seed(0)
    model = MERModel.from_audio_text_pretrained(tiny_whisper, tiny_encoders[1], fusion_hidden_size=16).eval()
    processor = MERProcessor.from_audio_text_pretrained(tiny_whisper, tiny_encoders[1])
    traced = dict(processor(audio=[speech_like(1.3), speech_like(0.8)], text=["a", "b"], sampling_rate=16000))
    other = dict(
        processor(
            audio=[speech_like(2.2), speech_like(0.3), speech_like(0.9)], text=["a", "", "c"], sampling_rate=16000
        )
    )
    program = export.export_program(model, traced)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(**other).logits, model(**other).logits, atol=1e-5, rtol=1e-5)

    save_with_pipeline(model, processor, tmp_path / "model")
    report = export.export_onnx(tmp_path / "model", tmp_path / "exported")
    assert report["inputs"][0] == "input_features" and report["check"]["max_abs_logit_difference"] <= 1e-4


def test_export_refuses_a_model_in_training_mode(make_model, traced_batch):
    with pytest.raises(ValueError, match="evaluation mode: call model.eval"):
        export.export_program(make_model().train(), traced_batch)


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        (300, "min_audio_samples=300 is below the audio encoder's receptive field \\(345 samples\\)"),
        (400, "min_audio_samples=400 is below 665 samples \\(two audio frames\\)"),
    ],
)
def test_dynamic_audio_lengths_below_what_the_encoder_can_frame_are_refused(
    make_model, traced_batch, samples, message
):
    with pytest.raises(ValueError, match=message):
        export.export_program(make_model().eval(), traced_batch, min_audio_samples=samples)


def test_too_short_audio_is_still_refused_by_explicit_validation(make_model, processor):
    inputs = processor(audio=[speech_like(0.5), speech_like(0.01)], text=["a", "b"], sampling_rate=16000)
    with pytest.raises(ValueError, match="item 1 has 160 samples"):
        make_model().validate_inputs(**{k: inputs[k] for k in ("input_values", "input_ids", "audio_attention_mask")})


def test_onnx_export_runs_in_onnxruntime_like_eager(make_model, processor, tmp_path):
    model = make_model(fusion_num_layers=2).eval()
    save_with_pipeline(model, processor, tmp_path / "model")
    out = tmp_path / "exported"
    report = export.main(["--model", str(tmp_path / "model"), "--out", str(out)])

    assert json.loads((out / "export_report.json").read_text()) == report
    assert report["labels"] == ["neutral", "happy", "angry", "sad"]
    assert report["check"]["max_abs_logit_difference"] <= 1e-4
    config = AutoConfig.from_pretrained(out, trust_remote_code=True)
    assert config.id2label[2] == "angry" and "AutoModel" not in config.auto_map

    # The deployer's three lines, on raw audio as users have it: stereo int16 at 44.1 kHz and mono float at 8 kHz.
    deployed = AutoProcessor.from_pretrained(out, trust_remote_code=True)
    session = onnxruntime.InferenceSession(str(out / "model.onnx"))
    stereo = (np.stack([speech_like(1.7, seed=9, rate=44100)] * 2) * 20000).astype(np.int16)
    for audio, rate in (([stereo], 44100), ([speech_like(0.6, seed=10, rate=8000)] * 3, 8000)):
        text = ["i love this wonderful day", "", "hate"][: len(audio)]
        (logits,) = session.run(
            ["logits"], dict(deployed(audio=audio, text=text, sampling_rate=rate, return_tensors="np"))
        )
        with torch.no_grad():
            expected = model(**processor(audio=audio, text=text, sampling_rate=rate)).logits.numpy()
        difference = float(np.abs(logits - expected).max())
        print(f"onnxruntime vs eager, {len(audio)} clip(s) at {rate} Hz: max |logit diff| {difference:.2e}")
        assert difference <= 1e-4


def test_a_dimensions_only_model_exports_its_dimensions_alone(saved_dimensions_only_mer, processor, tmp_path):
    report = export.main(["--model", str(saved_dimensions_only_mer), "--out", str(tmp_path)])
    assert report["outputs"] == ["dimensions"] and report["labels"] == []
    assert report["dimensions"] == ["arousal", "valence"] and report["check"]["max_abs_logit_difference"] <= 1e-4
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    assert [output.name for output in session.get_outputs()] == ["dimensions"]
    audio, text = [speech_like(1.1, seed=3), speech_like(0.7, seed=4)], ["what a day", "hate"]
    inputs = processor(audio=audio, text=text, sampling_rate=16000, return_tensors="np")
    (dimensions,) = session.run(["dimensions"], dict(inputs))
    model = MERModel.from_pretrained(saved_dimensions_only_mer).eval()
    with torch.no_grad():
        expected = model(**processor(audio=audio, text=text, sampling_rate=16000)).dimensions.numpy()
    assert dimensions.shape == (2, 2) and np.abs(dimensions - expected).max() <= 1e-4


def test_export_command_explains_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        export.main(["--model", str(tmp_path), "--out", str(tmp_path / "o"), "--max-seconds", "-1"])
    assert "--max-seconds must be positive, got -1.0" in capsys.readouterr().err
    with pytest.raises(OSError, match=str(tmp_path / "missing")):
        export.main(["--model", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
