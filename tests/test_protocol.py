"""The evaluation protocol: which folds run, how validation is held out, and the speaker checks, on the synthetic
IEMOCAP-layout corpus (5 sessions, one female and one male speaker each) and on `--dataset` corpora of one's own."""

from __future__ import annotations

from dataclasses import replace

import datasets
import pytest

from mer.training.arguments import Arguments
from mer.training.folds import select_folds
from mer.training.protocol import describe_protocol, load_corpus, plan_folds, split_fold


@pytest.fixture(scope="module")
def corpus(synthetic_corpus):
    return load_corpus(Arguments(data_dir=str(synthetic_corpus.path)))


def speakers(dataset) -> set[str]:
    return set(dataset["speaker"])


def test_speaker_validation_holds_out_whole_training_speakers(corpus):
    for fold in corpus.fold_names:
        split = split_fold(corpus, fold, "speaker", 0.1, seed=42)
        held = speakers(split.validation)
        assert held == set(split.validation_speakers) and len(held) == 1
        assert not held & speakers(split.train) and not held & speakers(split.test)
        assert not speakers(split.train) & speakers(split.test)
        share = len(split.validation) / (len(split.train) + len(split.validation))
        assert 0.10 <= share <= 0.16, (fold, share)
        assert len(split.train) + len(split.validation) + len(split.test) == sum(map(len, corpus.folds.values()))
    again = split_fold(corpus, "session1", "speaker", 0.1, seed=42)
    assert again.validation_speakers == split_fold(corpus, "session1", "speaker", 0.1, seed=42).validation_speakers


def test_utterance_validation_takes_a_share_of_every_training_speaker(corpus):
    split = split_fold(corpus, "session2", "utterance", 0.1, seed=42)
    assert speakers(split.validation) == speakers(split.train) and len(speakers(split.train)) == 8
    assert split.validation_speakers is None


def test_the_plan_records_the_protocol_and_checks_every_fold_before_training(corpus):
    args = Arguments(data_dir="unused", folds=["2", "session4"], final_fit=True)
    plan = plan_folds(corpus, args)
    assert [split.name for split in plan] == ["session2", "session4", "final"]
    assert plan[-1].test is None and plan[-1].validation_speakers


def folds_dataset(synthetic_iemocap, fold_of_row) -> datasets.Dataset:
    """The synthetic corpus as one table whose `fold` column is `fold_of_row(row, speaker)`."""
    table = datasets.concatenate_datasets(list(synthetic_iemocap.values()))
    return table.add_column("fold", [fold_of_row(row, speaker) for row, speaker in enumerate(table["speaker"])])


def test_a_speaker_in_the_test_fold_and_in_training_is_named(synthetic_iemocap, tmp_path):
    folds_dataset(synthetic_iemocap, lambda row, speaker: f"part{row % 3}").to_parquet(tmp_path / "mixed.parquet")
    args = Arguments(dataset=str(tmp_path / "mixed.parquet"), fold_column="fold")
    corpus = load_corpus(args)
    with pytest.raises(ValueError, match=r"Fold part0: speaker\(s\) \['Ses01_F', .*in both the test fold and the "):
        plan_folds(corpus, args)


def test_too_few_speakers_to_hold_one_out_suggests_utterance_validation(synthetic_iemocap, tmp_path):
    one_speaker_per_fold = folds_dataset(synthetic_iemocap, lambda row, speaker: speaker)
    two = one_speaker_per_fold.filter(lambda fold: fold in ("Ses01_F", "Ses01_M"), input_columns="fold")
    two.to_parquet(tmp_path / "two.parquet")
    args = Arguments(dataset=str(tmp_path / "two.parquet"), fold_column="fold")
    with pytest.raises(ValueError, match=r"1 speaker\(s\), too few .* Pass --validation_strategy utterance"):
        plan_folds(load_corpus(args), args)
    args.validation_strategy = "utterance"
    assert [split.name for split in plan_folds(load_corpus(args), args)] == ["Ses01_F", "Ses01_M"]


