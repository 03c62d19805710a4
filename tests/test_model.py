"""MERModel: shapes, losses, fusion directions, auxiliary tasks, gradients, padding and dtypes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import speech_like, spread_between
from transformers import AutoModel, Wav2Vec2Config, Wav2Vec2Model

import modeling_mer.modeling_mer
from mer.tiny import tiny_audio_config
from modeling_mer import MERConfig, MERModel
from modeling_mer.modeling_mer import MERFusionOutput, audio_frame_mask, concordance, masked_mean, masked_mean_std


@pytest.fixture(scope="module")
def batch(processor):
    audio = [speech_like(1.0, seed=1), speech_like(0.6, seed=2), speech_like(1.4, seed=3)]
    text = ["i love this wonderful day", "the meeting starts at noon", "i hate the awful mess"]
    return processor(audio=audio, text=text, sampling_rate=16000)


LABELS = torch.tensor([1, 0, 2])


@pytest.mark.parametrize("direction", ["text_to_audio", "audio_to_text", "bidirectional"])
@pytest.mark.parametrize("num_layers", [1, 2, 4])
def test_every_direction_and_depth_trains(make_model, batch, direction, num_layers):
    model = make_model(fusion_direction=direction, fusion_num_layers=num_layers).train()
    out = model(**batch, labels=LABELS, output_attentions=True)

    assert out.logits.shape == (3, 4)
    assert out.pooled_output.shape == (3, 2 * 16)
    assert torch.isfinite(out.loss)
    queries_audio = direction != "audio_to_text"
    queries_text = direction != "text_to_audio"
    num_frames, num_tokens = out.audio_frame_mask.shape[1], batch["input_ids"].shape[1]
    assert (out.audio_attentions is not None) == queries_audio
    assert (out.text_attentions is not None) == queries_text
    if queries_audio:
        assert len(out.audio_attentions) == num_layers
        assert out.audio_attentions[-1].shape == (3, 2, num_frames, num_tokens)
    if queries_text:
        assert len(out.text_attentions) == num_layers
        assert out.text_attentions[-1].shape == (3, 2, num_tokens, num_frames)

    out.loss.backward()
    fusion_grads = [p.grad for p in model.fusion.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in fusion_grads)
    assert model.audio_encoder.encoder.layers[0].attention.q_proj.weight.grad.abs().sum() > 0
    assert model.text_encoder.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0
    # The frozen CNN front end gets no gradient.
    assert all(p.grad is None and not p.requires_grad for p in model.audio_encoder.feature_extractor.parameters())


def test_the_fusion_answers_with_named_fields(make_model, batch):
    model = make_model(fusion_direction="audio_to_text").eval()
    audio = model.project_audio_features(batch["input_values"], batch["audio_attention_mask"])
    text = model.project_text_features(batch["input_ids"], batch["text_attention_mask"])
    fused = model.fusion(
        audio.last_hidden_state, audio.attention_mask, text.last_hidden_state, text.attention_mask,
        output_attentions=True,
    )  # fmt: skip
    assert isinstance(fused, MERFusionOutput)
    assert fused.audio.shape == audio.last_hidden_state.shape and fused.text.shape == text.last_hidden_state.shape
    assert torch.equal(fused.audio, audio.last_hidden_state)  # audio frames are not queries in this direction
    assert fused.audio_attentions is None and len(fused.text_attentions) == model.config.fusion_num_layers
    assert fused.hidden_states is None


def test_attention_never_looks_at_padding(make_model, batch):
    model = make_model(fusion_direction="bidirectional").eval()
    out = model(**batch, output_attentions=True)
    text_mask = batch["text_attention_mask"].bool()
    audio_mask = out.audio_frame_mask.bool()
    for weights in out.audio_attentions:  # (B, h, T, L): audio frames over words
        assert torch.all(weights.masked_select(~text_mask[:, None, None, :]) == 0)
        torch.testing.assert_close(weights.sum(-1), torch.ones_like(weights.sum(-1)))
    for weights in out.text_attentions:  # (B, h, L, T): words over audio frames
        assert torch.all(weights.masked_select(~audio_mask[:, None, None, :]) == 0)


def test_unfrozen_feature_encoder_gets_gradients(make_model, batch):
    model = make_model(freeze_feature_encoder=False).train()
    model(**batch, labels=LABELS).loss.backward()
    assert model.audio_encoder.feature_extractor.conv_layers[0].conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("cross_pair", "consistency"), [(True, True), (True, False), (False, True), (False, False)])
def test_auxiliary_tasks_switch_and_sum_into_the_loss(make_model, batch, cross_pair, consistency):
    weights = {"cross_pair": 0.3, "consistency": 0.7}
    model = make_model(use_cross_pair_task=cross_pair, use_consistency_task=consistency, aux_loss_weights=weights)
    out = model.train()(**batch, labels=LABELS)

    expected_tasks = {name for name, on in (("cross_pair", cross_pair), ("consistency", consistency)) if on}
    assert set(out.aux_losses) == expected_tasks
    expected = out.classification_loss + sum(weights[task] * out.aux_losses[task] for task in expected_tasks)
    torch.testing.assert_close(out.loss, expected)
    assert (model.cross_pair_audio_head is not None) == cross_pair
    assert (model.consistency_head is not None) == consistency
    if expected_tasks:
        out.loss.backward()
        head = model.cross_pair_audio_head if cross_pair else model.consistency_head
        assert head.weight.grad.abs().sum() > 0


def test_auxiliary_tasks_pair_audio_i_with_text_j_and_label_both_right(make_model, processor, monkeypatch):
    """Utterance i's audio goes with the text of `partner[i]`: the cross-pair heads must name i's label from the
    audio side and partner[i]'s from the text side, and the consistency head must call a pair the same emotion
    exactly when the two labels are equal. Checked against the same pairs fused as a batch of their own."""
    audio = [speech_like(1.0, seed=1), speech_like(0.6, seed=2), speech_like(1.4, seed=3)]
    text = ["i love this wonderful day", "the meeting starts at noon", "i hate the awful mess"]
    labels, partner = torch.tensor([1, 0, 1]), torch.tensor([2, 0, 1])  # pair 0 (labels 1, 1) is consistent
    monkeypatch.setattr(modeling_mer.modeling_mer, "_random_derangement", lambda size, device: partner)
    model = make_model().eval()
    model.training = True  # the auxiliary tasks run, every dropout and augmentation below stays off
    with torch.no_grad():
        out = model(**processor(audio=audio, text=text, sampling_rate=16000), labels=labels)
        mismatched_inputs = processor(audio=audio, text=[text[j] for j in partner], sampling_rate=16000)
        mismatched = model.eval()(**mismatched_inputs).pooled_output
        cross_pair = F.cross_entropy(model.cross_pair_audio_head(mismatched), labels) + F.cross_entropy(
            model.cross_pair_text_head(mismatched), labels[partner]
        )
        same = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 0.0])  # matched pairs, then labels[i] == labels[partner[i]]
        consistency = F.binary_cross_entropy_with_logits(
            model.consistency_head(torch.cat([out.pooled_output, mismatched])).squeeze(-1), same
        )
    assert spread_between(mismatched) > 0.1  # a wrong pairing would move the losses
    torch.testing.assert_close(out.aux_losses["cross_pair"], cross_pair, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.aux_losses["consistency"], consistency, atol=1e-5, rtol=1e-5)


def test_auxiliary_tasks_only_in_training(make_model, batch):
    model = make_model().eval()
    out = model(**batch, labels=LABELS)
    assert out.aux_losses is None
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, LABELS))
    assert model(**batch).loss is None


def test_auxiliary_tasks_skip_a_batch_of_one(make_model, processor):
    model = make_model().train()
    single = processor(audio=speech_like(0.5), text="what a great surprise", sampling_rate=16000)
    out = model(**single, labels=torch.tensor([1]))
    assert out.aux_losses is None and torch.isfinite(out.loss)


def test_auxiliary_tasks_reuse_the_encoder_outputs(make_model, batch):
    model = make_model().train()
    calls = {"audio": 0, "text": 0}
    model.audio_encoder.register_forward_hook(lambda *_: calls.__setitem__("audio", calls["audio"] + 1))
    model.text_encoder.register_forward_hook(lambda *_: calls.__setitem__("text", calls["text"] + 1))
    model(**batch, labels=LABELS)
    assert calls == {"audio": 1, "text": 1}


def test_padding_never_changes_a_prediction(make_model, processor):
    """One utterance alone, and inside a batch padded to 3x its audio length and 3x its tokens: its pooled
    representation (what a mask that leaks moves first: ignoring the text mask moves it by 0.38 and the logits of an
    untrained model by only 5e-4) and its logits stay, next to how far apart two different utterances are."""
    model = make_model().eval()
    audio, text = speech_like(0.8, seed=4), "what a great surprise"
    longer_audio, longer_text = speech_like(2.4, seed=5), " ".join([text] * 4)
    alone = processor(audio=audio, text=text, sampling_rate=16000)
    batched = processor(audio=[audio, longer_audio], text=[text, longer_text], sampling_rate=16000)
    assert batched["input_values"].shape[1] == 3 * alone["input_values"].shape[1]
    assert batched["input_ids"].shape[1] >= 3 * alone["input_ids"].shape[1]
    with torch.no_grad():
        out_alone, out_batched = model(**alone), model(**batched)
    for field in ("pooled_output", "logits"):
        spread = spread_between(getattr(out_batched, field))  # the two different utterances of the batch
        difference = (getattr(out_alone, field)[0] - getattr(out_batched, field)[0]).abs().max().item()
        print(f"padding invariance: max |{field} difference| = {difference:.2e} (spread {spread:.2e})")
        assert spread > 0.1 and difference <= 1e-4 * spread, field


def test_group_norm_front_end_pools_only_real_frames(tiny_encoders, processor):
    """wav2vec2-base style encoders are not given the mask, but padded frames still never reach the pooling."""
    config = MERConfig(
        audio_config=tiny_audio_config(feat_extract_norm="group"),
        text_config=AutoModel.from_pretrained(tiny_encoders[1]).config,
        fusion_hidden_size=16,
        fusion_num_heads=2,
    )
    assert not config.audio_encoder_takes_mask
    model = MERModel(config).eval()
    audio = [speech_like(0.5, seed=6), speech_like(1.5, seed=7)]
    inputs = processor(audio=audio, text=["a great day", "the mess"], sampling_rate=16000)
    with torch.no_grad():
        out = model(**inputs)
        frames_alone = model.audio_encoder(inputs["input_values"][:1, :8000]).last_hidden_state.shape[1]
    assert out.audio_frame_mask[0].sum().item() == frames_alone
    assert out.audio_frame_mask[1].all()


@pytest.mark.parametrize(
    "audio_config",
    [
        Wav2Vec2Config(),
        tiny_audio_config(),
        Wav2Vec2Config(add_adapter=True, num_adapter_layers=2, adapter_stride=2),
    ],
    ids=["base", "tiny", "adapter"],
)
def test_frame_mask_matches_the_encoders_own_frame_count(audio_config):
    encoder = Wav2Vec2Model(audio_config)
    lengths = torch.tensor([400, 401, 719, 720, 16000, 16321, 48000])
    sample_mask = (torch.arange(48000)[None, :] < lengths[:, None]).long()
    expected = encoder._get_feat_extract_output_lengths(lengths, add_adapter=audio_config.add_adapter)
    mask = audio_frame_mask(sample_mask, audio_config, num_frames=int(expected.max()))
    assert mask.sum(-1).tolist() == expected.tolist()
    assert torch.equal(mask, torch.arange(mask.shape[1])[None, :] < expected[:, None])


def test_masked_mean_ignores_masked_positions():
    states = torch.tensor([[[1.0], [3.0], [100.0]], [[2.0], [4.0], [6.0]]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    assert masked_mean(states, mask).flatten().tolist() == [2.0, 4.0]
    mean, std = masked_mean_std(states, mask, eps=0.0).T
    assert mean.tolist() == [2.0, 4.0]
    torch.testing.assert_close(std, torch.tensor([1.0, (8 / 3) ** 0.5]))  # 100.0, masked, counts for nothing


def test_statistics_pooling_feeds_mean_and_spread_to_every_head_and_trains(make_model, batch):
    model = make_model(pooling="mean_std").train()
    out = model(**batch, labels=LABELS, output_hidden_states=True)
    assert out.pooled_output.shape == (3, 4 * 16)  # two streams, mean and std each
    out.loss.backward()
    assert set(out.aux_losses) == {"cross_pair", "consistency"}
    heads = [model.classifier[0], model.cross_pair_audio_head, model.cross_pair_text_head, model.consistency_head]
    assert all(head.weight.grad is not None and head.weight.grad.abs().sum() > 0 for head in heads)
    # The second half of each stream's pooled vector is its spread over time.
    with torch.no_grad():
        fused = model.eval().get_fused_features(**batch)
    std = fused.pooler_output.view(3, 2, 2, 16)[:, :, 1]  # (batch, stream, [mean, std], hidden) -> std
    assert (std > 0).all()
    with pytest.raises(ValueError, match="pooling must be one of"):
        make_model(pooling="max")


def test_weighted_layer_sum(make_model, batch):
    model = make_model(use_weighted_layer_sum=True).train()
    assert model.layer_weights.shape == (3,)
    torch.testing.assert_close(model.layer_weights.softmax(0), torch.full((3,), 1 / 3))
    model(**batch, labels=LABELS).loss.backward()
    assert model.layer_weights.grad.abs().sum() > 0


def test_gradient_checkpointing_gives_the_same_gradients(make_model, batch):
    def loss_and_grads(checkpointing: bool):
        model = make_model(fusion_dropout=0.0, use_cross_pair_task=False, use_consistency_task=False).train()
        if checkpointing:
            model.activation_checkpointing_enable()
            assert all(layer.gradient_checkpointing for layer in model.fusion.audio_layers)
        loss = model(**batch, labels=LABELS).loss
        loss.backward()
        return loss, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    loss_plain, grads_plain = loss_and_grads(False)
    loss_checkpointed, grads_checkpointed = loss_and_grads(True)
    torch.testing.assert_close(loss_plain, loss_checkpointed)
    assert grads_plain.keys() == grads_checkpointed.keys()
    for name in grads_plain:
        torch.testing.assert_close(grads_plain[name], grads_checkpointed[name], msg=name)


def test_from_audio_text_pretrained_keeps_the_encoder_weights(make_model, tiny_encoders):
    model = make_model()
    for directory, encoder in zip(tiny_encoders, (model.audio_encoder, model.text_encoder), strict=True):
        pretrained = AutoModel.from_pretrained(directory).state_dict()
        for name, tensor in encoder.state_dict().items():
            torch.testing.assert_close(tensor, pretrained[name], rtol=0, atol=0, msg=name)
    assert model.config.audio_config is model.audio_encoder.config
    assert model.audio_encoder.config._attn_implementation == "sdpa"


def test_dtype_and_attention_implementation_reach_the_encoders(make_model, batch, tmp_path):
    make_model().save_pretrained(tmp_path)
    model = MERModel.from_pretrained(tmp_path, dtype=torch.bfloat16, attn_implementation="eager").eval()
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.text_encoder.config._attn_implementation == "eager"
    inputs = dict(batch, input_values=batch["input_values"].to(torch.bfloat16))
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()


def test_base_size_parameter_count():
    model = MERModel(MERConfig(fusion_num_layers=2))
    counts = {
        name: sum(p.numel() for p in getattr(model, name).parameters())
        for name in ("audio_encoder", "text_encoder", "fusion")
    }
    total = sum(p.numel() for p in model.parameters())
    print(f"base-size MER (wav2vec2-base + bert-base, K=2): {total:,} parameters; {counts}")
    assert 94_000_000 < counts["audio_encoder"] < 96_000_000  # wav2vec2-base: 94.4M
    assert 108_000_000 < counts["text_encoder"] < 110_000_000  # bert-base without its pooler: 108.9M
    assert total - counts["audio_encoder"] - counts["text_encoder"] < 5_000_000


@pytest.mark.parametrize("samples", [160, 344])
def test_too_short_audio_is_refused_naming_the_item(make_model, processor, samples):
    model = make_model().eval()
    audio = [speech_like(0.5), speech_like(samples / 16000)]
    inputs = processor(audio=audio, text=["a", "b"], sampling_rate=16000)
    with pytest.raises(ValueError, match=f"at least 345 samples for one frame: item 1 has {samples} samples"):
        model(**inputs)


def test_the_shortest_audio_is_accepted(make_model, processor):
    inputs = processor(audio=speech_like(345 / 16000), text="a", sampling_rate=16000)
    assert make_model().eval()(**inputs).audio_frame_mask.sum().item() == 1


def test_audio_and_text_batches_must_match(make_model, batch):
    model = make_model().eval()
    with pytest.raises(ValueError, match="3 audio items but 2 transcripts"):
        model(
            input_values=batch["input_values"],
            audio_attention_mask=batch["audio_attention_mask"],
            input_ids=batch["input_ids"][:2],
        )


def test_transcripts_longer_than_the_text_encoder_are_refused_or_truncated(make_model, processor):
    model = make_model().eval()
    words = " ".join(["great"] * 200)
    inputs = processor(audio=speech_like(0.5), text=words, sampling_rate=16000)
    assert inputs["input_ids"].shape[1] == 128  # the tokenizer truncates to the 128 positions of the tiny BERT
    too_long = processor(audio=speech_like(0.5), text=words, sampling_rate=16000, max_text_length=200)
    with pytest.raises(ValueError, match="200 tokens are longer than the text encoder's 128 positions"):
        model(**too_long)


def test_no_mismatched_fusion_when_both_auxiliary_tasks_are_off(make_model, batch):
    model = make_model(use_cross_pair_task=False, use_consistency_task=False).train()
    calls = []
    model.fusion.register_forward_hook(lambda *_: calls.append(1))
    out = model(**batch, labels=LABELS)
    assert len(calls) == 1 and out.aux_losses == {}


def _reference_ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Lin (1989), written out: 2 s_xy / (s_x^2 + s_y^2 + (mean_x - mean_y)^2), population moments."""
    sxy = np.mean((x - x.mean()) * (y - y.mean()))
    return 2 * sxy / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def test_concordance_is_lins_coefficient_per_dimension_and_leaves_out_missing_values():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 1, size=(40, 2))
    guess = np.clip(truth * 0.7 + 0.2 + rng.normal(0, 0.1, size=truth.shape), 0, 1)
    got = concordance(torch.tensor(guess), torch.tensor(truth))
    expected = [_reference_ccc(guess[:, d], truth[:, d]) for d in range(2)]
    torch.testing.assert_close(got, torch.tensor(expected, dtype=got.dtype))
    assert concordance(torch.tensor(truth), torch.tensor(truth)).tolist() == pytest.approx([1.0, 1.0])
    # A missing value is left out of its own dimension only.
    holed = truth.copy()
    holed[:5, 1] = np.nan
    got = concordance(torch.tensor(guess), torch.tensor(holed))
    assert got[0].item() == pytest.approx(expected[0])
    assert got[1].item() == pytest.approx(_reference_ccc(guess[5:, 1], truth[5:, 1]))
    # Fewer than two values: no information, 0.
    assert concordance(torch.zeros(3, 1), torch.tensor([[0.5], [np.nan], [np.nan]])).item() == 0.0


