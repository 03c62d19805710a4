"""MERModel behaves as transformers models do: forward arguments and outputs, attention implementations, feature
methods, re-heading, dtypes and device maps. The checks of `TestOverTinyConfigs` run over several tiny configs, in
the spirit of transformers' model testers."""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import speech_like
from transformers import AttentionInterface, AutoModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from mer.tiny import tiny_audio_config, tiny_text_config
from modeling_mer import MERConfig, MERModel, MEROutput

# Tolerances transformers' eager-vs-SDPA tests use on CPU: (atol, rtol) by dtype.
EAGER_SDPA_TOLERANCES = {torch.float32: (1e-6, 1e-4), torch.float16: (5e-3, 5e-3), torch.bfloat16: (1e-2, 1e-2)}

CASES = {
    "bidirectional K=2": {"fusion_num_layers": 2},
    "audio_to_text K=1, weighted layer sum": {
        "fusion_num_layers": 1,
        "fusion_direction": "audio_to_text",
        "use_weighted_layer_sum": True,
    },
    "text_to_audio K=3, group-norm front end": {
        "fusion_num_layers": 3,
        "fusion_direction": "text_to_audio",
        "audio_config": {"feat_extract_norm": "group"},
    },
}


@pytest.fixture(scope="module")
def padded_batch(processor):
    """Three utterances of different lengths, so that both audio and text are padded."""
    audio = [speech_like(1.1, seed=1), speech_like(0.45, seed=2), speech_like(0.8, seed=3)]
    text = ["i love this wonderful day", "hate", "what a great surprise !"]
    return processor(audio=audio, text=text, sampling_rate=16000)


@pytest.fixture(scope="module", params=list(CASES), ids=list(CASES))
def case(request, processor, tmp_path_factory):
    """(name, saved model directory) for one tiny config."""
    settings = dict(CASES[request.param])
    audio_config = tiny_audio_config(**settings.pop("audio_config", {}))
    text_config = tiny_text_config(processor.tokenizer.vocab_size)
    torch.manual_seed(0)
    config = MERConfig(
        audio_config=audio_config, text_config=text_config, fusion_hidden_size=16, fusion_num_heads=2, **settings
    )
    directory = tmp_path_factory.mktemp("conventions")
    MERModel(config).save_pretrained(directory)
    return request.param, directory


def load(directory, **kwargs) -> MERModel:
    return MERModel.from_pretrained(directory, **kwargs).eval()


def real_positions(output: MEROutput, batch) -> torch.Tensor:
    """The mask of the last fusion state's real positions: audio frames then tokens."""
    return torch.cat([output.audio_frame_mask, batch["text_attention_mask"]], dim=1).bool()


