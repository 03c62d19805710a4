"""The TESS builder on tiny trees in the layouts TESS is distributed in (the flat Dataverse files, the Kaggle folders
once or twice nested), with the release's naming faults: what it yields, what its check reports, what it refuses."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf

import dataset_scripts.tess.tess as tess_module
from dataset_scripts.labels import CORPUS_LABELS
from dataset_scripts.release import corpus_command
from dataset_scripts.tess import EMOTIONS, load_tess, scan_tess

WORDS = ("back", "bite", "youth")
KAGGLE_ROOT = "TESS Toronto emotional speech set data"
# The folders of the Kaggle / TSpace copy, with their inconsistent spellings.
KAGGLE_FOLDERS = {
    ("OAF", "angry"): "OAF_angry", ("OAF", "disgust"): "OAF_disgust", ("OAF", "fear"): "OAF_Fear",
    ("OAF", "happy"): "OAF_happy", ("OAF", "neutral"): "OAF_neutral", ("OAF", "ps"): "OAF_Pleasant_surprise",
    ("OAF", "sad"): "OAF_Sad", ("YAF", "angry"): "YAF_angry", ("YAF", "disgust"): "YAF_disgust",
    ("YAF", "fear"): "YAF_fear", ("YAF", "happy"): "YAF_happy", ("YAF", "neutral"): "YAF_neutral",
    ("YAF", "ps"): "YAF_pleasant_surprised", ("YAF", "sad"): "YAF_sad",
}  # fmt: skip
ALL_IDS = sorted(f"{s}_{w}_{e}" for s in ("OAF", "YAF") for w in WORDS for e in EMOTIONS)


def _tone(seed: int) -> np.ndarray:
    """0.3 s at 16 kHz: a sine whose pitch depends on `seed`, so that two files differ in content."""
    t = np.arange(4800) / 16000
    return (0.3 * np.sin(2 * np.pi * (200 + 10 * seed) * t)).astype(np.float32)


def _write(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, _tone(seed), 16000)
    return path


def _kaggle_tree(root: Path) -> Path:
    """The Kaggle copy in miniature: three words, the folder spellings, and OA_bite_neutral.wav for OAF's bite."""
    for (speaker, emotion), folder in KAGGLE_FOLDERS.items():
        for seed, word in enumerate(WORDS):
            stem = f"{speaker}_{word}_{emotion}"
            if stem == "OAF_bite_neutral":
                stem = "OA_bite_neutral"
            _write(root / KAGGLE_ROOT / folder / f"{stem}.wav", seed)
    return root


def _flat_tree(root: Path) -> Path:
    """The Dataverse download in miniature: every file in one folder."""
    for seed, uid in enumerate(ALL_IDS):
        _write(root / f"{uid}.wav", seed)
    return root


@pytest.fixture
def three_words(monkeypatch):
    """Documents the three-word release of these tests (3 words per speaker and emotion, 42 files)."""
    monkeypatch.setattr(tess_module, "DOCUMENTED_WORDS", 3)
    monkeypatch.setattr(tess_module, "DOCUMENTED_PER_CELL", 3)
    monkeypatch.setattr(tess_module, "DOCUMENTED_FILES", 42)


def test_kaggle_layout_yields_every_column_and_reads_oa_as_oaf(tmp_path):
    root = _kaggle_tree(tmp_path / "tess")
    dataset = load_tess(root, cache_dir=tmp_path / "cache")
    assert sorted(dataset) == ["fold1", "fold2"]
    assert dataset["fold1"].features["label"].names == list(CORPUS_LABELS["tess"])
    rows = {split: ds.remove_columns("audio").to_list() for split, ds in dataset.items()}
    assert sorted(row["id"] for split in rows.values() for row in split) == ALL_IDS
    for split, fold, speaker, age in (("fold1", 1, "OAF", 64), ("fold2", 2, "YAF", 26)):
        assert len(rows[split]) == 21
        assert {(r["speaker"], r["gender"], r["age"], r["fold"]) for r in rows[split]} == {(speaker, "F", age, fold)}
    names = dataset["fold1"].features["label"].names
    bite = next(r for r in rows["fold1"] if r["id"] == "OAF_bite_neutral")
    assert (bite["text"], bite["word"], names[bite["label"]]) == ("Say the word bite", "bite", "neutral")
    surprise = next(r for r in rows["fold2"] if r["id"] == "YAF_youth_ps")
    assert (surprise["text"], names[surprise["label"]]) == ("Say the word youth", "ps")
    assert {names[r["label"]] for r in rows["fold2"]} == set(EMOTIONS)
    audio = dataset["fold1"][0]["audio"].get_all_samples()
    assert audio.sample_rate == 16000 and audio.data.shape[1] == 4800


