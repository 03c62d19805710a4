"""The frozen-feature baseline (mer.training.baseline, train.py --baseline): pooled statistics, the probe on a fold,
its report beside MER, and the error for folds too small for it."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from mer.training.baseline import PROBE_C_GRID, pooled_statistics, probe_fold, utterance_keys
from mer.training.folds import Corpus, FoldSplit
from mer.training.reporting import against_probe_line

REPO = Path(__file__).resolve().parents[1]
LABELS = ["neutral", "happy", "angry", "sad"]


def test_pooled_statistics_count_only_the_real_positions():
    states = torch.tensor([[[1.0, 2.0], [3.0, 6.0], [100.0, 100.0]], [[5.0, 5.0], [0.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    pooled = pooled_statistics(states, mask)
    torch.testing.assert_close(pooled[0], torch.tensor([2.0, 4.0, 1.0, 2.0]))  # mean (2, 4), std (1, 2)
    torch.testing.assert_close(pooled[1], torch.tensor([5.0, 5.0, 0.0, 0.0]))  # one position: no spread


class LabelFeatures:
    """Stands in for FrozenFeatures: speech features that carry the label (plus noise), text features of noise."""

    def __init__(self, informative: bool, seed: int = 0):
        self.informative, self.rng = informative, np.random.default_rng(seed)

    def of(self, dataset) -> dict[str, np.ndarray]:
        labels = np.asarray(dataset["label"])
        audio = self.rng.normal(size=(len(labels), 8))
        if self.informative:
            audio[np.arange(len(labels)), labels] += 4.0
        return {"audio": audio, "text": self.rng.normal(size=(len(labels), 8))}


def fold(train_labels: list[int], name: str = "fold1") -> tuple[FoldSplit, Corpus]:
    def part(labels):
        return datasets.Dataset.from_dict({"label": labels, "text": ["x"] * len(labels)})

    balanced = [label for label in range(4) for _ in range(10)]
    split = FoldSplit(name=name, train=part(train_labels), validation=part(balanced), test=part(balanced))
    corpus = Corpus(folds={}, columns=("audio", "text", "label"), speaker_column=None, label_names=LABELS, name="c")
    return split, corpus


def test_the_probe_reads_what_the_features_carry_and_chooses_c_on_validation():
    split, corpus = fold([label for label in range(4) for _ in range(30)])
    informative = probe_fold(LabelFeatures(True), split, corpus)
    assert set(informative) == {"probe_audio", "probe_text", "probe_both"}
    rows = informative["probe_audio"]["rows"]
    assert [row["index"] for row in rows] == list(range(40)) and [row["label"] for row in rows] == split.test["label"]
    accuracy = np.mean([row["prediction"] == row["label"] for row in rows])
    assert accuracy > 0.9
    assert informative["probe_audio"]["C"] in PROBE_C_GRID and informative["probe_audio"]["validation_ua"] > 0.9
    for row in rows:
        assert sum(row["probabilities"]) == pytest.approx(1.0, abs=1e-4)
    # Noise carries nothing: about chance (0.25) on 40 test utterances.
    noise = probe_fold(LabelFeatures(False), split, corpus, with_text=False)
    assert set(noise) == {"probe_audio"}
    assert np.mean([row["prediction"] == row["label"] for row in noise["probe_audio"]["rows"]]) < 0.6


def test_a_fold_too_small_for_the_probe_is_refused_naming_the_class():
    split, corpus = fold([0] * 10 + [1] * 10 + [2] * 10 + [3], name="fold4")
    with pytest.raises(ValueError, match=r"Fold fold4: .* 31 has sad \(1\)\. .*--baseline none"):
        probe_fold(LabelFeatures(True), split, corpus)


def test_utterances_are_named_by_id_and_corpus_else_by_dataset_and_row():
    corpus = Corpus(folds={}, columns=("a", "t", "l"), speaker_column=None, label_names=LABELS, name="c")
    with_ids = datasets.Dataset.from_dict({"id": ["u1", "u2"]})
    assert utterance_keys(corpus, with_ids) == [(None, "u1"), (None, "u2")]
    repeated = datasets.Dataset.from_dict({"id": ["u1", "u1"]})
    keys = utterance_keys(corpus, repeated)
    assert len(set(keys)) == 2 and keys[0][1] == 0
    corpus.corpus_column = "corpus"
    pooled = datasets.Dataset.from_dict({"id": ["u1", "u1"], "corpus": ["emodb", "ravdess"]})
    assert utterance_keys(corpus, pooled) == [("emodb", "u1"), ("ravdess", "u1")]


def test_the_margin_line_says_whether_fine_tuning_beat_the_probe():
    summary = {
        "against_probe": {
            "probe": "probe_audio",
            "probe_description": "linear probe: frozen speech features",
            "mer_ua": 0.80,
            "probe_ua": 0.84,
            "margin_ua": -0.04,
            "mer_wa": 0.81,
            "probe_wa": 0.83,
        }
    }
    line = against_probe_line(summary)
    assert "did not beat" in line and "UA 80.00 against 84.00 (-4.00 points)" in line
    assert against_probe_line({"against_probe": None}) == ""


def test_the_probe_alone_reports_on_the_run_folds_without_training(
    synthetic_corpus, tiny_encoders, environment, tmp_path
):
    out = tmp_path / "probe"
    command = [
        sys.executable, str(REPO / "train.py"), "--data_dir", str(synthetic_corpus.path),
        "--audio_model", tiny_encoders[0], "--text_model", tiny_encoders[1], "--output_dir", str(out),
        "--folds", "1", "2", "--baseline", "probe-only", "--num_workers", "0",
    ]  # fmt: skip
    result = subprocess.run(command, env=environment, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    results = json.loads((out / "results.json").read_text())
    assert list(results["conditions"]) == ["probe_audio", "probe_text", "probe_both"]
    assert results["against_probe"] is None  # no MER to compare
    for name in ("session1", "session2"):
        probe = json.loads((out / name / "probe.json").read_text())
        assert not (out / name / "model").exists() and not (out / name / "metrics.json").exists()
        counts = synthetic_corpus.raw_label_counts(int(name[-1]))
        size = sum(counts[code] for code in ("neu", "hap", "exc", "ang", "sad"))  # the 4 classes
        assert probe["probe_audio"]["num_examples"] == size
        assert probe["probe_settings"]["probe_audio"]["C"] in PROBE_C_GRID
        assert results["folds"][name]["probe_both"]["ua"] == probe["probe_both"]["ua"]
    assert not (out / "README.md").exists()  # no model, no model card
    assert "linear probe: frozen speech features | mean ± std over folds" in results["table"]
    assert "Fine-tuning" not in result.stderr


def test_the_test_fold_cannot_change_the_probes_choice():
    """The regularisation is chosen on validation speakers only: another test fold (other labels, other features)
    leaves every condition's C and validation UA as they were, and changes only the test scores."""
    split, corpus = fold([label for label in range(4) for _ in range(30)])
    other_test = datasets.Dataset.from_dict(
        {"label": [3 - label for label in split.test["label"]], "text": ["x"] * 40}
    )
    first = probe_fold(LabelFeatures(True, seed=1), split, corpus)
    second = probe_fold(LabelFeatures(True, seed=1), replace(split, test=other_test), corpus)
    for name in first:
        assert (first[name]["C"], first[name]["validation_ua"]) == (second[name]["C"], second[name]["validation_ua"])
    assert [r["label"] for r in first["probe_audio"]["rows"]] != [r["label"] for r in second["probe_audio"]["rows"]]
