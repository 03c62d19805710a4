"""Tiny encoders built from configs and saved like Hub checkpoints, for tests and the demo (no network needed).

They load through the same `from_pretrained(dir)` path a Hub id takes. The sizes are what the synthetic corpus was
measured to need: a wav2vec2 of about 40k parameters that hears arousal in espeak-ng speech within minutes on two
CPU cores, and a BERT of the same width over a whole-word vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from transformers import (
    BertConfig,
    BertModel,
    BertTokenizer,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Model,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperModel,
)

__all__ = [
    "SPECIAL_TOKENS",
    "build_tiny_encoders",
    "build_tiny_whisper",
    "spread_logits",
    "tiny_audio_config",
    "tiny_text_config",
    "tiny_whisper_config",
]

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny_audio_config(**overrides) -> Wav2Vec2Config:
    """Hidden 32, 2 layers, 4 conv layers of 32 channels; strides 5*4*4*4 = 320 samples (50 frames/s at 16 kHz),
    receptive field 345 samples; layer-norm front end, so it takes the sample mask."""
    settings = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32, 32, 32, 32),
        conv_kernel=(10, 8, 4, 4),
        conv_stride=(5, 4, 4, 4),
        feat_extract_norm="layer",
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        mask_time_prob=0.0,
        hidden_dropout=0.0,
        activation_dropout=0.0,
        attention_dropout=0.0,
        feat_proj_dropout=0.0,
        layerdrop=0.0,
    )
    return Wav2Vec2Config(**{**settings, **overrides})


def tiny_text_config(vocab_size: int, **overrides) -> BertConfig:
    """Hidden 32, 2 layers, 2 heads, transcripts up to 128 tokens."""
    settings = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    return BertConfig(**{**settings, **overrides})


def build_tiny_encoders(out_dir: str | Path, words: Iterable[str], seed: int = 0) -> tuple[Path, Path]:
    """Saves a random-init tiny wav2vec2 (with its feature extractor) and a tiny BERT (with a whole-word tokenizer
    over `words`) under `out_dir`; returns `(audio_dir, text_dir)` to pass where Hub ids would go."""
    out_dir = Path(out_dir)
    audio_dir, text_dir = out_dir / "tiny-wav2vec2", out_dir / "tiny-bert"
    torch.manual_seed(seed)
    Wav2Vec2Model(tiny_audio_config()).save_pretrained(audio_dir)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True, return_attention_mask=True).save_pretrained(
        audio_dir
    )
    vocab = SPECIAL_TOKENS + sorted({word.lower() for word in words} - set(SPECIAL_TOKENS))
    text_config = tiny_text_config(len(vocab))
    BertModel(text_config).save_pretrained(text_dir)
    tokenizer = BertTokenizer(
        vocab={token: index for index, token in enumerate(vocab)},
        model_max_length=text_config.max_position_embeddings,  # transcripts are truncated to what BERT can read
    )
    tokenizer.save_pretrained(text_dir)
    return audio_dir, text_dir


def tiny_whisper_config(**overrides) -> WhisperConfig:
    """A Whisper of width 32 with 2 encoder layers (and a 1-layer decoder, which MER leaves behind) on the real
    80-bin log-mel front end and its full 30 s of positions, so that it frames audio exactly as Whisper does."""
    settings = dict(
        d_model=32,
        encoder_layers=2,
        encoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=64,
        vocab_size=64,
        num_mel_bins=80,
        max_source_positions=1500,
        max_target_positions=32,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
    )
    return WhisperConfig(**{**settings, **overrides})


def build_tiny_whisper(out_dir: str | Path, seed: int = 0) -> Path:
    """Saves a random-init tiny Whisper (encoder and decoder, as a Hub checkpoint has them) with Whisper's feature
    extractor under `out_dir/tiny-whisper`; returns that directory, to pass where a Hub id would go."""
    directory = Path(out_dir) / "tiny-whisper"
    torch.manual_seed(seed)
    WhisperModel(tiny_whisper_config()).save_pretrained(directory)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(directory)
    return directory


def spread_logits(model: torch.nn.Module, gain: float = 3.0) -> torch.nn.Module:
    """Re-draws the classifier's weights of a MER `model` at `gain` times the 1/sqrt(fan-in) scale (its dimension
    head's, when it has one, at a third of it), so that an untrained model's answers depend on its input: at the
    config's initializer range (0.02), any two inputs get probabilities within about 1e-4 of each other (0.250 +-
    0.0006), and a comparison of two answers passes at any tolerance whatever the model read; spread, different
    inputs differ by about 0.1. Returns `model`."""
    # The dimension head at a third of the gain: its sigmoid would otherwise saturate, every answer near 0 or 1.
    heads = [(model.classifier, gain), (getattr(model, "dimension_head", None), gain / 3)]
    with torch.no_grad():
        for head, scale in heads:
            for layer in head or []:  # a dimensions-only model has no classifier
                if isinstance(layer, torch.nn.Linear):
                    torch.nn.init.normal_(layer.weight, std=scale * layer.in_features**-0.5)
    return model


def main() -> None:
    """`python -m mer.tiny --out DIR`: tiny encoders whose vocabulary covers the synthetic corpus."""
    import argparse

    from dataset_scripts.synthetic import vocabulary

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--out", required=True, help="Directory for tiny-wav2vec2/ and tiny-bert/.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    audio_dir, text_dir = build_tiny_encoders(args.out, vocabulary(), seed=args.seed)
    print(f"audio encoder: {audio_dir}\ntext encoder: {text_dir}")


if __name__ == "__main__":
    main()
