"""The RAVDESS and EmoDB builders on small trees in their release layouts (nested and flat, wav and other formats),
and on the real copies in ../shared/data where they are: what they yield, what their checks report, what they
refuse."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import datasets
import pytest
from release_fixtures import SHARED_DATA, write_clip, write_emodb, write_ravdess

from dataset_scripts.emodb import FOLDS as EMODB_FOLDS
from dataset_scripts.emodb import load_emodb, scan_emodb
from dataset_scripts.ravdess import FOLDS as RAVDESS_FOLDS
from dataset_scripts.ravdess import load_ravdess, scan_ravdess
from dataset_scripts.release import corpus_command, problem_kind

REPO = Path(__file__).resolve().parents[1]


def test_ravdess_yields_labels_speakers_text_and_actor_folds(tmp_path):
    root = write_ravdess(tmp_path / "RAVDESS", emotions=("01", "05"), statements=("01", "02"))
    write_clip(root / "Actor_07" / "03-01-05-02-02-02-07.flac", rate=48_000)  # strong, second repetition, flac
    dataset = load_ravdess(root, cache_dir=tmp_path / "cache")
    assert sorted(dataset) == [f"fold{n}" for n in RAVDESS_FOLDS]
    rows = {row["id"]: row for split in dataset.values() for row in split.remove_columns("audio")}
    assert len(rows) == 24 * 2 * 2 + 1
    row = rows["03-01-05-02-02-02-07"]
    label = dataset["fold1"].features["label"].int2str(row["label"])
    assert (label, row["text"], row["speaker"], row["gender"]) == (
        "angry",
        "Dogs are sitting by the door",
        "Actor_07",
        "M",
    )
    assert (row["intensity"], row["statement"], row["repetition"]) == ("strong", 2, 2)
    assert row["fold"] == next(fold for fold, actors in RAVDESS_FOLDS.items() if "07" in actors)
    assert rows["03-01-01-01-01-01-08"]["gender"] == "F"
    for fold, actors in RAVDESS_FOLDS.items():
        assert {s.removeprefix("Actor_") for s in dataset[f"fold{fold}"]["speaker"]} == set(actors)
    audio = dataset["fold1"][0]["audio"].get_all_samples()
    assert audio.sample_rate == 48_000  # decoded at the file's own rate; train.py resamples to the tower's


def test_ravdess_check_names_missing_and_extra_files_and_what_it_did_not_read(tmp_path):
    root = write_ravdess(tmp_path / "flat", emotions=("03",), flat=True)
    write_clip(root / "03-01-01-02-01-01-05.wav")  # neutral at strong intensity: not part of the release
    write_clip(root / "02-01-03-01-01-01-05.wav")  # video-only: another part of RAVDESS
    write_clip(root / "03-02-03-01-01-01-05.wav")  # song
    write_clip(root / "notes.wav")
    check = scan_ravdess(root).check
    assert (check.documented, check.found) == (1440, 25) and not check.complete
    assert check.extra == ["03-01-01-02-01-01-05"]
    assert "03-01-03-02-01-01-01" in check.missing and len(check.missing) == 1440 - 24
    assert "2 song or video file(s) of RAVDESS not read" in str(check)
    assert "1 audio file(s) not named like RAVDESS files, not read: notes.wav" in str(check)


def test_ravdess_lists_unreadable_audio_and_refuses_a_directory_that_is_not_ravdess(tmp_path):
    root = write_ravdess(tmp_path / "RAVDESS", emotions=("04",))
    (root / "Actor_02" / "03-01-04-01-01-01-02.wav").write_bytes(b"not audio")
    with pytest.raises(ValueError, match=r"(?s)1 problem\(s\) in RAVDESS corpus.*Actor_02/03-01-04-01-01-01-02.wav"):
        load_ravdess(root, cache_dir=tmp_path / "cache")
    kept = load_ravdess(root, skip_invalid=True, cache_dir=tmp_path / "cache")
    assert sum(map(len, kept.values())) == 23
    write_emodb(tmp_path / "emodb", emotions="N")
    with pytest.raises(ValueError, match=r"is not a RAVDESS release: expected the RAVDESS speech release"):
        scan_ravdess(tmp_path / "emodb")
    with pytest.raises(FileNotFoundError, match="RAVDESS data_dir .* does not exist"):
        scan_ravdess(tmp_path / "absent")


def test_emodb_yields_german_text_english_labels_and_speaker_folds(tmp_path):
    root = write_emodb(tmp_path / "download", emotions="WLEAFTN", per_cell=100)  # the whole release
    assert scan_emodb(root).check.complete
    dataset = load_emodb(root, cache_dir=tmp_path / "cache")
    assert sorted(dataset) == [f"fold{n}" for n in EMODB_FOLDS]
    features = dataset["fold1"].features
    assert features["label"].names == ["anger", "boredom", "disgust", "fear", "happiness", "sadness", "neutral"]
    rows = {row["id"]: row for split in dataset.values() for row in split.remove_columns("audio")}
    assert len(rows) == 535
    row = rows["16b10Tb"]
    assert features["label"].int2str(row["label"]) == "sadness"
    assert row["text"] == "Die wird auf dem Platz sein, wo wir sie immer hinlegen."
    assert (row["speaker"], row["gender"], row["age"], row["sentence"], row["version"]) == ("16", "F", 31, "b10", "b")
    for fold, speakers in EMODB_FOLDS.items():
        held = dataset[f"fold{fold}"]
        assert set(held["speaker"]) == set(speakers) and set(held["gender"]) == {"F", "M"}


def test_emodb_check_and_bad_names(tmp_path):
    root = write_emodb(tmp_path / "emodb", emotions="W")
    write_clip(root / "wav" / "17a01Wa.wav")  # no speaker 17 in EmoDB
    write_clip(root / "wav" / "nested" / "03a01Wz.ogg")  # a version the release does not have, as Ogg
    (root / "wav" / "03a01Wa.wav").rename(root / "wav" / "03a01Wa.flac")  # a release file in another format
    result = scan_emodb(root)
    assert result.check.found == 12 and result.check.documented == 535
    assert result.check.extra == ["03a01Wz", "17a01Wa"] and len(result.check.missing) == 535 - 10
    assert [p.message for p in result.problems] == [
        "speaker 17 is not one of EmoDB's ten (03, 08, 09, 10, 11, 12, 13, 14, 15, 16)"
    ]
    with pytest.raises(ValueError, match="is not an EmoDB release"):
        scan_emodb(write_ravdess(tmp_path / "ravdess", emotions=("01",)))


def test_parquet_export_round_trips(tmp_path):
    root = write_emodb(tmp_path / "emodb", emotions="NT")
    written = corpus_command(["emodb", "--data_dir", str(root), "--out", str(tmp_path / "pq"),
                                                          "--cache_dir", str(tmp_path / "cache")])  # fmt: skip
    shutil.rmtree(root)  # the Parquet files hold the audio themselves
    loaded = datasets.load_dataset("parquet", data_files={k: str(v) for k, v in written.items()})
    assert sum(map(len, loaded.values())) == 20
    assert loaded["fold1"].features["label"].names[-1] == "neutral"
    assert loaded["fold1"][0]["audio"].get_all_samples().sample_rate == 22_050
    # train.py --dataset reads the export's folds from its file names, with no --fold_column.
    from mer.training.arguments import Arguments
    from mer.training.protocol import load_corpus

    corpus = load_corpus(Arguments(dataset=str(tmp_path / "pq")))
    assert corpus.fold_names == [f"fold{n}" for n in EMODB_FOLDS]
    assert sum(len(corpus.test_set(name)) for name in corpus.fold_names) == 20


def test_check_command_fails_for_a_copy_that_is_not_the_release_with_a_line_per_kind(tmp_path):
    root = write_emodb(tmp_path / "emodb", emotions="N")
    (root / "wav" / "03a04Nc.wav").write_bytes(b"")  # a release name, empty
    (root / "wav" / "08a02Na.wav").write_bytes(b"RIFF and then nothing")
    command = [sys.executable, "-m", "dataset_scripts", "emodb", "--data_dir", str(root), "--check"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith("EmoDB: 12 utterances found, 535 documented; 523 missing: ")
    assert "  523 missing: 03a01Fa" in result.stdout
    assert "  1 empty: " in result.stdout and "03a04Nc.wav: empty file (0 bytes)" in result.stdout
    assert "  1 unreadable: " in result.stdout and "08a02Na.wav: unreadable audio (21 bytes): " in result.stdout
    assert ".cpp" not in result.stdout  # ffmpeg's reason, not torchcodec's source
    assert "differs from the release" in result.stderr and "Traceback" not in result.stderr
    whole = write_emodb(tmp_path / "whole", emotions="WLEAFTN", per_cell=100)
    result = subprocess.run([*command[:5], str(whole), "--check"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0 and "The copy matches the release." in result.stdout, result.stdout
    missing = subprocess.run([*command[:5], str(tmp_path / "absent"), "--check"], capture_output=True, text=True)
    assert (
        missing.returncode == 1
        and missing.stderr.startswith("error: EmoDB data_dir")
        and "Traceback" not in missing.stderr
    )


def test_the_check_is_stored_with_the_dataset_and_shown_on_every_load(tmp_path, caplog):
    root = write_ravdess(tmp_path / "RAVDESS", emotions=("04",))
    (root / "Actor_02" / "03-01-04-01-01-01-02.wav").write_bytes(b"not audio")
    for attempt in ("built", "cached"):
        caplog.clear()
        dataset = load_ravdess(root, skip_invalid=True, cache_dir=tmp_path / "cache")
        check = dataset.release_check
        assert (check.found, check.documented, len(check.missing)) == (24, 1440, 1416), attempt
        assert [problem_kind(problem) for problem in check.problems] == ["unreadable"], attempt
        (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "1440" in r.getMessage()]
        assert "RAVDESS speech: 24 utterances found, 1440 documented; 1416 missing" in warning, attempt
        assert "1 unreadable: " in warning, attempt


@pytest.mark.skipif(not (SHARED_DATA / "ravdess").is_dir(), reason="../shared/data/ravdess is not here")
def test_the_real_ravdess_copy_matches_the_release():
    result = scan_ravdess(SHARED_DATA / "ravdess")
    assert result.check.complete and not result.problems, (result.check, result.problems)
    rows = [row for split in result.splits.values() for row in split]
    assert len(rows) == 1440
    assert Counter(row["label"] for row in rows)["neutral"] == 96
    assert {row["speaker"] for row in rows} == {f"Actor_{n:02d}" for n in range(1, 25)}


@pytest.mark.skipif(not (SHARED_DATA / "emodb").is_dir(), reason="../shared/data/emodb is not here")
def test_the_real_emodb_copy_matches_the_release():
    result = scan_emodb(SHARED_DATA / "emodb")
    assert result.check.complete and not result.problems, result.check
    rows = [row for split in result.splits.values() for row in split]
    counts = Counter(row["label"] for row in rows)
    assert counts == {"anger": 127, "boredom": 81, "neutral": 79, "happiness": 71, "fear": 69, "sadness": 62,
                      "disgust": 46}  # fmt: skip
    assert [len(result.splits[f"fold{n}"]) for n in EMODB_FOLDS] == [107, 81, 116, 104, 127]