def test_check_reports_the_normalised_names_and_the_counts_against_200(tmp_path):
    check = scan_tess(_kaggle_tree(tmp_path / "tess")).check
    assert (check.documented, check.found, check.missing, check.extra) == (2800, 42, [], [])
    assert not check.complete
    text = str(check)
    assert "1 file name(s) spelt unlike the others, normalised: OA_bite_neutral (read as OAF_bite_neutral)" in text
    assert "OAF angry: 3 files, 200 documented" in text and "YAF ps: 3 files, 200 documented" in text
    assert "OAF says 3 words in most emotions, 200 documented" in text
    assert "folder of another" not in text  # every file is in its own speaker's and emotion's folder


def test_flat_dataverse_layout_with_a_flac_file_is_complete(tmp_path, three_words):
    root = _flat_tree(tmp_path / "dataverse_files")
    wav = root / "YAF_youth_sad.wav"
    data, rate = sf.read(wav, dtype="float32")
    sf.write(wav.with_suffix(".flac"), data, rate)
    wav.unlink()
    scan = scan_tess(root)
    assert scan.check.complete and scan.check.notes == [] and scan.problems == []
    dataset = load_tess(root, cache_dir=tmp_path / "cache")
    row = next(r for r in dataset["fold2"] if r["id"] == "YAF_youth_sad")
    assert row["audio"].get_all_samples().sample_rate == 16000
    assert (row["text"], row["speaker"], row["fold"]) == ("Say the word youth", "YAF", 2)


def test_doubly_nested_identical_copy_is_noted_and_read_once(tmp_path, three_words):
    root = _kaggle_tree(tmp_path / "tess")
    shutil.copytree(root / KAGGLE_ROOT, root / KAGGLE_ROOT / KAGGLE_ROOT)
    scan = scan_tess(root)
    assert scan.problems == [] and scan.check.found == 42
    assert f"42 byte-identical second copy(ies) of a file (e.g. a doubly nested folder), not read: {KAGGLE_ROOT}/" in (
        str(scan.check)
    )
    kept = [example["audio"] for examples in scan.splits.values() for example in examples]
    assert all(KAGGLE_ROOT + "/" + KAGGLE_ROOT not in path for path in kept)  # the outer copy is the one read
    assert sum(len(ds) for ds in load_tess(root, cache_dir=tmp_path / "cache").values()) == 42


def test_same_name_with_other_content_is_a_problem_naming_both(tmp_path, caplog):
    root = _flat_tree(tmp_path / "tess")
    other = _write(root / "again" / "YAF_back_Angry.wav", seed=99)  # another case, other audio
    with pytest.raises(ValueError) as error:
        load_tess(root, cache_dir=tmp_path / "cache")
    assert f"{other}: YAF_back_angry is here twice with different content: also {root / 'YAF_back_angry.wav'}" in (
        str(error.value)
    )
    with caplog.at_level(logging.WARNING, logger="dataset_scripts.release"):
        dataset = load_tess(root, skip_invalid=True, cache_dir=tmp_path / "cache")
    assert len(dataset["fold2"]) == 21 and "skipped 1 utterance(s)" in caplog.text


def test_missing_files_are_named_and_odd_names_reported(tmp_path, three_words):
    root = _flat_tree(tmp_path / "tess")
    (root / "OAF_back_angry.wav").unlink()
    (root / "YAF_youth_sad.wav").rename(root / "YAF_youht_sad.wav")  # a misspelt word
    (root / "YAF_back_fear.wav").rename(root / "YAF_back_Fear.wav")  # the emotion in another case
    _write(root / "YAF_happy" / "YAF_bite_sad.wav")  # filed under another emotion: the name decides
    (root / "YAF_bite_sad.wav").unlink()
    _write(root / "readme.wav")
    _write(root / "OAF_back_angry_take2.wav")
    check = scan_tess(root).check
    assert (check.documented, check.found) == (42, 41)
    assert check.missing == ["OAF_back_angry", "YAF_youth_sad"]
    text = str(check)
    assert "2 missing: OAF_back_angry, YAF_youth_sad" in text
    assert "OAF angry: 2 files, 3 documented; lacks back (said in OAF's other emotions)" in text
    assert "YAF sad: 3 files" not in text  # youht stands in for youth: the count is right, the word is not
    assert "1 YAF word(s) said in fewer than 4 emotions: YAF_youht_sad" in text
    assert "YAF_back_Fear (read as YAF_back_fear)" in text
    misfiled = "1 file(s) in a folder of another speaker or emotion, labelled by the file name: "
    assert misfiled + "YAF_happy/YAF_bite_sad.wav" in text
    assert "2 audio file(s) not named like TESS files, not read: OAF_back_angry_take2.wav, readme.wav" in text
    assert not check.complete


