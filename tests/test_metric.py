"""The emotion_recognition `evaluate` module against scikit-learn, loaded by path like train.py loads it."""

from __future__ import annotations

import warnings
from pathlib import Path

import evaluate
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

METRIC = Path(__file__).resolve().parents[1] / "metrics" / "emotion_recognition"


@pytest.fixture(scope="module")
def metric():
    return evaluate.load(str(METRIC))


@pytest.mark.parametrize("seed", range(8))
def test_matches_scikit_learn_on_random_cases(metric, seed):
    rng = np.random.default_rng(seed)
    num_labels = int(rng.integers(2, 7))
    size = int(rng.integers(5, 300))
    references = rng.integers(0, num_labels, size)
    # Mostly right, sometimes a class never predicted or never present.
    predictions = np.where(rng.random(size) < 0.6, references, rng.integers(0, num_labels, size))
    if seed % 3 == 0:
        references[references == num_labels - 1] = 0
    result = metric.compute(predictions=predictions, references=references, num_labels=num_labels)

    assert result["wa"] == pytest.approx(accuracy_score(references, predictions))
    with warnings.catch_warnings():  # scikit-learn warns about classes without references, and leaves them out
        warnings.simplefilter("ignore")
        expected_ua = balanced_accuracy_score(references, predictions)
    assert result["ua"] == pytest.approx(expected_ua)
    assert result["macro_f1"] == pytest.approx(f1_score(references, predictions, average="macro", zero_division=0))
    assert result["micro_f1"] == pytest.approx(f1_score(references, predictions, average="micro"))
    expected_confusion = confusion_matrix(references, predictions, labels=list(range(num_labels)))
    assert result["confusion_matrix"] == expected_confusion.tolist()
    assert result["num_examples"] == size


def test_per_class_recall_is_named(metric):
    result = metric.compute(
        predictions=[0, 1, 1, 3], references=[0, 1, 2, 3], num_labels=4, label_names=["neu", "hap", "ang", "sad"]
    )
    assert result["per_class_recall"] == {"neu": 1.0, "hap": 1.0, "ang": 0.0, "sad": 1.0}
    assert result["ua"] == 0.75


def test_out_of_range_indices_are_refused(metric):
    with pytest.raises(ValueError, match=r"Class indices must lie in \[0, 2\)"):
        metric.compute(predictions=[0, 2], references=[0, 1], num_labels=2)
