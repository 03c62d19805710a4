"""The dimensional ratings of the corpora (arousal, valence, dominance), each brought to the model's range [0, 1].

Corpora rate the dimensions on their own scales; a model predicts each on [0, 1] (0 the lowest end of the scale, 1
the highest, as audEERING's dimensional models do), so each corpus's ratings are mapped linearly:
``(rating - low) / (high - low)``.

    corpus        scale   mapping                     what lies outside
    IEMOCAP       1-5     (r - 1) / 4                 0.5 and 5.5 occur in the release's averages: clipped to 0 / 1
    MSP-Podcast   1-7     (r - 1) / 6                 nothing (the builder refuses ratings outside 1-7)
    a dataset     0-1     as it is (--dimension_scale LOW,HIGH states another scale)

A rating that is missing (None or NaN) stays missing: it is left out of that dimension's loss and metric, never
filled with a guess. A rating beyond what the corpus documents is an error that names the utterances.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CORPUS_SCALES", "UNIT_SCALE", "DimensionScale", "dimension_metric", "parse_scale"]

_METRIC = Path(__file__).resolve().parents[1] / "metrics" / "emotion_dimensions"


@dataclass(frozen=True)
class DimensionScale:
    """A rating scale from `low` to `high`, mapped linearly onto [0, 1]. Ratings between `accepted` and the scale's
    ends (the few averages a release holds beyond its own scale) are clipped to 0 or 1; beyond `accepted`, an error."""

    low: float
    high: float
    accepted: tuple[float, float] | None = None  # None: exactly the scale

    def __post_init__(self):
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"a rating scale needs two finite ends, low < high; got {self.low:g}-{self.high:g}")

    @property
    def bounds(self) -> tuple[float, float]:
        return self.accepted or (self.low, self.high)

    def __str__(self) -> str:
        clipped = f" ({self.bounds[0]:g}-{self.bounds[1]:g} accepted, clipped)" if self.accepted else ""
        return f"{self.low:g}-{self.high:g}{clipped}"

    def to_unit(self, values: Sequence[float | None], ids: Sequence[str], column: str, corpus: str) -> list[float]:
        """`values` on [0, 1]; None and NaN become NaN (missing).

        Raises:
            ValueError: naming the utterances (by `ids`) whose rating lies beyond the scale (or is infinite).
        """
        low, high = self.bounds
        mapped, outside = [], []
        for value, utterance in zip(values, ids, strict=True):
            if value is None or (isinstance(value, float) and math.isnan(value)):
                mapped.append(math.nan)
                continue
            if not (math.isfinite(value) and low <= value <= high):
                outside.append(f"{utterance} ({value:g})")
                continue
            mapped.append(min(1.0, max(0.0, (value - self.low) / (self.high - self.low))))
        if outside:
            listed = ", ".join(outside[:10]) + (f" and {len(outside) - 10} more" if len(outside) > 10 else "")
            raise ValueError(
                f"{corpus}: {len(outside)} {column} rating(s) outside its scale {self}: {listed}. Correct or drop "
                "these rows (or, for a dataset of your own, state its scale with --dimension_scale LOW,HIGH)."
            )
        return mapped


UNIT_SCALE = DimensionScale(0.0, 1.0)
# The scale of each corpus (by its name in `mer.training.corpora.CORPORA`) whose builder gives dimensional ratings.
CORPUS_SCALES = {
    "iemocap": DimensionScale(1.0, 5.0, accepted=(0.5, 5.5)),
    "msp_podcast": DimensionScale(1.0, 7.0),
}


@functools.cache
def dimension_metric():
    """The `evaluate` module `metrics/emotion_dimensions` (CCC, Pearson's r, MAE of one dimension), loaded once."""
    import evaluate

    return evaluate.load(str(_METRIC))


def parse_scale(text: str) -> DimensionScale:
    """``"1,5"`` -> `DimensionScale(1, 5)`.

    Raises:
        ValueError: not two numbers, or not low < high.
    """
    parts = [part.strip() for part in text.split(",")]
    try:
        low, high = (float(part) for part in parts)
    except ValueError:
        raise ValueError(f"--dimension_scale {text!r}: expected LOW,HIGH, e.g. 1,5") from None
    return DimensionScale(low, high)