class TestOverTinyConfigs:
    def test_hidden_states_and_attentions_have_the_documented_shapes(self, case, padded_batch):
        _, directory = case
        model = load(directory)
        config = model.config
        with torch.no_grad():
            out = model(**padded_batch, output_hidden_states=True, output_attentions=True)
        batch, frames = out.audio_frame_mask.shape
        tokens = padded_batch["input_ids"].shape[1]
        assert len(out.hidden_states) == config.fusion_num_layers + 1
        assert {tuple(state.shape) for state in out.hidden_states} == {(batch, frames + tokens, 16)}
        assert len(out.audio_encoder_hidden_states) == config.audio_config.num_hidden_layers + 1
        assert len(out.text_encoder_hidden_states) == config.text_config.num_hidden_layers + 1
        audio_queries = config.fusion_direction != "audio_to_text"
        text_queries = config.fusion_direction != "text_to_audio"
        assert (out.audio_attentions is not None) == audio_queries
        assert (out.text_attentions is not None) == text_queries
        if audio_queries:
            assert [tuple(w.shape) for w in out.audio_attentions] == [(batch, 2, frames, tokens)] * len(
                out.audio_attentions
            )
        if text_queries:
            assert {tuple(w.shape) for w in out.text_attentions} == {(batch, 2, tokens, frames)}

    def test_outputs_default_to_the_config(self, case, padded_batch):
        _, directory = case
        model = load(directory, output_hidden_states=True)
        with torch.no_grad():
            out = model(**padded_batch)
            assert out.hidden_states is not None and out.audio_attentions is None
            model.config.return_dict = False
            as_tuple = model(**padded_batch)
        assert isinstance(as_tuple, tuple)
        torch.testing.assert_close(as_tuple[0], out.logits)

    def test_return_dict_false_gives_the_set_fields_in_order(self, case, padded_batch):
        _, directory = case
        model = load(directory).train()
        labels = torch.tensor([0, 1, 2])
        torch.manual_seed(3)
        out = model(**padded_batch, labels=labels, output_hidden_states=True)
        torch.manual_seed(3)
        as_tuple = model(**padded_batch, labels=labels, output_hidden_states=True, return_dict=False)
        assert len(as_tuple) == len(out.to_tuple())
        names = [name for name, value in out.items() if value is not None]
        assert names[:4] == ["loss", "logits", "classification_loss", "aux_losses"]
        for name, expected, got in zip(names, out.to_tuple(), as_tuple, strict=True):
            if isinstance(expected, torch.Tensor):
                torch.testing.assert_close(got, expected, msg=name)

    @pytest.mark.parametrize("dtype", list(EAGER_SDPA_TOLERANCES), ids=str)
    def test_eager_and_sdpa_agree_on_padded_batches(self, case, padded_batch, dtype):
        name, directory = case
        atol, rtol = EAGER_SDPA_TOLERANCES[dtype]
        inputs = dict(padded_batch, input_values=padded_batch["input_values"].to(dtype))
        outputs = {}
        for implementation in ("eager", "sdpa"):
            model = load(directory, attn_implementation=implementation, dtype=dtype)
            assert model.fusion.config._attn_implementation == implementation
            with torch.no_grad():
                outputs[implementation] = model(**inputs, output_hidden_states=True)
        eager, sdpa = outputs["eager"], outputs["sdpa"]
        real = real_positions(eager, padded_batch)
        last_eager, last_sdpa = eager.hidden_states[-1][real].float(), sdpa.hidden_states[-1][real].float()
        print(
            f"{name}, {dtype}: eager vs sdpa max |logit diff| {(eager.logits - sdpa.logits).abs().max().item():.2e}, "
            f"max |last fusion state diff| {(last_eager - last_sdpa).abs().max().item():.2e}"
        )
        torch.testing.assert_close(sdpa.logits.float(), eager.logits.float(), atol=atol, rtol=rtol)
        torch.testing.assert_close(last_sdpa, last_eager, atol=atol, rtol=rtol)

    def test_attentions_under_sdpa_come_from_eager_and_skip_padding(self, case, padded_batch):
        _, directory = case
        with torch.no_grad():
            sdpa = load(directory, attn_implementation="sdpa")(**padded_batch, output_attentions=True)
            eager = load(directory, attn_implementation="eager")(**padded_batch, output_attentions=True)
        text_mask = padded_batch["text_attention_mask"].bool()
        for direction, key_mask in (
            ("audio_attentions", text_mask),
            ("text_attentions", sdpa.audio_frame_mask.bool()),
        ):
            weights = getattr(sdpa, direction)
            if weights is None:
                continue
            for got, expected in zip(weights, getattr(eager, direction), strict=True):
                torch.testing.assert_close(got, expected)
                torch.testing.assert_close(got.sum(-1), torch.ones(got.shape[:-1]))
                assert got.masked_select(~key_mask[:, None, None, :]).abs().max() == 0

    def test_feature_methods_compose_to_the_forward(self, case, padded_batch):
        _, directory = case
        model = load(directory)
        with torch.no_grad():
            out = model(**padded_batch)
            audio = model.project_audio_features(padded_batch["input_values"], padded_batch["audio_attention_mask"])
            text = model.project_text_features(
                padded_batch["input_ids"], padded_batch["text_attention_mask"], padded_batch["token_type_ids"]
            )
            fused = model.get_fused_features(**padded_batch)
            logits = model.classifier(fused.pooler_output)
        assert torch.equal(audio.attention_mask.long(), out.audio_frame_mask)
        assert audio.pooler_output.shape == text.pooler_output.shape == (3, 16)
        torch.testing.assert_close(model.fuse(audio, text).pooler_output, fused.pooler_output)
        torch.testing.assert_close(fused.pooler_output, out.pooled_output)
        torch.testing.assert_close(logits, out.logits)
        tokens = padded_batch["input_ids"].shape[1]
        assert (
            fused.last_hidden_state.shape[1] == fused.attention_mask.shape[1] == out.audio_frame_mask.shape[1] + tokens
        )

    def test_tower_features_are_the_towers_outputs_with_the_projection_pooled(self, case, padded_batch):
        """As transformers 5's CLIP and CLAP: keyword arguments, the tower's own outputs, the projected embedding
        as `pooler_output`, and `return_dict=False` giving the same as a tuple."""
        _, directory = case
        model = load(directory, attn_implementation="eager")  # as in transformers, only eager returns weights
        audio_inputs = {k: padded_batch[k] for k in ("input_values", "audio_attention_mask")}
        text_inputs = {k: padded_batch[k] for k in ("input_ids", "text_attention_mask", "token_type_ids")}
        with torch.no_grad():
            audio = model.get_audio_features(**audio_inputs, output_hidden_states=True, output_attentions=True)
            text = model.get_text_features(**text_inputs, output_hidden_states=True, output_attentions=True)
            takes_mask = model.config.audio_encoder_takes_mask  # a group-norm front end is given no mask
            tower = model.audio_encoder(
                padded_batch["input_values"], padded_batch["audio_attention_mask"] if takes_mask else None
            )
            as_tuple = model.get_text_features(**text_inputs, return_dict=False)
            projected = model.project_audio_features(**audio_inputs)
        torch.testing.assert_close(audio.last_hidden_state, tower.last_hidden_state)
        torch.testing.assert_close(audio.pooler_output, projected.pooler_output)
        config = model.config
        assert len(audio.hidden_states) == config.audio_config.num_hidden_layers + 1
        assert len(audio.attentions) == config.audio_config.num_hidden_layers
        assert len(text.hidden_states) == config.text_config.num_hidden_layers + 1
        assert len(text.attentions) == config.text_config.num_hidden_layers
        assert text.last_hidden_state.shape[-1] == config.text_config.hidden_size
        assert text.pooler_output.shape == (3, config.fusion_hidden_size)
        assert isinstance(as_tuple, tuple)
        torch.testing.assert_close(as_tuple[0], text.last_hidden_state)
        torch.testing.assert_close(as_tuple[1], text.pooler_output)

    def test_attentions_hold_both_directions_in_the_layout_of_the_fused_states(self, case, padded_batch):
        _, directory = case
        model = load(directory)
        with torch.no_grad():
            out = model(**padded_batch, output_attentions=True, output_hidden_states=True)
            as_tuple = model(**padded_batch, output_attentions=True, output_hidden_states=True, return_dict=False)
        frames = out.audio_frame_mask.shape[1]
        positions = out.hidden_states[-1].shape[1]
        assert len(out.attentions) == model.config.fusion_num_layers
        for index, joint in enumerate(out.attentions):
            assert joint.shape == (3, 2, positions, positions)
            if out.audio_attentions is not None:
                torch.testing.assert_close(joint[:, :, :frames, frames:], out.audio_attentions[index])
            if out.text_attentions is not None:
                torch.testing.assert_close(joint[:, :, frames:, :frames], out.text_attentions[index])
            assert joint[:, :, :frames, :frames].abs().sum() == 0 and joint[:, :, frames:, frames:].abs().sum() == 0
        # No bool tensors among the outputs: the tuple holds what the dict holds, each field equal.
        assert not any(isinstance(v, torch.Tensor) and v.dtype == torch.bool for v in out.values())
        assert len(as_tuple) == len(out.to_tuple())
        for expected, got in zip(out.to_tuple(), as_tuple, strict=True):
            torch.testing.assert_close(got, expected)


