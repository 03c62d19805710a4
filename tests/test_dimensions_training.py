"""Dimensions of emotion in training: the corpus's ratings brought to [0, 1] or refused with the reason, missing
ratings left out and counted, the scores per dimension and pooled over folds, the epoch chosen by UA and CCC
together, (train.py end to end: tests/test_train.py)."""

from __future__ import annotations

import json
import math

import datasets
import numpy as np
import pytest
import torch
from dimension_reference import reference_ccc

from mer.training.arguments import Arguments
from mer.training.data import MERCollator, UtteranceDataset
from mer.training.dimensions import (
    count_missing,
    parse_dimensions,
    pool_dimension_scores,
    score_dimensions,
    selection_score,
    with_dimensions,
)
from mer.training.protocol import describe_protocol, load_corpus, plan_folds
from mer.training.run_dir import FoldState


def iemocap_unit(rating: float) -> float:
    """IEMOCAP's 1-5 onto [0, 1], clipped."""
    return min(1.0, max(0.0, (rating - 1) / 4))


def test_iemocap_layout_ratings_are_mapped_and_named_in_the_protocol(synthetic_corpus):
    args = Arguments(data_dir=str(synthetic_corpus.path), dimensions="arousal,valence")
    corpus = load_corpus(args)
    assert corpus.dimensions == ["arousal", "valence"]
    rated = {u.id: u for u in synthetic_corpus.utterances}
    rows = [row for fold in corpus.folds.values() for row in fold.select_columns(["id", "arousal", "valence"])]
    for row in rows:
        assert row["arousal"] == pytest.approx(iemocap_unit(rated[row["id"]].arousal))
        assert 0.0 <= row["valence"] <= 1.0
    assert any(rated[row["id"]].valence == 5.5 and row["valence"] == 1.0 for row in rows)  # clipped, kept
    protocol = describe_protocol(args, corpus, plan_folds(corpus, args))
    assert "dimensions arousal, valence on [0, 1]" in protocol
    assert "the mean of validation UA and the mean CCC of arousal, valence chooses the epoch" in protocol


def ratings_dataset(synthetic_iemocap, tmp_path, arousal) -> str:
    """The synthetic corpus as one Parquet table whose only ratings are an `arousal` column of `arousal(row)`."""
    table = datasets.concatenate_datasets(list(synthetic_iemocap.values()))
    table = table.remove_columns(["arousal", "valence", "dominance"])
    table = table.add_column("arousal", [arousal(row) for row in range(len(table))])
    table.to_parquet(tmp_path / "rated.parquet")
    return str(tmp_path / "rated.parquet")


def test_a_dataset_with_missing_ratings_keeps_them_missing_and_counts_them(synthetic_iemocap, tmp_path):
    path = ratings_dataset(synthetic_iemocap, tmp_path, lambda row: None if row % 10 == 0 else 1 + row % 7)
    args = Arguments(dataset=path, dimensions="arousal", dimension_scale="1,7")
    corpus = load_corpus(args)
    values = [v for fold in corpus.folds.values() for v in fold["arousal"]]
    assert sum(math.isnan(v) for v in values) == len(range(0, len(values), 10))
    rated = [v for v in values if not math.isnan(v)]
    assert min(rated) == 0.0 and max(rated) == 1.0
    missing = count_missing(corpus.named_parts(), ["arousal"])["arousal"]
    protocol = describe_protocol(args, corpus, plan_folds(corpus, args))
    assert f"arousal: {missing} of {len(values)} utterances unrated, left out of the loss and scores" in protocol

    fold = next(iter(corpus.folds.values()))
    items = UtteranceDataset(fold, dimension_columns=["arousal"])
    batch = MERCollator(_Processor())([items[0], items[1]])
    assert batch["dimension_labels"].shape == (2, 1) and torch.isnan(batch["dimension_labels"][0, 0])


class _Processor:
    """Stands in for the MERProcessor: the collator's own work is under test, not the features."""

    sampling_rate = 16_000

    def __call__(self, audio, text, sampling_rate):
        return {"input_values": torch.zeros(len(audio), 1)}


