"""Lin's concordance correlation coefficient written out from the paper, for tests to check the code against."""

from __future__ import annotations

from collections.abc import Sequence


def reference_ccc(x: Sequence[float], y: Sequence[float]) -> float:
    """Lin (1989), eq. 2, with sums written out (population moments)."""
    n = len(x)
    mean_x, mean_y = sum(x) / n, sum(y) / n
    s_xy = sum((a - mean_x) * (b - mean_y) for a, b in zip(x, y, strict=True)) / n
    s_xx = sum((a - mean_x) ** 2 for a in x) / n
    s_yy = sum((b - mean_y) ** 2 for b in y) / n
    return 2 * s_xy / (s_xx + s_yy + (mean_x - mean_y) ** 2)
