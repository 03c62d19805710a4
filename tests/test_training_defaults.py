"""Training defaults per audio tower family (mer.training.training_defaults), the frozen start of the audio tower and
SpecAugment on Whisper's log-mel input."""

from __future__ import annotations

import logging
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from transformers import HfArgumentParser

from mer.training.arguments import Arguments, parse_config_overrides
from mer.training.training_defaults import GENERIC_DEFAULTS, MEASURED_DEFAULTS, resolve_training_defaults
from modeling_mer import MERWhisperEncoder
from modeling_mer.modeling_mer import _random_spans

REPO = Path(__file__).resolve().parents[1]


def test_a_whisper_tower_gets_its_measured_defaults_and_an_explicit_flag_wins(caplog):
    args = Arguments(data_dir="corpus", encoder_learning_rate=1e-4)
    overrides = parse_config_overrides("use_weighted_layer_sum=false")
    with caplog.at_level(logging.INFO, logger="train"):
        filled = resolve_training_defaults(args, overrides, "whisper")
    measured = MEASURED_DEFAULTS["whisper"]
    assert args.encoder_learning_rate == 1e-4 and "encoder_learning_rate" not in filled  # given: kept
    assert overrides["use_weighted_layer_sum"] is False and "use_weighted_layer_sum" not in filled
    assert (args.num_epochs, args.early_stopping_patience) == (measured.num_epochs, measured.early_stopping_patience)
    assert (args.learning_rate, args.freeze_audio_epochs) == (measured.learning_rate, measured.freeze_audio_epochs)
    assert "measured for whisper audio towers" in caplog.text
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


def test_a_tower_without_measured_defaults_gets_the_generic_ones_with_a_warning(caplog):
    args, overrides = Arguments(data_dir="corpus", num_epochs=3), {}
    with caplog.at_level(logging.INFO, logger="train"):
        resolve_training_defaults(args, overrides, "hubert")
    assert args.num_epochs == 3 and args.encoder_learning_rate == GENERIC_DEFAULTS.encoder_learning_rate
    assert args.spec_augment is None  # the checkpoint's own SpecAugment setting
    assert overrides == {"use_weighted_layer_sum": False}
    (warning,) = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert "No training defaults have been measured for hubert audio towers" in warning
    assert "encoder_learning_rate 2e-05" in warning and "num_epochs" not in warning


def test_a_recipe_written_as_flags_reads_back_as_the_same_settings():
    recipe = replace(GENERIC_DEFAULTS, freeze_audio_epochs=2, spec_augment=True, use_weighted_layer_sum=True)
    (args,) = HfArgumentParser(Arguments).parse_args_into_dataclasses(["--data_dir", "x", *recipe.flags().split()])
    overrides = parse_config_overrides(args.config_overrides)
    assert resolve_training_defaults(args, overrides, "wav2vec2") == {}  # nothing left to fill
    for name in ("num_epochs", "learning_rate", "encoder_learning_rate", "warmup_ratio", "freeze_audio_epochs"):
        assert getattr(args, name) == getattr(recipe, name), name
    assert args.spec_augment is True and overrides["use_weighted_layer_sum"] is True


def test_a_frozen_start_as_long_as_training_is_refused():
    with pytest.raises(ValueError, match=r"--freeze_audio_epochs 4 >= --num_epochs 4: the audio tower would never"):
        Arguments(data_dir="corpus", num_epochs=4, freeze_audio_epochs=4).check()
    with pytest.raises(ValueError, match=r"--freeze_audio_epochs must be >= 0"):
        Arguments(data_dir="corpus", freeze_audio_epochs=-1).check()
    with pytest.raises(ValueError, match=r"--mask_time_prob must be in \[0, 1\)"):
        Arguments(data_dir="corpus", mask_time_prob=1.5).check()


def test_spec_augment_masks_whisper_input_within_each_item_in_training_only(tiny_whisper):
    from transformers import AutoModel

    encoder = MERWhisperEncoder.from_whisper(AutoModel.from_pretrained(tiny_whisper))
    encoder.config.apply_spec_augment = True
    encoder.config.mask_time_prob, encoder.config.mask_time_length = 0.3, 5
    encoder.config.mask_feature_prob, encoder.config.mask_feature_length = 0.2, 2
    features = torch.ones(2, encoder.config.num_mel_bins, 60)
    mask = torch.ones(2, 60, dtype=torch.long)
    mask[1, 30:] = 0
    torch.manual_seed(0)
    masked = encoder._spec_augment(features, mask)
    assert torch.equal(features, torch.ones_like(features))  # the caller's tensor is left alone
    frames_hit = (masked == 0).all(dim=1)  # (B, frames): whole frames set to 0
    assert frames_hit[0].any() and frames_hit[1, :30].any() and not frames_hit[1, 30:].any()
    assert (masked == 0).all(dim=2).any()  # and whole mel bins
    spans = _random_spans(torch.tensor([100]), 100, 0.5, 10, 0)
    assert 10 <= int(spans.sum()) <= 100
    assert not _random_spans(torch.tensor([100]), 100, 0.0, 10, 2).any()

    inputs = torch.randn(1, encoder.config.num_mel_bins, 40)
    encoder.eval()
    with torch.no_grad():
        first, second = encoder(inputs).last_hidden_state, encoder(inputs).last_hidden_state
    torch.testing.assert_close(first, second)  # no masking at inference


def test_a_frozen_audio_tower_learns_nothing_until_its_epochs_are_over(tiny_corpus, tiny_encoders, processor):
    sys.path.insert(0, str(REPO))
    from accelerate import Accelerator

    import train
    from mer.training.protocol import load_corpus, plan_folds

    args = Arguments(
        data_dir=str(tiny_corpus.path), audio_model=tiny_encoders[0], text_model=tiny_encoders[1], folds=["1"],
        batch_size=4, num_workers=0, num_epochs=2,
        learning_rate=1e-2, encoder_learning_rate=1e-2, warmup_ratio=0.0, freeze_audio_epochs=1,
    )  # fmt: skip
    corpus = load_corpus(args)
    (split,) = plan_folds(corpus, args)
    overrides = corpus.check_labels({"fusion_hidden_size": 16, "fusion_num_heads": 2})
    accelerator = Accelerator(cpu=True)
    fold = train.prepare_fold(accelerator, args, corpus, split, processor, overrides)
    model = fold.model

    def snapshot() -> dict[str, dict[str, torch.Tensor]]:
        return {
            part: {name: p.detach().clone() for name, p in getattr(model, part).named_parameters()}
            for part in ("audio_encoder", "fusion")
        }

    def changed(before, after, part) -> bool:
        return any(not torch.equal(before[part][name], after[part][name]) for name in before[part])

    start = snapshot()
    assert train.set_audio_tower_learning(fold, False) is False
    train.train_epoch(accelerator, fold, "frozen")
    frozen = snapshot()
    assert changed(start, frozen, "fusion") and not changed(start, frozen, "audio_encoder")
    assert train.set_audio_tower_learning(fold, True) is True
    train.train_epoch(accelerator, fold, "learning")
    assert changed(frozen, snapshot(), "audio_encoder")
    assert all(p.requires_grad for p in fold.audio_parameters)
    # The convolutional front end stays frozen throughout (freeze_feature_encoder): it was never trainable.
    front_end = model.audio_encoder.feature_extractor.parameters()
    assert not any(p.requires_grad for p in front_end)