def test_ratings_outside_the_scale_and_corpora_without_ratings_are_refused(synthetic_iemocap, tmp_path):
    path = ratings_dataset(synthetic_iemocap, tmp_path, lambda row: 3.0 if row in (4, 9) else 0.5)
    with pytest.raises(ValueError, match=r"2 arousal rating\(s\) outside its scale 0-1: Ses0.* \(3\), .*--dimension_"):
        load_corpus(Arguments(dataset=path, dimensions="arousal"))
    assert load_corpus(Arguments(dataset=path, dimensions="arousal", dimension_scale="0,5")).dimensions == ["arousal"]
    with pytest.raises(ValueError, match=r"--dimensions arousal,dominance: .* has no dominance; it has ratings of ar"):
        load_corpus(Arguments(dataset=path, dimensions="arousal,dominance", dimension_scale="0,5"))
    synthetic_iemocap.remove_columns(["arousal", "valence", "dominance"]).save_to_disk(tmp_path / "plain")
    with pytest.raises(ValueError, match=r"has no valence; it has no dimensional ratings \(classes only\)"):
        load_corpus(Arguments(dataset=str(tmp_path / "plain"), dimensions="valence"))


def test_flags_naming_what_is_not_a_dimension_or_a_scale_are_refused_before_loading():
    with pytest.raises(ValueError, match=r"happiness is not a dimension; they are \('arousal', 'valence', 'domin"):
        parse_dimensions("arousal,happiness")
    with pytest.raises(ValueError, match="names a dimension twice"):
        parse_dimensions("valence,valence")
    with pytest.raises(ValueError, match="--data_dir and --corpus know their corpus's scale"):
        Arguments(data_dir="x", dimensions="arousal", dimension_scale="1,5").check()
    with pytest.raises(ValueError, match="expected LOW,HIGH"):
        Arguments(dataset="x", dimensions="arousal", dimension_scale="high").check()
    with pytest.raises(ValueError, match=r"dimensions=\['valence'\] does not match --dimensions arousal"):
        with_dimensions({"dimensions": ["valence"]}, ["arousal"])
    assert with_dimensions({}, ["arousal"]) == {"dimensions": ["arousal"]} and with_dimensions({}, []) == {}


def test_scores_per_dimension_leave_unrated_out_and_pool_folds_exactly():
    rng = np.random.default_rng(0)
    folds = []
    for _ in range(3):
        rated = rng.uniform(0, 1, size=(20, 2))
        rated[::7, 1] = np.nan
        predicted = np.clip(rated + rng.normal(0, 0.2, size=rated.shape), 0, 1)
        predicted[:, 1] = np.nan_to_num(predicted[:, 1], nan=0.5)
        rows = [{"dimensions": p.tolist(), "dimension_labels": [None if np.isnan(v) else v for v in r]}
                for p, r in zip(predicted, rated, strict=True)]  # fmt: skip
        folds.append((predicted, rated, score_dimensions(rows, ["arousal", "valence"])))
    predicted, rated, first = folds[0]
    present = ~np.isnan(rated[:, 1])
    assert first["valence"]["num_missing"] == 3 and first["valence"]["num_examples"] == 17
    assert first["valence"]["ccc"] == pytest.approx(reference_ccc(predicted[present, 1], rated[present, 1]))
    assert first["arousal"]["mae"] == pytest.approx(np.abs(predicted[:, 0] - rated[:, 0]).mean())

    pooled = pool_dimension_scores([scores["valence"] for *_, scores in folds])
    every_p = np.concatenate([p[~np.isnan(r[:, 1]), 1] for p, r, _ in folds])
    every_r = np.concatenate([r[~np.isnan(r[:, 1]), 1] for _, r, _ in folds])
    assert pooled["ccc"] == pytest.approx(reference_ccc(every_p, every_r))
    assert pooled["pearson_r"] == pytest.approx(np.corrcoef(every_p, every_r)[0, 1])
    assert (pooled["num_examples"], pooled["num_missing"]) == (51, 9)


def test_the_epoch_is_chosen_by_ua_and_ccc_together_and_old_states_by_ua():
    scores = {"ua": 0.6, "dimensions": {"arousal": {"ccc": 0.4}, "valence": {"ccc": math.nan}}}
    assert selection_score(scores) == pytest.approx((0.6 + 0.2) / 2)
    assert selection_score(scores, classes=False) == pytest.approx(0.2)
    assert selection_score({"ua": 0.6}) == 0.6
    state = FoldState()
    assert state.record_epoch({"val_ua": 0.7, "val_score": 0.5})
    assert state.record_epoch({"val_ua": 0.6, "val_score": 0.55})  # lower UA, better together: chosen
    assert not state.record_epoch({"val_ua": 0.9, "val_score": 0.54})
    assert (state.best_epoch, state.best_ua, state.best_score) == (2, 0.6, 0.55)
    # A state saved before the score was recorded chose by UA: it goes on doing so.
    old = FoldState.from_json(json.dumps({"epoch": 1, "best_ua": 0.7, "best_epoch": 1, "epochs_without_gain": 0,
                                          "history": []}))  # fmt: skip
    assert not old.record_epoch({"val_ua": 0.65}) and old.record_epoch({"val_ua": 0.75})