def test_registered_attention_functions_reach_the_fusion(make_model, padded_batch, tmp_path):
    make_model().save_pretrained(tmp_path)
    callers = []

    def counting_attention(module, *args, **kwargs):
        callers.append(type(module).__name__)
        return sdpa_attention_forward(module, *args, **kwargs)

    # A custom implementation comes with its mask format (without one transformers passes no mask at all).
    AttentionInterface.register("counting_attention", counting_attention)
    AttentionMaskInterface.register("counting_attention", sdpa_mask)
    model = load(tmp_path, attn_implementation="counting_attention")
    with torch.no_grad():
        expected = model(**padded_batch).logits
    assert callers.count("MERCrossAttention") == 2 * model.config.fusion_num_layers  # both directions
    callers.clear()
    model.set_attn_implementation("eager")
    assert model.config._attn_implementation == "eager"
    assert model.audio_encoder.config._attn_implementation == model.text_encoder.config._attn_implementation == "eager"
    with torch.no_grad():
        torch.testing.assert_close(model(**padded_batch).logits, expected)
    assert callers == []


def test_unknown_attention_implementation_is_named(make_model, tmp_path):
    make_model().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match='attn_implementation="sparkly"'):
        MERModel.from_pretrained(tmp_path, attn_implementation="sparkly")
    model = load(tmp_path)
    with pytest.raises(ValueError, match="sparkly"):
        model.set_attn_implementation("sparkly")


SEVEN = {i: name for i, name in enumerate(["neutral", "happy", "angry", "sad", "fear", "disgust", "surprise"])}


