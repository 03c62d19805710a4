"""The emotion_dimensions `evaluate` module against the formulas written out (CCC) and scipy (Pearson's r), loaded
by path like train.py loads its metrics."""

from __future__ import annotations

from pathlib import Path

import evaluate
import numpy as np
import pytest
from dimension_reference import reference_ccc
from scipy.stats import pearsonr

METRIC = Path(__file__).resolve().parents[1] / "metrics" / "emotion_dimensions"


@pytest.fixture(scope="module")
def metric():
    return evaluate.load(str(METRIC))


@pytest.mark.parametrize("seed", range(6))
def test_ccc_r_and_mae_match_the_formulas_on_random_cases(metric, seed):
    rng = np.random.default_rng(seed)
    references = rng.uniform(0, 1, int(rng.integers(3, 200)))
    predictions = np.clip(
        rng.uniform(0.3, 1.2) * references + rng.normal(rng.uniform(-0.2, 0.2), 0.15, len(references)), 0, 1
    )
    result = metric.compute(predictions=predictions, references=references)
    assert result["ccc"] == pytest.approx(reference_ccc(predictions, references))
    assert result["pearson_r"] == pytest.approx(pearsonr(predictions, references).statistic)
    assert result["mae"] == pytest.approx(np.abs(predictions - references).mean())
    assert (result["num_examples"], result["num_missing"]) == (len(references), 0)


def test_ccc_punishes_shift_and_scale_that_pearson_ignores(metric):
    references = np.linspace(0, 1, 50)
    assert metric.compute(predictions=references, references=references)["ccc"] == pytest.approx(1.0)
    shifted = metric.compute(predictions=0.5 * references + 0.4, references=references)
    assert shifted["pearson_r"] == pytest.approx(1.0) and shifted["ccc"] < 0.8


def test_missing_references_are_left_out_and_counted(metric):
    references = np.array([0.1, np.nan, 0.5, 0.9, np.nan])
    predictions = np.array([0.2, 0.7, 0.4, 0.8, 0.1])
    result = metric.compute(predictions=predictions, references=references)
    kept = ~np.isnan(references)
    assert result["ccc"] == pytest.approx(reference_ccc(predictions[kept], references[kept]))
    assert (result["num_examples"], result["num_missing"]) == (3, 2)


@pytest.mark.parametrize(
    ("predictions", "references", "message"),
    [
        ([0.1, np.nan], [0.2, 0.3], "1 predictions are not numbers"),
        ([0.1, 0.2], [0.2, np.nan], "1 references with a value: the metrics need at least two"),
    ],
)
def test_bad_input_is_named(metric, predictions, references, message):
    with pytest.raises(ValueError, match=message):
        metric.compute(predictions=predictions, references=references)