def test_dimensions_come_in_0_1_beside_the_classes_and_their_loss_trains_the_head(make_model, batch):
    model = make_model(dimensions=["arousal", "valence"], dimension_loss_weight=2.0).train()
    targets = torch.tensor([[0.9, 0.8], [0.2, float("nan")], [0.6, 0.1]])  # one valence missing
    out = model(**batch, labels=LABELS, dimension_labels=targets)
    assert out.dimensions.shape == (3, 2) and ((out.dimensions > 0) & (out.dimensions < 1)).all()
    expected = out.classification_loss + 2.0 * out.dimension_loss + 0.5 * sum(out.aux_losses.values())
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.dimension_head.parameters())  # the NaN stayed out
    # The head learns: a few steps on the batch alone raise its concordance.
    optimizer = torch.optim.Adam(model.dimension_head.parameters(), lr=1e-2)
    first = None
    for _ in range(40):
        optimizer.zero_grad()
        loss = model.eval()(**batch, dimension_labels=targets).dimension_loss
        first = loss.item() if first is None else first
        loss.backward()
        optimizer.step()
    assert loss.item() < first - 0.3
    # A model without dimensions has none, and refuses their labels.
    plain = make_model().eval()
    assert plain(**batch).dimensions is None and plain.dimension_head is None
    with pytest.raises(ValueError, match="without dimensions"):
        plain(**batch, dimension_labels=targets)
    with pytest.raises(ValueError, match=r"dimension_labels has shape \(3, 1\); the model predicts \(3, 2\)"):
        model(**batch, dimension_labels=targets[:, :1])
    with pytest.raises(ValueError, match="'joy' is not one of"):
        make_model(dimensions=["arousal", "joy"])


