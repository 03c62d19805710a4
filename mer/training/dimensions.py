"""Dimensions of emotion (arousal, valence, dominance) in training: the corpus's ratings brought to [0, 1], the
scores of each dimension (CCC, Pearson's r, MAE) per fold and pooled over folds, and the validation score that
chooses the epoch when classes and dimensions are trained together.

Missing ratings stay NaN: the model's loss and every score leave them out, and the run counts them.
"""

from __future__ import annotations

import math

import datasets
import numpy as np

from dataset_scripts.dimensions import DimensionScale, dimension_metric
from modeling_mer.configuration_mer import DIMENSIONS

__all__ = [
    "DIMENSION_SCORES",
    "attach_dimensions",
    "count_missing",
    "describe_selection",
    "parse_dimensions",
    "pool_dimension_scores",
    "score_dimensions",
    "selection_score",
    "with_dimensions",
]

# The scores of every dimension, and their names in tables.
DIMENSION_SCORES = {"ccc": "CCC", "pearson_r": "r", "mae": "MAE"}


def parse_dimensions(text: str | None) -> list[str]:
    """``"arousal,valence"`` -> ``["arousal", "valence"]`` (empty for None).

    Raises:
        ValueError: a name that is not a dimension, or one given twice.
    """
    names = [name.strip().lower() for name in (text or "").split(",") if name.strip()]
    unknown = [name for name in names if name not in DIMENSIONS]
    if unknown:
        raise ValueError(f"--dimensions {text!r}: {', '.join(unknown)} is not a dimension; they are {DIMENSIONS}.")
    if len(set(names)) != len(names):
        raise ValueError(f"--dimensions {text!r} names a dimension twice.")
    return names


def with_dimensions(overrides: dict, dimensions: list[str]) -> dict:
    """The config overrides with the model's `dimensions` (those the run trains).

    Raises:
        ValueError: `--config_overrides dimensions=...` names others than `--dimensions`.
    """
    given = overrides.get("dimensions")
    if given is not None and list(given) != list(dimensions):
        raise ValueError(
            f"--config_overrides dimensions={given} does not match --dimensions {','.join(dimensions) or '(none)'}: "
            "the model predicts the dimensions the run trains; name them with --dimensions alone."
        )
    return {**overrides, "dimensions": list(dimensions)} if dimensions else overrides


def attach_dimensions(
    folds: dict[str, datasets.Dataset], dimensions: list[str], scale: DimensionScale | None, corpus: str
) -> dict[str, datasets.Dataset]:
    """Each fold with its `dimensions` columns mapped by `scale` onto [0, 1] (missing ratings NaN).

    Raises:
        ValueError: the corpus has no ratings of a dimension asked for (`scale` None: none at all), naming the
            corpus and what it has; or ratings beyond the scale, naming the utterances.
    """
    first = next(iter(folds.values()))
    has = [name for name in DIMENSIONS if name in first.column_names]
    lacking = [name for name in dimensions if scale is None or any(name not in d.column_names for d in folds.values())]
    if lacking:
        what = f"ratings of {', '.join(has)}" if has and scale is not None else "no dimensional ratings (classes only)"
        raise ValueError(f"--dimensions {','.join(dimensions)}: {corpus} has no {', '.join(lacking)}; it has {what}.")
    mapped = {}
    for fold, dataset in folds.items():
        ids = dataset["id"] if "id" in dataset.column_names else [f"{fold} row {row}" for row in range(len(dataset))]
        for name in dimensions:
            values = scale.to_unit(dataset[name], ids, name, corpus)
            dataset = dataset.remove_columns(name).add_column(name, values)
        mapped[fold] = dataset.cast(_float_columns(dataset.features, dimensions))
    return mapped


def _float_columns(features: datasets.Features, dimensions: list[str]) -> datasets.Features:
    return datasets.Features({**features, **{name: datasets.Value("float64") for name in dimensions}})