@pytest.mark.parametrize("new_classes", [{"id2label": SEVEN}, {"num_labels": 7}], ids=["id2label", "num_labels"])
def test_reheading_a_saved_model_loads_everything_but_the_heads_and_trains(
    make_model, padded_batch, tmp_path, caplog, capsys, new_classes
):
    four_class = make_model()
    four_class.save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING):
        model = MERModel.from_pretrained(tmp_path, ignore_mismatched_sizes=True, **new_classes).train()
    report = caplog.text + capsys.readouterr().err
    assert "classifier.2.weight" in report and "mismatch" in report.lower()

    expected_names = SEVEN if "id2label" in new_classes else {i: f"LABEL_{i}" for i in range(7)}
    assert model.config.id2label == expected_names
    assert model.config.label2id == {name: i for i, name in expected_names.items()}
    heads = {"classifier.2", "cross_pair_audio_head", "cross_pair_text_head"}
    saved = four_class.state_dict()
    for name, tensor in model.state_dict().items():
        if name.rsplit(".", 1)[0] in heads:
            assert tensor.shape[0] == 7, name
        else:
            assert torch.equal(tensor, saved[name]), f"{name} was not loaded"

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    before = model.classifier[2].weight.detach().clone()
    out = model(**padded_batch, labels=torch.tensor([6, 4, 0]))
    assert out.logits.shape == (3, 7) and torch.isfinite(out.loss)
    out.loss.backward()
    optimizer.step()
    assert not torch.equal(model.classifier[2].weight, before)


def test_reheading_without_ignore_mismatched_sizes_says_how(make_model, tmp_path):
    make_model().save_pretrained(tmp_path)
    message = "classifies 4 classes \\(neutral, happy, angry, sad\\); you asked for 7. Pass ignore_mismatched_sizes"
    with pytest.raises(RuntimeError, match=message):  # transformers' error type for weights of the wrong size
        MERModel.from_pretrained(tmp_path, id2label=SEVEN)
    with pytest.raises(RuntimeError, match=message):
        AutoModel.from_pretrained(tmp_path, num_labels=7, trust_remote_code=True)


def test_weights_passed_in_directly_need_no_files_and_no_network(make_model, padded_batch, monkeypatch):
    model = make_model().eval()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = MERModel.from_pretrained(None, config=model.config, state_dict=model.state_dict()).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**padded_batch).logits, model(**padded_batch).logits)


def test_renaming_classes_keeps_the_trained_heads(make_model, padded_batch, tmp_path):
    model = make_model().eval()
    model.save_pretrained(tmp_path)
    renamed = MERModel.from_pretrained(tmp_path, id2label={0: "neu", 1: "hap", 2: "ang", 3: "sad"}).eval()
    assert renamed.config.label2id == {"neu": 0, "hap": 1, "ang": 2, "sad": 3}
    with torch.no_grad():
        torch.testing.assert_close(renamed(**padded_batch).logits, model(**padded_batch).logits)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_encoders_in_half_precision_give_a_model_in_that_precision(tiny_encoders, padded_batch, dtype):
    model = MERModel.from_audio_text_pretrained(
        *tiny_encoders, audio_kwargs={"dtype": dtype}, text_kwargs={"dtype": dtype}, fusion_hidden_size=16
    ).eval()
    assert {parameter.dtype for parameter in model.parameters()} == {dtype}
    with torch.no_grad():
        logits = model(**padded_batch).logits
    assert logits.dtype == dtype and torch.isfinite(logits.float()).all()


def test_encoders_in_different_precisions_leave_the_new_modules_in_float32(tiny_encoders, padded_batch):
    model = MERModel.from_audio_text_pretrained(
        *tiny_encoders, audio_kwargs={"dtype": torch.bfloat16}, fusion_hidden_size=16
    ).train()
    assert model.audio_encoder.dtype == torch.bfloat16 and model.classifier[0].weight.dtype == torch.float32
    out = model(**padded_batch, labels=torch.tensor([0, 1, 2]))
    out.loss.backward()
    assert torch.isfinite(out.loss) and model.audio_projection.weight.grad is not None


def test_device_map_auto_offloads_to_disk_and_predicts_the_same(make_model, padded_batch, tmp_path):
    model = make_model().eval()
    model.save_pretrained(tmp_path / "model")
    size = sum(parameter.numel() * parameter.element_size() for parameter in model.parameters())
    placed = MERModel.from_pretrained(
        tmp_path / "model", device_map="auto", max_memory={"cpu": size // 2}, offload_folder=tmp_path / "offload"
    ).eval()
    where = set(placed.hf_device_map.values())
    print(f"device_map='auto' with half the model's size of CPU memory: {sorted(map(str, where))}")
    assert {"cpu", "disk"} <= where
    # No fusion layer is split across devices.
    assert not any(key.startswith("fusion.") and key.count(".") > 2 for key in placed.hf_device_map)
    with torch.no_grad():
        torch.testing.assert_close(placed(**padded_batch).logits, model(**padded_batch).logits)
