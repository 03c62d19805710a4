"""Tiny stand-ins for the demo's models, built from configs without the Hub: for the Space's tests and for timing
the app when no trained model exists yet. Not part of the deployed Space.

`save_tiny_mer(dir)` saves a random-init MER model and processor (the package's tiny encoders); `save_tiny_asr(dir)`
saves a random-init character-level `Wav2Vec2ForCTC` that `transformers.pipeline("automatic-speech-recognition")`
loads offline. Both transcribe and classify nonsense, which is all the tests need: the plumbing is real.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

import torch
from example_clips import EXAMPLES
from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC, Wav2Vec2Processor

from mer.tiny import build_tiny_encoders, spread_logits, tiny_audio_config
from modeling_mer import MERModel, MERProcessor
from modeling_mer.pipeline_mer import save_with_pipeline

__all__ = ["TINY_WORDS", "save_tiny_asr", "save_tiny_mer"]

# The words of the Space's example clips, so the tiny tokenizer has no [UNK] for them.
TINY_WORDS = tuple(sorted({word for clip in EXAMPLES for word in re.findall(r"\w+|[^\w\s]", clip.text.lower())}))


def save_tiny_mer(
    out_dir: str | Path,
    words: tuple[str, ...] = TINY_WORDS,
    seed: int = 0,
    dimensions: list[str] | None = None,
    **config,
) -> Path:
    """Saves a tiny MER model (bidirectional fusion, 2 layers of width 16, `spread_logits`; predicting `dimensions`
    of emotion too, when given; other `MERConfig` fields from `config`, e.g. `id2label={}` for a dimensions-only
    model) and its processor into `out_dir`; returns `out_dir`, loadable with `AutoModel` / `AutoProcessor` and
    `trust_remote_code=True`."""
    out_dir = Path(out_dir)
    audio_dir, text_dir = build_tiny_encoders(out_dir / "encoders", words, seed=seed)
    torch.manual_seed(seed)
    model = MERModel.from_audio_text_pretrained(
        str(audio_dir), str(text_dir), fusion_hidden_size=16, fusion_num_heads=2, dimensions=dimensions, **config
    )
    spread_logits(model)  # answers that depend on the input, so that comparisons of answers can fail
    processor = MERProcessor.from_audio_text_pretrained(str(audio_dir), str(text_dir))
    return save_with_pipeline(model, processor, out_dir / "model")


def save_tiny_asr(out_dir: str | Path, seed: int = 0) -> Path:
    """Saves a random-init character-level CTC model with its feature extractor and tokenizer into `out_dir`;
    returns `out_dir`, loadable with `pipeline("automatic-speech-recognition", model=out_dir)`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = ["<pad>", "<s>", "</s>", "<unk>", "|", *string.ascii_lowercase, "'"]
    (out_dir / "vocab.json").write_text(json.dumps({token: index for index, token in enumerate(vocab)}))
    tokenizer = Wav2Vec2CTCTokenizer(str(out_dir / "vocab.json"), word_delimiter_token="|")
    feature_extractor = Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True, return_attention_mask=True)
    Wav2Vec2Processor(feature_extractor=feature_extractor, tokenizer=tokenizer).save_pretrained(out_dir)
    torch.manual_seed(seed)
    config = tiny_audio_config(vocab_size=len(vocab), pad_token_id=0, ctc_loss_reduction="mean")
    Wav2Vec2ForCTC(config).save_pretrained(out_dir)
    return out_dir
