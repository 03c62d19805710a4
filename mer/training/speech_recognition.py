"""Scoring speech recognition: the word error rate of transcripts against references (counted by jiwer, the field's
standard), after the normalisation that makes "Don't!" and "don't" the same word.

The recogniser itself (`SpeechRecognizer`: faster-whisper where installed, else transformers' pipeline) lives with
the model's code (`modeling_mer.asr_mer`), because the pipeline that travels with every saved model uses it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import jiwer

from modeling_mer.asr_mer import DEFAULT_ASR_MODEL, SpeechRecognizer, default_asr_model

__all__ = [
    "DEFAULT_ASR_MODEL",
    "SpeechRecognizer",
    "WordErrors",
    "default_asr_model",
    "normalise_words",
    "word_error_rate",
]

_NOT_WORD = re.compile(r"[^a-z0-9' ]+")
# Transcribers' marks of what was not said as words: IEMOCAP's [LAUGHTER] and [BREATHING], <noise>-style tags.
_NON_SPEECH = re.compile(r"\[[^\]]*\]|<[^>]*>")


def normalise_words(text: str) -> list[str]:
    """Lower-case words without punctuation (apostrophes inside words are kept: "don't"); hyphens split words;
    non-speech marks in brackets ("[LAUGHTER]", "<noise>") are not words."""
    text = _NOT_WORD.sub(" ", _NON_SPEECH.sub(" ", text.lower()).replace("-", " "))
    return [word.strip("'") for word in text.split() if word.strip("'")]


@dataclass(frozen=True)
class WordErrors:
    """Word-level edit counts of hypotheses against references, summed over utterances."""

    substitutions: int
    deletions: int
    insertions: int
    reference_words: int

    @property
    def wer(self) -> float:
        """(S + D + I) / N; 0 for no reference words and no insertions."""
        errors = self.substitutions + self.deletions + self.insertions
        return errors / self.reference_words if self.reference_words else float(errors > 0)


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> WordErrors:
    """The word errors of `hypotheses` against `references` (paired in order), after `normalise_words`, counted by
    jiwer (the cheapest word alignment of each pair, summed over pairs).

    Raises:
        ValueError: the two lists differ in length.
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses.")
    pairs = [(normalise_words(reference), normalise_words(hypothesis)) for reference, hypothesis in zip(
        references, hypotheses, strict=True
    )]  # fmt: skip
    # A reference without words (only non-speech marks) has nothing to align to: jiwer refuses it, and every word
    # heard there is an insertion.
    spoken = [(" ".join(reference), " ".join(hypothesis)) for reference, hypothesis in pairs if reference]
    insertions = sum(len(hypothesis) for reference, hypothesis in pairs if not reference)
    if not spoken:
        return WordErrors(0, 0, insertions, reference_words=0)
    counts = jiwer.process_words([reference for reference, _ in spoken], [hypothesis for _, hypothesis in spoken])
    return WordErrors(
        counts.substitutions,
        counts.deletions,
        counts.insertions + insertions,
        reference_words=counts.hits + counts.substitutions + counts.deletions,
    )
