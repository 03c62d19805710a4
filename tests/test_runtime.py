"""CPU runtimes for inference (`mer.serving.runtime`): each is called as the model is and gives the model's answers;
int8 and onnx leave the caller's model as it was; the ONNX graph takes batches of any size and lengths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import speech_like, spread_between
from torch import nn

from mer.serving.runtime import DEFAULT_CPU_RUNTIME, RUNTIMES, OnnxRuntimeModel, prepare_for_inference
from modeling_mer import MERModel


def batch_of(processor, seconds: list[float], texts: list[str], seed: int = 0) -> dict:
    audio = [speech_like(length, seed=seed + index) for index, length in enumerate(seconds)]
    return dict(processor(audio=audio, text=texts, sampling_rate=16000))


@pytest.fixture(scope="module")
def padded_batch(processor) -> dict:
    """Four utterances of different audio and text lengths, padded."""
    texts = ["i love this wonderful day", "hate", "what a great surprise !", "the meeting starts at noon"]
    return batch_of(processor, [1.7, 0.4, 0.9, 1.2], texts, seed=10)


@dataclass
class OnnxCase:
    model: MERModel
    runtime: nn.Module
    export_dir: Path
    model_still_training: bool  # the model was in training mode when prepared


@pytest.fixture(scope="module")
def onnx_case(tiny_encoders, tmp_path_factory) -> OnnxCase:
    """One export for the module (it takes about half a minute), traced without a processor (on noise and random
    token ids), of a model in training mode that predicts dimensions beside its classes."""
    torch.manual_seed(0)
    model = MERModel.from_audio_text_pretrained(
        *tiny_encoders, fusion_hidden_size=16, fusion_num_heads=2, dimensions=["arousal", "valence"]
    ).train()
    export_dir = tmp_path_factory.mktemp("onnx")
    runtime = prepare_for_inference(model, "onnx", export_dir=export_dir)
    return OnnxCase(model, runtime, export_dir, model.training)


def eager_logits(model: MERModel, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(**batch).logits


def test_the_default_is_one_of_the_runtimes():
    assert DEFAULT_CPU_RUNTIME in RUNTIMES


def test_eager_is_the_model_itself_in_evaluation_mode(make_model):
    model = make_model().train()
    assert prepare_for_inference(model, "eager") is model and not model.training


def test_int8_agrees_with_eager_and_leaves_the_model_unchanged(make_model, padded_batch):
    model = make_model().train()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    quantized = prepare_for_inference(model, "int8")

    assert model.training and isinstance(model.classifier[0], nn.Linear)
    assert before.keys() == model.state_dict().keys()
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    assert isinstance(quantized.classifier[0], torch.ao.nn.quantized.dynamic.Linear) and not quantized.training
    assert quantized.config is not None and quantized.config.num_labels == model.config.num_labels

    expected = eager_logits(model, padded_batch)
    with torch.no_grad():
        got = quantized(**padded_batch).logits
    assert got.shape == expected.shape == (4, model.config.num_labels)
    # int8 weights: close, not equal; much closer than the answers to two different utterances
    spread = spread_between(expected)
    assert spread > 0.5 and (got - expected).abs().max().item() < 0.05 * spread
    assert torch.equal(got.argmax(-1), expected.argmax(-1))

    # A model that predicts dimensions keeps them on int8 (each in [0, 1]).
    dimensional = make_model(dimensions=["arousal", "valence"]).eval()
    with torch.no_grad():
        eager, int8 = (m(**padded_batch).dimensions for m in (dimensional, prepare_for_inference(dimensional, "int8")))
    assert int8.shape == eager.shape == (4, 2) and (int8 - eager).abs().max() < 0.05


def test_onnx_matches_eager_on_batches_it_was_not_traced_on(onnx_case, processor, padded_batch):
    model, runtime = onnx_case.model, onnx_case.runtime
    single = batch_of(processor, [2.3], ["what a great surprise"], seed=20)
    for batch in (padded_batch, single):  # other batch sizes and lengths than the traced ones: dynamic shapes
        answer = runtime(**batch)
        got = answer.logits
        expected = eager_logits(model, batch)
        assert isinstance(got, torch.Tensor) and got.shape == expected.shape
        assert (got - expected).abs().max().item() < 1e-4 * max(spread_between(expected), 1.0)
        assert torch.equal(got.argmax(-1), expected.argmax(-1))
        with torch.no_grad():  # the graph carries the dimensions too
            torch.testing.assert_close(answer.dimensions, model.eval()(**batch).dimensions, atol=1e-5, rtol=1e-4)


def test_onnx_keeps_the_config_and_the_callers_model(onnx_case):
    assert isinstance(onnx_case.runtime, OnnxRuntimeModel) and onnx_case.runtime.config is onnx_case.model.config
    assert onnx_case.model_still_training  # exported in evaluation mode, handed back as it came
    assert (onnx_case.export_dir / "model.onnx").is_file()


def test_onnx_ignores_extra_keys_and_takes_numpy_and_missing_masks(onnx_case, processor):
    model, runtime = onnx_case.model, onnx_case.runtime
    batch = batch_of(processor, [0.8], ["hate the mess"], seed=30)
    expected = eager_logits(model, batch)
    as_numpy = {name: tensor.numpy() for name, tensor in batch.items()}
    torch.testing.assert_close(runtime(**as_numpy, labels=torch.tensor([1]), unused="x").logits, expected)
    unmasked = {name: batch[name] for name in ("input_values", "input_ids")}  # one item: no padding to mask
    torch.testing.assert_close(runtime(**unmasked).logits, expected)


def test_onnx_checks_inputs_as_the_model_does(onnx_case, processor):
    runtime = onnx_case.runtime
    too_short = batch_of(processor, [0.01], ["hate"])
    with pytest.raises(ValueError, match="item 0 has 160 samples"):
        runtime(**too_short)
    with pytest.raises(ValueError, match="logits only"):
        runtime(**batch_of(processor, [0.5], ["hate"]), output_attentions=True)


def test_unknown_runtime_is_named_with_the_choices(make_model):
    with pytest.raises(ValueError, match=r"'tensorrt'.*eager, int8, onnx"):
        prepare_for_inference(make_model(), "tensorrt")


def test_cpu_runtimes_refuse_a_model_that_is_not_fp32_on_the_cpu(make_model):
    with pytest.raises(ValueError, match=r"int8 runtime.*torch\.bfloat16"):
        prepare_for_inference(make_model().to(torch.bfloat16), "int8")