def test_speaker_validation_needs_a_speaker_column(synthetic_iemocap, tmp_path):
    synthetic_iemocap.remove_columns(["speaker"]).save_to_disk(tmp_path / "saved")
    with pytest.raises(ValueError, match=r"no speaker column 'speaker'.*--speaker_column.*utterance"):
        load_corpus(Arguments(dataset=str(tmp_path / "saved")))
    corpus = load_corpus(Arguments(dataset=str(tmp_path / "saved"), validation_strategy="utterance"))
    assert corpus.fold_names == [f"session{k}" for k in range(1, 6)] and corpus.speaker_column is None


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        (None, ["session1", "session2", "session3"]),
        (["3", "1"], ["session1", "session3"]),
        (["session2", "1"], ["session1", "session2"]),
    ],
)
def test_folds_are_chosen_by_name_or_number(requested, expected):
    assert select_folds(requested, ["session1", "session2", "session3"]) == expected


def test_a_fold_or_seed_given_twice_is_refused():
    with pytest.raises(ValueError, match="--folds: session2 and 2 are the same fold, session2"):
        select_folds(["session2", "2"], ["session1", "session2", "session3"])
    with pytest.raises(ValueError, match=r"--folds 1 3 1: 1 given twice"):
        Arguments(data_dir="unused", folds=["1", "3", "1"]).check()
    with pytest.raises(ValueError, match=r"--seeds 1 2 1: 1 given twice"):
        Arguments(data_dir="unused", seeds=[1, 2, 1]).check()
    assert Arguments(data_dir="unused", seeds=[3, 1]).seed_list == [3, 1]
    assert Arguments(data_dir="unused", seed=7).seed_list == [7]


def test_the_protocol_line_states_folds_classes_validation_transcripts_and_how_scores_combine(corpus):
    args = Arguments(data_dir="unused", folds=["1"], seeds=[1, 2], transcripts="both", asr_model="tiny.en")
    line = describe_protocol(args, corpus, plan_folds(corpus, replace(args, seed=1)))
    sizes = "/".join(str(len(corpus.folds[fold])) for fold in corpus.fold_names)
    assert f"Leave-one-fold-out over 5 folds (136 utterances, test sizes {sizes}; tested: session1)" in line
    assert "4 classes (neutral, happy, angry, sad; exc merged into happy)" in line
    assert "validation on whole training speakers held out from training (in each seed's order" in line
    assert "trained on gold transcripts, tested on gold and on speech recognition's (tiny.en) transcripts" in line
    assert "WA = accuracy, UA = mean per-class recall, micro-F1 and macro-F1" in line
    assert "averaged (mean ± std over folds) and pooled" in line and "2 seeds (1, 2)" in line
    assert "EmoBox" not in line  # the synthetic corpus does not have IEMOCAP's folds


