"""The picture of an utterance's dimensions of emotion: its point in the arousal-valence plane (valence across,
arousal up, both on [0, 1]) when the model predicts both, and a bar per dimension for what the plane does not show."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["QUADRANTS", "dimension_image"]

# The quadrants of the plane, as the circumplex model of affect names their corners (Russell, 1980).
QUADRANTS = {(1, 1): "excited, happy", (0, 1): "angry, afraid", (0, 0): "sad, bored", (1, 0): "calm, content"}


def dimension_image(dimensions: dict[str, float], size_inches: float = 4.2, dpi: int = 100) -> np.ndarray:
    """Draws `dimensions` (name -> value on [0, 1]); returns the picture as an RGB array `(height, width, 3)`.

    Uses matplotlib's object API (no pyplot state), so concurrent requests can draw at the same time.
    """
    plane = "valence" in dimensions and "arousal" in dimensions
    others = {name: value for name, value in dimensions.items() if not plane or name not in ("valence", "arousal")}
    heights = ([size_inches] if plane else []) + ([0.5 + 0.35 * len(others)] if others else [])
    figure = Figure(figsize=(size_inches + 0.6, sum(heights) + 0.4), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    axes = list(figure.subplots(len(heights), 1, height_ratios=heights, squeeze=False)[:, 0])
    if plane:
        _plane(axes.pop(0), dimensions["valence"], dimensions["arousal"])
    if others:
        _bars(axes.pop(0), others)
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def _plane(ax, valence: float, arousal: float) -> None:
    ax.axhline(0.5, color="0.75", linewidth=0.8)
    ax.axvline(0.5, color="0.75", linewidth=0.8)
    for (right, top), words in QUADRANTS.items():
        ax.text(0.97 if right else 0.03, 0.97 if top else 0.03, words, ha="right" if right else "left",
                va="top" if top else "bottom", fontsize=8, color="0.45")  # fmt: skip
    ax.scatter([valence], [arousal], s=140, color="#d62728", edgecolor="black", zorder=3)
    ax.annotate(f"valence {valence:.2f}\narousal {arousal:.2f}", (valence, arousal), textcoords="offset points",
                xytext=(10, -22 if arousal > 0.8 else 8), fontsize=9)  # fmt: skip
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("valence (negative → positive)")
    ax.set_ylabel("arousal (calm → active)")
    ax.set_title("Arousal and valence of the utterance", loc="left", fontsize=10)


def _bars(ax, dimensions: dict[str, float]) -> None:
    names = list(dimensions)
    ax.barh(range(len(names)), [dimensions[name] for name in names], color="#1f77b4", height=0.6)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    for row, name in enumerate(names):
        ax.text(min(dimensions[name] + 0.02, 0.9), row, f"{dimensions[name]:.2f}", va="center", fontsize=8)
    ax.set_xlabel("0 (lowest) to 1 (highest)")