def test_emotions_missing_altogether_are_named_from_the_emotions_that_are_there(tmp_path, three_words):
    root = _flat_tree(tmp_path / "tess")
    for path in root.glob("YAF_*"):
        if path.stem.rsplit("_", 1)[1] not in ("neutral", "happy", "sad"):
            path.unlink()
    check = scan_tess(root).check
    assert check.found == 30
    assert check.missing == sorted(f"YAF_{w}_{e}" for w in WORDS for e in ("angry", "disgust", "fear", "ps"))
    assert "YAF ps: 0 files, 3 documented; lacks back, bite, youth (said in YAF's other emotions)" in str(check)
    assert "said in fewer than" not in str(check)  # the three emotions she has agree on her words


def test_unreadable_audio_is_listed_by_path_and_can_be_skipped(tmp_path, caplog):
    root = _kaggle_tree(tmp_path / "tess")
    broken = root / KAGGLE_ROOT / "YAF_sad" / "YAF_bite_sad.wav"
    broken.write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(ValueError) as error:
        load_tess(root, cache_dir=tmp_path / "cache")
    message = str(error.value)
    assert "1 problem(s) in TESS corpus" in message and f"{broken}: unreadable audio" in message
    with caplog.at_level(logging.WARNING, logger="dataset_scripts.release"):
        dataset = load_tess(root, skip_invalid=True, cache_dir=tmp_path / "cache")
    assert "YAF_bite_sad" not in dataset["fold2"]["id"] and len(dataset["fold2"]) == 20
    assert len(dataset["fold1"]) == 21 and str(broken) in caplog.text


def test_a_directory_that_is_not_tess_names_what_was_expected_and_found(tmp_path):
    _write(tmp_path / "ravdess" / "Actor_01" / "03-01-01-01-01-01-01.wav")
    expected = r"is not a TESS release: expected .*OAF_back_angry\.wav.*found: .*03-01-01-01-01-01-01"
    with pytest.raises(ValueError, match=expected):
        load_tess(tmp_path / "ravdess", cache_dir=tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match=r"TESS data_dir .*nowhere does not exist.*<speaker>_<word>_<emotion>"):
        load_tess(tmp_path / "nowhere", cache_dir=tmp_path / "cache")


def test_check_command_prints_the_check(tmp_path, capsys):
    root = _flat_tree(tmp_path / "tess")
    (root / "OAF_bite_ps.wav").unlink()
    with pytest.raises(SystemExit, match="differs from the release"):
        corpus_command(["tess", "--data_dir", str(root), "--check"])
    out = capsys.readouterr().out
    assert out.startswith("TESS: 41 utterances found, 2800 documented; 1 missing: OAF_bite_ps")


def test_parquet_export_reads_back_without_the_corpus(tmp_path):
    root = _kaggle_tree(tmp_path / "tess")
    out = tmp_path / "parquet"
    corpus_command(
        ["tess", "--data_dir", str(root), "--out", str(out), "--cache_dir", str(tmp_path / "cache")],
    )
    shutil.rmtree(root)
    shutil.rmtree(tmp_path / "cache")  # the Arrow cache, whose audio pointed into the corpus
    files = {p.stem: str(p) for p in sorted(out.glob("*.parquet"))}
    assert list(files) == ["fold1", "fold2"]
    dataset = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "reread"))
    assert {split: len(ds) for split, ds in dataset.items()} == {"fold1": 21, "fold2": 21}
    assert dataset["fold2"].features["label"].names == list(CORPUS_LABELS["tess"])
    row = next(r for r in dataset["fold1"] if r["id"] == "OAF_bite_neutral")
    assert (row["text"], row["age"], row["fold"]) == ("Say the word bite", 64, 1)
    samples = row["audio"].get_all_samples()
    assert samples.sample_rate == 16000 and samples.data.shape[1] == 4800


def test_tess_alone_trains_with_the_readme_defaults_validating_on_each_speakers_utterances(tmp_path, three_words):
    from mer.training.arguments import Arguments
    from mer.training.protocol import describe_protocol, load_corpus, plan_folds

    args = Arguments(corpus=[f"tess={_flat_tree(tmp_path / 'tess')}"])
    corpus = load_corpus(args)
    plan = plan_folds(corpus, args)  # speaker validation, the default: TESS's one training speaker cannot be held out
    assert [split.validated_by_utterance for split in plan] == [["tess"], ["tess"]]
    for split in plan:
        assert set(split.train["speaker"]) == set(split.validation["speaker"]) != set(split.test["speaker"])
    line = describe_protocol(args, corpus, plan)
    assert "(TESS: too few training speakers to hold one out, so 10% of each training speaker's utterances" in line
