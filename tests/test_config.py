"""MERConfig: defaults, sub-configs through AutoConfig, derived values and the errors that name the field."""

from __future__ import annotations

import pytest
from transformers import BertConfig, HubertConfig, RobertaConfig, WavLMConfig, WhisperConfig

from modeling_mer import MERConfig


def test_defaults_describe_a_base_size_four_class_model():
    config = MERConfig()
    assert config.audio_config.model_type == "wav2vec2" and config.audio_config.hidden_size == 768
    assert config.text_config.model_type == "bert" and config.text_config.hidden_size == 768
    assert config.id2label == {0: "neutral", 1: "happy", 2: "angry", 3: "sad"}
    assert config.label2id == {"neutral": 0, "happy": 1, "angry": 2, "sad": 3}
    assert config.fusion_intermediate_size == 4 * config.fusion_hidden_size
    assert config.audio_receptive_field == 400 and config.audio_frame_stride == 320
    assert not config.audio_encoder_takes_mask  # wav2vec2-base has a group-norm front end


def test_round_trip_through_a_dict_keeps_everything(tmp_path):
    config = MERConfig(
        audio_config=WavLMConfig(num_hidden_layers=3),
        text_config=RobertaConfig(num_hidden_layers=2),
        fusion_direction="audio_to_text",
        fusion_num_layers=4,
        id2label={0: "calm", 1: "excited"},
        aux_loss_weights={"cross_pair": 0.2, "consistency": 1.5},
    )
    config.save_pretrained(tmp_path)
    loaded = MERConfig.from_pretrained(tmp_path)
    assert loaded.audio_config.model_type == "wavlm" and loaded.audio_config.num_hidden_layers == 3
    assert loaded.text_config.model_type == "roberta"
    assert loaded.fusion_direction == "audio_to_text" and loaded.fusion_num_layers == 4
    assert loaded.id2label == {0: "calm", 1: "excited"} and loaded.num_labels == 2
    assert loaded.aux_loss_weights == {"cross_pair": 0.2, "consistency": 1.5}


@pytest.mark.parametrize("audio_config", [HubertConfig(), WavLMConfig()])
def test_other_wav2vec2_style_encoders_are_accepted(audio_config):
    assert MERConfig(audio_config=audio_config, text_config=BertConfig()).audio_receptive_field == 400


@pytest.mark.parametrize(
    ("size", "max_source_positions"), [({"d_model": 384, "encoder_layers": 4}, 1500), ({"d_model": 1280}, 1500)]
)
def test_whisper_configs_of_any_size_describe_a_whisper_tower(size, max_source_positions):
    config = MERConfig(audio_config=WhisperConfig(**size), text_config=BertConfig())
    assert config.audio_family == "whisper" and config.audio_encoder_takes_mask
    assert config.audio_receptive_field == 400 and config.audio_frame_stride == 320  # 25 ms window, 50 frames/s
    assert config.audio_max_samples == max_source_positions * 320 == 30 * 16000
    assert config.audio_config.hidden_size == size["d_model"]


def test_num_labels_alone_names_generic_classes():
    assert MERConfig(num_labels=3).id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fusion_num_heads": 3}, "fusion_num_heads \\(3\\) must divide fusion_hidden_size \\(256\\)"),
        ({"fusion_direction": "sideways"}, "fusion_direction must be one of"),
        ({"fusion_num_layers": 0}, "fusion_num_layers must be an integer >= 1, got 0"),
        ({"fusion_num_layers": -2}, "fusion_num_layers must be an integer >= 1, got -2"),
        ({"fusion_dropout": 1.0}, "fusion_dropout must be in \\[0, 1\\)"),
        ({"modality_dropout": -0.1}, "modality_dropout must be in \\[0, 1\\)"),
        ({"modality_dropout": "half"}, "modality_dropout must be in \\[0, 1\\)"),
        ({"aux_loss_weights": {"contrastive": 1.0}}, "aux_loss_weights has unknown tasks \\['contrastive'\\]"),
        ({"aux_loss_weights": {"consistency": -1}}, "aux_loss_weights\\['consistency'\\] must be a number >= 0"),
        ({"num_labels": 3, "id2label": {0: "a", 1: "b"}}, "num_labels=3 disagrees with id2label"),
        ({"id2label": {0: "a", 1: "b"}, "label2id": {"a": 1, "b": 0}}, "label2id .* disagrees with id2label"),
        ({"id2label": {0: "a", 2: "b"}}, "id2label keys must be 0..1"),
        ({"id2label": {0: "a", 1: "a"}}, "id2label has repeated class names"),
        (
            {"audio_config": BertConfig()},
            "audio_config \\(bert\\) is not a supported audio encoder. Supported: "
            "wav2vec2-style models .*; Whisper encoders",
        ),
        ({"text_config": WhisperConfig()}, "text_config \\(whisper\\) is not a text encoder"),
        ({"text_config": HubertConfig()}, "text_config \\(hubert\\) is not a text encoder"),
        ({"freeze_audio_encoder": -1}, "freeze_audio_encoder must be True, False or a number of layers >= 0, got -1"),
        ({"evaluation": [0.7]}, "evaluation must be a dict of scores or None"),
        ({"training_utterance_seconds": {"median": 2.0}}, "training_utterance_seconds must be \\{'p05', 'median'"),
        ({"training_utterance_seconds": {"p05": 3.0, "median": 2.0, "p95": 4.0}}, "positive seconds in that order"),
        ({"training_utterance_seconds": {"p05": 0, "median": 2.0, "p95": 4.0}}, "positive seconds in that order"),
    ],
)
def test_invalid_values_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MERConfig(**kwargs)


def test_the_records_a_run_writes_are_declared_and_survive_a_save(tmp_path):
    lengths = {"p05": 1.2, "median": 2.5, "p95": 7.9}
    evaluation = {"evaluated_on": "session1", "test": {"wa": 0.7, "ua": 0.68, "num_examples": 120}}
    MERConfig(training_utterance_seconds=lengths, evaluation=evaluation).save_pretrained(tmp_path)
    loaded = MERConfig.from_pretrained(tmp_path)
    assert loaded.training_utterance_seconds == lengths and loaded.evaluation == evaluation
    assert MERConfig().training_utterance_seconds is None  # a model trained before the field existed
