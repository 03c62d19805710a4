"""What a run reports from its fold records: scores averaged over folds with the std over folds and over seeds kept
apart, scores pooled over every test utterance, the tables, and the model card's comparison with published results.
Made-up fold records with known confusion matrices, so every figure can be checked by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import evaluate
import numpy as np
import pytest
import torch
from dimension_reference import reference_ccc

from mer.training.arguments import Arguments
from mer.training.dimensions import score_dimensions
from mer.training.reporting import (
    PUBLISHED_RESULTS,
    evaluation_conditions,
    json_text,
    record_evaluation_in_config,
    summarise,
    write_model_card,
)

METRIC = Path(__file__).resolve().parents[1] / "metrics" / "emotion_recognition"
LABELS = ["neutral", "happy"]
ACCELERATOR = SimpleNamespace(num_processes=1, mixed_precision="no", device=torch.device("cpu"))


@pytest.fixture(scope="module")
def metric():
    return evaluate.load(str(METRIC))


def record(metric, confusion: list[list[int]], conditions) -> dict:
    """A fold record whose every condition scored `confusion`."""
    matrix = np.asarray(confusion)
    references, predictions = np.nonzero(matrix)
    counts = matrix[references, predictions]
    scores = metric.compute(
        predictions=np.repeat(predictions, counts), references=np.repeat(references, counts), num_labels=2
    )
    return {"validation_speakers": ["Ses01_F"], **{condition: scores for condition in conditions}}


def run_summary(metric, transcripts="gold", seeds=(1, 2), standard=False, asr=None):
    conditions = evaluation_conditions(transcripts, ablations=False)
    confusions = {  # seed -> fold -> confusion matrix
        1: {"session1": [[3, 1], [0, 4]], "session2": [[1, 1], [1, 1]]},
        2: {"session1": [[4, 0], [0, 4]], "session2": [[2, 0], [2, 0]]},
    }
    results = {seed: {fold: record(metric, c, conditions) for fold, c in confusions[seed].items()} for seed in seeds}
    corpus = SimpleNamespace(
        name="corpus X", label_names=LABELS, emobox_name="iemocap" if standard else None, parts={}
    )
    args = Arguments(data_dir="unused", seeds=list(seeds), transcripts=transcripts, ablations=False)
    return summarise(results, args, corpus, "the protocol", ACCELERATOR, metric, asr), args


def test_averages_keep_the_std_over_folds_and_over_seeds_apart(metric):
    summary, _ = run_summary(metric)
    wa = {(1, "session1"): 7 / 8, (1, "session2"): 2 / 4, (2, "session1"): 1.0, (2, "session2"): 2 / 4}
    averaged = summary["averaged"]["test_wa"]
    assert averaged["mean"] == pytest.approx(np.mean(list(wa.values())))
    per_fold = [np.mean([wa[1, fold], wa[2, fold]]) for fold in ("session1", "session2")]
    per_seed = [np.mean([wa[seed, "session1"], wa[seed, "session2"]]) for seed in (1, 2)]
    assert averaged["std_over_folds"] == pytest.approx(np.std(per_fold, ddof=1))
    assert averaged["std_over_seeds"] == pytest.approx(np.std(per_seed, ddof=1))
    assert summary["folds"]["session1"]["test"]["wa"] == pytest.approx(per_fold[0])
    assert summary["folds"]["session1"]["seeds"][2]["test"]["wa"] == 1.0


def test_pooled_scores_count_every_test_utterance_once(metric):
    summary, _ = run_summary(metric)
    # Seed 1 pooled: [[4, 2], [1, 5]] -> WA 9/12, UA (4/6 + 5/6) / 2; seed 2: [[6, 0], [2, 4]] -> 10/12, (1 + 4/6) / 2.
    pooled = summary["pooled"]
    assert pooled["test_wa"]["mean"] == pytest.approx(np.mean([9 / 12, 10 / 12]))
    assert pooled["test_ua"]["mean"] == pytest.approx(np.mean([(4 / 6 + 5 / 6) / 2, (1 + 4 / 6) / 2]))
    assert pooled["test_wa"]["std_over_seeds"] == pytest.approx(np.std([9 / 12, 10 / 12], ddof=1))
    assert pooled["test_micro_f1"]["mean"] == pooled["test_wa"]["mean"]
    # Pooling weighs folds by their size; averaging does not.
    assert pooled["test_wa"]["mean"] != pytest.approx(summary["averaged"]["test_wa"]["mean"])


def test_one_seed_has_no_std_over_seeds_and_keeps_each_folds_record(metric):
    summary, _ = run_summary(metric, seeds=(1,))
    assert summary["averaged"]["test_ua"]["std_over_seeds"] is None
    assert summary["pooled"]["test_ua"]["std_over_seeds"] is None
    assert summary["folds"]["session2"]["validation_speakers"] == ["Ses01_F"]
    assert "over 1 seeds" not in summary["table"] and "pooled |" in summary["table"]


def test_the_tables_give_each_condition_and_the_word_error_rate(metric):
    asr = {
        "model": "tiny.en",
        "word_error_rate": {"session1": 0.25, "session2": 0.5},
        "word_error_rate_all_folds": 0.4,
    }
    summary, _ = run_summary(metric, transcripts="both", asr=asr)
    table = summary["table"]
    assert "| fold | ASR WER | WA | UA | micro-F1 | macro-F1 | speech + ASR transcripts: WA / UA |" in table
    assert "| session1 | 25.0 | 93.75 |" in table  # WA of session1 averaged over the two seeds: (7/8 + 1) / 2
    for condition in ("speech + gold transcripts", "speech + ASR transcripts"):
        assert f"| {condition} | mean ± std over folds |" in table
    assert "| mean ± std over 2 seeds |" in table and "| pooled ± std over seeds |" in table


@pytest.mark.parametrize("standard", [True, False])
def test_the_model_card_sets_the_run_beside_published_results_with_their_protocols(metric, tmp_path, standard):
    asr = {
        "model": "tiny.en",
        "word_error_rate": {"session1": 0.2, "session2": 0.3},
        "word_error_rate_all_folds": 0.25,
    }
    summary, args = run_summary(metric, transcripts="both", standard=standard, asr=asr)
    write_model_card(tmp_path, summary, args)
    card = (tmp_path / "README.md").read_text()
    assert "## Compared with published results" in card
    ua = 100 * summary["averaged"]["test_asr_ua"]["mean"]
    assert "| MER, this run | ASR: tiny.en, WER 25.0% | " in card and "averaged over folds | " in card
    assert f"{ua:.2f} |" in card
    for published in PUBLISHED_RESULTS:
        assert f"| {published.system} | {published.transcripts} | {published.protocol} |" in card
    assert "| 78.42 | 79.71 |" in card and "| not reported | 73.80 |" in card
    assert ("This run used IEMOCAP's standard folds" in card) == standard
    assert ("not comparable with the published ones" in card) == (not standard)
    assert "Speech recognition: tiny.en (auto), word error rate 25.0% against the gold transcripts" in card
    assert "UA, speech + ASR transcripts (mean over folds)" in card  # model-index entries for both conditions


def test_dimensions_are_averaged_over_folds_pooled_from_every_utterance_and_given_per_corpus(metric):
    rng = np.random.default_rng(3)
    conditions = evaluation_conditions("gold", ablations=False)
    values = {}  # (seed, fold) -> (predictions, ratings) of arousal
    results = {}
    for seed in (1, 2):
        results[seed] = {}
        for fold, size in (("session1", 12), ("session2", 7)):
            rated = rng.uniform(0, 1, size)
            predicted = np.clip(rated + rng.normal(0, 0.25, size), 0, 1)
            values[seed, fold] = (predicted, rated)
            rows = [{"dimensions": [p], "dimension_labels": [r]} for p, r in zip(predicted, rated, strict=True)]
            fold_record = record(metric, [[3, 1], [0, 4]], conditions)
            fold_record["test"] = {**fold_record["test"], "dimensions": score_dimensions(rows, ["arousal"])}
            fold_record["corpora"] = {"iemocap": {"test": fold_record["test"]}}
            results[seed][fold] = fold_record
    corpus = SimpleNamespace(name="X", label_names=LABELS, emobox_name=None, parts={}, dimensions=["arousal"])
    args = Arguments(data_dir="unused", seeds=[1, 2], ablations=False)
    summary = summarise(results, args, corpus, "the protocol", ACCELERATOR, metric)

    dimensions = summary["dimensions"]
    averaged = dimensions["averaged"]["test_arousal_ccc"]
    assert averaged["mean"] == pytest.approx(np.mean([reference_ccc(*values[key]) for key in values]))
    pooled = []
    for seed in (1, 2):
        predicted, rated = (
            np.concatenate([values[seed, fold][i] for fold in ("session1", "session2")]) for i in (0, 1)
        )
        pooled.append(reference_ccc(predicted, rated))
    assert dimensions["pooled"]["test_arousal_ccc"]["mean"] == pytest.approx(np.mean(pooled))
    assert dimensions["pooled"]["test_arousal_ccc"]["std_over_seeds"] == pytest.approx(np.std(pooled, ddof=1))
    assert dimensions["unrated_test_utterances"]["test_arousal"] == 0
    assert summary["corpora"]["iemocap"]["dimensions"]["pooled"] == dimensions["pooled"]
    assert "| speech + gold transcripts | arousal |" in summary["table"]
    # The corpus's own row, under a table of its own.
    ccc = summary["corpora"]["iemocap"]["dimensions"]["averaged"]["test_arousal_ccc"]
    assert f"| iemocap | speech + gold transcripts | arousal | {ccc['mean']:.3f} ± " in summary["table"]


def test_a_score_that_is_not_a_number_is_written_as_null_for_every_json_reader(make_model, tmp_path):
    scores = {"ccc": math.nan, "pearson_r": math.inf, "mae": 0.25, "moments": [1.0, -math.inf], "ok": "x"}
    text = json_text({"test": {"dimensions": {"valence": scores}}})
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["test"]["dimensions"]["valence"] == {
        "ccc": None, "pearson_r": None, "mae": 0.25, "moments": [1.0, None], "ok": "x"
    }  # fmt: skip
    # The published model's config too: a dimension with one rating in the test fold scores null, not NaN.
    make_model(dimensions=["valence"]).save_pretrained(tmp_path)
    outcome = {"test": {"wa": 0.5, "ua": 0.5, "num_examples": 2, "dimensions": {"valence": {
        "ccc": math.nan, "pearson_r": math.nan, "mae": 0.1, "num_examples": 2}}}}  # fmt: skip
    record_evaluation_in_config(tmp_path, outcome, "fold1")
    text = (tmp_path / "config.json").read_text()
    assert "NaN" not in text and json.loads(text)["evaluation"]["test"]["dimensions"]["valence"]["ccc"] is None
