"""Scoring speech recognition: the word error rate of transcripts against references, after the normalisation that
makes "Don't!" and "don't" the same word.

The recogniser itself (`SpeechRecognizer`: faster-whisper where installed, else transformers' pipeline) lives with
the model's code (`modeling_mer.asr_mer`), because the pipeline that travels with every saved model uses it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

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
    """The word errors of `hypotheses` against `references` (paired in order), after `normalise_words`.

    Raises:
        ValueError: the two lists differ in length.
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses.")
    totals = [0, 0, 0]
    words = 0
    for reference, hypothesis in zip(references, hypotheses, strict=True):
        ref, hyp = normalise_words(reference), normalise_words(hypothesis)
        for index, count in enumerate(_edits(ref, hyp)):
            totals[index] += count
        words += len(ref)
    return WordErrors(*totals, reference_words=words)


def _edits(ref: list[str], hyp: list[str]) -> tuple[int, int, int]:
    """(substitutions, deletions, insertions) of the cheapest alignment (Levenshtein over words)."""
    # Each cell: (cost, substitutions, deletions, insertions) of the cheapest alignment of the prefixes.
    previous = [(j, 0, 0, j) for j in range(len(hyp) + 1)]
    for i in range(1, len(ref) + 1):
        current = [(i, 0, i, 0)]
        for j in range(1, len(hyp) + 1):
            if ref[i - 1] == hyp[j - 1]:
                best = previous[j - 1]
            else:
                cost, s, d, n = previous[j - 1]
                best = (cost + 1, s + 1, d, n)
                cost, s, d, n = previous[j]
                best = min(best, (cost + 1, s, d + 1, n))
                cost, s, d, n = current[j - 1]
                best = min(best, (cost + 1, s, d, n + 1))
            current.append(best)
        previous = current
    return previous[-1][1:]
