"""The picture of what the fusion looked at: the waveform, and under it one heat map per attention direction of the
last fusion layer, words on the vertical axis and time in the audio on the horizontal one."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from recognizer import Analysis

__all__ = ["CAPTIONS", "attention_image"]

CAPTIONS = {
    "words → audio": "where each word looked in the audio (each row sums to 1)",
    "audio → words": "which words each moment of the audio looked at (each column sums to 1)",
}
_MAX_TICK_LABELS = 40  # beyond this many tokens, label every n-th row so the labels stay readable
_ENVELOPE_POINTS = 2000  # more than the picture has pixels across; a minute of audio would be a million points


def attention_image(analysis: Analysis, width_inches: float = 9.0, dpi: int = 100) -> np.ndarray:
    """Draws `analysis.attentions` over the waveform; returns the picture as an RGB array `(height, width, 3)`.

    Uses matplotlib's object API (no pyplot state), so concurrent requests can draw at the same time.
    """
    num_tokens = len(analysis.tokens)
    map_height = min(0.6 + 0.22 * num_tokens, 6.0)
    heights = [1.0] + [map_height] * len(analysis.attentions)
    figure = Figure(figsize=(width_inches, sum(heights) + 0.9 * len(heights)), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(heights), 1, sharex=True, height_ratios=heights, squeeze=False)[:, 0]

    time, low, high = _envelope(analysis.waveform, analysis.sampling_rate)
    axes[0].fill_between(time, low, high, linewidth=0.5, color="#444444")
    axes[0].set_ylabel("audio")
    axes[0].set_yticks([])
    transcript = analysis.transcript if len(analysis.transcript) <= 60 else analysis.transcript[:59] + "…"
    axes[0].set_title(f"Last fusion layer, mean over heads: “{transcript}”", loc="left", fontsize=11)

    for ax, (direction, weights) in zip(axes[1:], analysis.attentions.items(), strict=True):
        end = weights.shape[1] * analysis.frame_seconds
        image = ax.imshow(
            weights, aspect="auto", interpolation="nearest", cmap="magma", extent=(0, end, num_tokens - 0.5, -0.5)
        )
        step = max(1, -(-num_tokens // _MAX_TICK_LABELS))
        ax.set_yticks(range(0, num_tokens, step), analysis.tokens[::step], fontsize=8)
        ax.set_title(f"{direction}: {CAPTIONS[direction]}", loc="left", fontsize=10)
        figure.colorbar(image, ax=ax, pad=0.01, fraction=0.03)
    axes[-1].set_xlabel("time in the audio (s)")
    axes[0].set_xlim(0, len(analysis.waveform) / analysis.sampling_rate)

    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def _envelope(waveform: np.ndarray, sampling_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(time, lowest, highest) sample over `_ENVELOPE_POINTS` equal stretches of `waveform` (each sample when
    shorter)."""
    step = max(1, len(waveform) // _ENVELOPE_POINTS)
    stretches = waveform[: len(waveform) // step * step].reshape(-1, step)
    time = (np.arange(len(stretches)) * step + step / 2) / sampling_rate
    return time, stretches.min(axis=1), stretches.max(axis=1)