def test_a_dimensions_only_model_has_no_classifier_and_trains_on_the_dimensions_alone(make_model, batch):
    model = make_model(dimensions=["valence", "arousal"], id2label={}).train()
    config = model.config
    assert config.num_labels == 0 and not config.predicts_classes and model.classifier is None
    # The auxiliary tasks predict classes: none here, whatever the defaults say.
    assert not config.use_cross_pair_task and not config.use_consistency_task
    assert model.cross_pair_audio_head is None and model.consistency_head is None
    targets = torch.tensor([[0.9, 0.8], [0.2, float("nan")], [0.6, 0.1]])
    out = model(**batch, dimension_labels=targets)
    assert out.logits is None and out.dimensions.shape == (3, 2) and out.classification_loss is None
    torch.testing.assert_close(out.loss, out.dimension_loss)
    out.loss.backward()
    assert model.audio_projection.weight.grad.abs().sum() > 0  # what comes before the head learns from it
    with pytest.raises(ValueError, match="labels given to a dimensions-only model"):
        model(**batch, labels=LABELS)
    # Without dimensions there is nothing to predict; `num_labels=0` says the same as `id2label={}`.
    with pytest.raises(ValueError, match="no classes .* must predict dimensions"):
        MERConfig(id2label={})
    assert MERConfig(num_labels=0, dimensions=["arousal"]).id2label == {}
    with pytest.raises(ValueError, match="at least 2 classes"):
        MERConfig(id2label={0: "angry"}, dimensions=["arousal"])


def test_a_dimensions_only_model_saves_and_loads_as_one(make_model, batch, tmp_path):
    model = make_model(dimensions=["arousal"], num_labels=0).eval()
    model.save_pretrained(tmp_path)
    loaded = MERModel.from_pretrained(tmp_path).eval()
    assert loaded.config.id2label == {} and loaded.classifier is None and loaded.config.dimensions == ["arousal"]
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).dimensions, model(**batch).dimensions)