def test_emobox_iemocap_folds_are_recognised_by_their_sizes(tmp_path):
    sizes = {"session1": 1085, "session2": 1023, "session3": 1151, "session4": 1031, "session5": 1241}
    rows = [(fold, row) for fold, size in sizes.items() for row in range(size)]
    table = datasets.Dataset.from_dict(
        {
            "session": [int(fold[-1]) for fold, _ in rows],
            "audio": [f"{row}.wav" for _, row in rows],
            "text": ["words"] * len(rows),
            "label": ["neutral", "happy", "angry", "sad"] * (len(rows) // 4) + ["sad"] * (len(rows) % 4),
            "speaker": [f"{fold}_{row % 2}" for fold, row in rows],
        }
    )
    table.to_parquet(tmp_path / "iemocap.parquet")
    args = Arguments(dataset=str(tmp_path / "iemocap.parquet"))
    corpus = load_corpus(args)
    assert corpus.emobox_name == "iemocap"
    line = describe_protocol(args, corpus, plan_folds(corpus, args))
    assert line.startswith("EmoBox's IEMOCAP folds: leave-one-session-out over 5 sessions (5531 utterances, ")
    assert "test sizes 1085/1023/1151/1031/1241" in line
    # One utterance fewer, and they are not EmoBox's folds.
    corpus = load_corpus(replace(args, dataset=str(_without_first_row(table, tmp_path))))
    assert corpus.emobox_name is None


def _without_first_row(table: datasets.Dataset, directory) -> str:
    path = directory / "fewer.parquet"
    table.select(range(1, len(table))).to_parquet(path)
    return str(path)


def test_a_fold_that_does_not_exist_lists_those_that_do():
    with pytest.raises(ValueError, match=r"--folds \['test', '4'\]: no such fold. The folds are: 1 = a, 2 = b, 3 = c"):
        select_folds(["test", "4", "b"], ["a", "b", "c"])


def test_the_pushed_fold_must_exist(corpus):
    args = Arguments(data_dir="unused", push_to_hub=True, hub_model_id="a/b", push_fold="session9")
    with pytest.raises(ValueError, match="--push_fold 'session9' is not a fold"):
        plan_folds(corpus, args)


def test_datasets_come_as_parquet_files_folders_or_save_to_disk(synthetic_iemocap, tmp_path):
    table = folds_dataset(synthetic_iemocap, lambda row, speaker: speaker[:5])
    table.to_parquet(tmp_path / "one.parquet")
    (tmp_path / "folder").mkdir()
    for session, split in synthetic_iemocap.items():
        split.to_parquet(tmp_path / "folder" / f"{session}.parquet")
    synthetic_iemocap.save_to_disk(tmp_path / "saved")
    expected = {f"session{k}": len(synthetic_iemocap[f"session{k}"]) for k in range(1, 6)}

    from_file = load_corpus(Arguments(dataset=str(tmp_path / "one.parquet"), fold_column="fold"))
    assert {name: len(fold) for name, fold in from_file.folds.items()} == {
        f"Ses0{k}": n for k, n in zip(range(1, 6), expected.values(), strict=True)
    }
    for source in ("folder", "saved"):
        corpus = load_corpus(Arguments(dataset=str(tmp_path / source)))
        assert {name: len(fold) for name, fold in corpus.folds.items()} == expected, source


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("missing.parquet", "no such file or folder"),
        ("./nowhere", "no such file or folder"),
        ("notes.txt", r"a file must be Parquet \(.parquet\), got .txt"),
        ("empty", "the folder holds no Parquet files and is not a save_to_disk folder"),
    ],
)
def test_a_dataset_that_cannot_be_read_is_named(tmp_path, monkeypatch, source, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("not a table")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=f"--dataset {source}: {message}"):
        load_corpus(Arguments(dataset=source))


def test_dataset_without_the_required_columns_is_refused(synthetic_iemocap, tmp_path):
    for split, dataset in synthetic_iemocap.items():
        dataset.remove_columns(["text"]).to_parquet(tmp_path / f"{split}.parquet")
    with pytest.raises(ValueError, match=r"lacks the columns \['text'\]"):
        load_corpus(Arguments(dataset=str(tmp_path)))


def test_a_single_table_without_the_fold_column_names_the_flag(synthetic_iemocap, tmp_path):
    synthetic_iemocap["session1"].to_parquet(tmp_path / "one.parquet")
    with pytest.raises(ValueError, match=r"has 1 fold\(s\).*--fold_column \(now 'session'\)"):
        load_corpus(Arguments(dataset=str(tmp_path / "one.parquet")))


def test_label_set_that_disagrees_with_the_config_is_refused(corpus):
    from mer.training.arguments import parse_config_overrides

    assert corpus.label_names == ["neutral", "happy", "angry", "sad"]
    overrides = parse_config_overrides('id2label={"0": "calm", "1": "excited"}')
    with pytest.raises(ValueError, match="does not match the dataset's classes"):
        corpus.check_labels(overrides)