def count_missing(named: dict[str, datasets.Dataset], dimensions: list[str]) -> dict[str, int]:
    """Dimension -> utterances of every dataset in `named` without a rating of it."""
    return {
        name: sum(int(np.isnan(np.asarray(d[name], dtype=np.float64)).sum()) for d in named.values() if d is not None)
        for name in dimensions
    }


def score_dimensions(rows: list[dict], dimensions: list[str]) -> dict[str, dict]:
    """Dimension -> its scores (`DIMENSION_SCORES`, `num_examples`, `num_missing`) over `rows` (each with the
    predicted `dimensions` and the rated `dimension_labels`), plus the `moments` that pool folds exactly. A dimension
    with fewer than two ratings scores NaN."""
    predicted = np.array([row["dimensions"] for row in rows], dtype=np.float64).reshape(len(rows), len(dimensions))
    rated = np.array([row["dimension_labels"] for row in rows], dtype=np.float64).reshape(predicted.shape)
    scores = {}
    for column, name in enumerate(dimensions):
        p, r = predicted[:, column], rated[:, column]
        present = ~np.isnan(r)
        if present.sum() >= 2:
            scores[name] = dimension_metric().compute(predictions=p, references=r)
        else:
            scores[name] = {key: math.nan for key in DIMENSION_SCORES}
            scores[name] |= {"num_examples": int(present.sum()), "num_missing": int((~present).sum())}
        p, r = p[present], r[present]
        scores[name]["moments"] = {
            "n": int(present.sum()),
            "sum_p": float(p.sum()),
            "sum_r": float(r.sum()),
            "sum_pp": float((p * p).sum()),
            "sum_rr": float((r * r).sum()),
            "sum_pr": float((p * r).sum()),
            "sum_abs": float(np.abs(p - r).sum()),
        }
    return scores


def pool_dimension_scores(fold_scores: list[dict]) -> dict:
    """The scores of one dimension over the test utterances of several folds taken together, from each fold's
    `moments` (the metric needs the values themselves; these sums are what its formulas read)."""
    moments = {key: sum(scores["moments"][key] for scores in fold_scores) for key in fold_scores[0]["moments"]}
    n = moments["n"]
    missing = sum(scores["num_missing"] for scores in fold_scores)
    if n < 2:
        return {key: math.nan for key in DIMENSION_SCORES} | {"num_examples": n, "num_missing": missing}
    mean_p, mean_r = moments["sum_p"] / n, moments["sum_r"] / n
    variance_p, variance_r = moments["sum_pp"] / n - mean_p**2, moments["sum_rr"] / n - mean_r**2
    covariance = moments["sum_pr"] / n - mean_p * mean_r
    spread = math.sqrt(max(variance_p, 0.0) * max(variance_r, 0.0))
    return {
        "ccc": 2 * covariance / (variance_p + variance_r + (mean_p - mean_r) ** 2),
        "pearson_r": covariance / spread if spread > 0 else math.nan,
        "mae": moments["sum_abs"] / n,
        "num_examples": n,
        "num_missing": missing,
    }


def selection_score(scores: dict, classes: bool = True) -> float:
    """What chooses the epoch on validation: UA for classes alone, the mean CCC over the dimensions for dimensions
    alone, and for both the mean of the two (a dimension without ratings in validation counts as CCC 0)."""
    if "dimensions" not in scores:
        return scores["ua"]
    classes = classes and "ua" in scores  # a dimensions-only model's scores have no UA
    cccs = [value["ccc"] for value in scores["dimensions"].values()]
    ccc = float(np.mean([0.0 if math.isnan(value) else value for value in cccs]))
    return (scores["ua"] + ccc) / 2 if classes else ccc


def describe_selection(dimensions: list[str], classes: bool = True) -> str:
    """The protocol line's words for `selection_score`."""
    if not dimensions:
        return "validation UA chooses the epoch"
    ccc = f"the CCC of {dimensions[0]}" if len(dimensions) == 1 else f"the mean CCC of {', '.join(dimensions)}"
    if not classes:
        return f"validation {ccc} chooses the epoch"
    return f"the mean of validation UA and {ccc} chooses the epoch"
