"""The MSP-Podcast builder on small trees in the release's own layout: the Split_Set form (1.11 on, with Test3 and
past-release information) and the older form whose split is in Partitions.txt, flat and nested, checked and
exported."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf

from dataset_scripts.labels import CORPUS_LABELS
from dataset_scripts.msp_podcast import load_msp_podcast, scan_msp_podcast
from dataset_scripts.msp_podcast.msp_podcast import RELEASE
from dataset_scripts.release import corpus_command
from mer.training.corpora import read_part

HEADER = "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"
# FileName, EmoClass, EmoAct, EmoVal, EmoDom, SpkrID, Gender, Split_Set: values as the release prints them
ROWS = [
    ("MSP-PODCAST_0001_0008.wav", "N", "2.2", "4.0", "2.6", "30", "Male", "Test1"),
    ("MSP-PODCAST_0001_0009.wav", "N", "3.777778", "3.555556", "3.777778", "39", "Male", "Test1"),
    ("MSP-PODCAST_0002_0001.wav", "H", "5.4", "6.2", "4.8", "127", "Female", "Train"),
    ("MSP-PODCAST_0002_0002.wav", "A", "6.0", "1.6", "5.8", "Unknown", "Unknown", "Train"),
    ("MSP-PODCAST_0003_0004.wav", "S", "2.0", "2.5", "3.0", "12", "Female", "Development"),
    ("MSP-PODCAST_0153_0001.wav", "X", "4.0", "4.0", "4.0", "1001", "Male", "Test2"),
]
TEST3 = "MSP-PODCAST_0201_0001"  # audio and partition line only: its labels are withheld
TRANSCRIPTS = {  # stem -> transcript as written (0002_0002 has none)
    "MSP-PODCAST_0001_0008": "Well, I think that's  right.\n",
    "MSP-PODCAST_0001_0009": "You know what I mean?\n",
    "MSP-PODCAST_0002_0001": "That was the best day\nof my life!",
    "MSP-PODCAST_0003_0004": "I miss him.",
    "MSP-PODCAST_0153_0001": "Okay.",
    TEST3: "withheld",
}
SPLIT_NAMES = {"Train": "train", "Development": "validation", "Test1": "test1", "Test2": "test2"}
README = "#  Multimodal Signal Processing (MSP) Laboratory # \n#              Release 1.12 (June 6, 2024)       #\n"


def _tone(seed: int) -> np.ndarray:
    t = np.arange(4800) / 16000  # 0.3 s at 16 kHz
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * (180 + 20 * seed) * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def _write_audio(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, _tone(seed), 16000, subtype="PCM_16" if path.suffix == ".wav" else None)


def _stem(file_name: str) -> str:
    return file_name.removesuffix(".wav")


def _make_release(root: Path, rows=ROWS, flac: str | None = None) -> Path:
    """The 1.11-on layout: Audios/, Labels/labels_consensus.csv (Split_Set), Partition.txt (with Test3),
    Transcripts/, readme.txt, and Previous_releases_information/ with an old label file and a dropped wav."""
    for seed, row in enumerate(rows):
        stem = _stem(row[0])
        _write_audio(root / "Audios" / f"{stem}{'.flac' if stem == flac else '.wav'}", seed)
    _write_audio(root / "Audios" / f"{TEST3}.wav", 99)
    labels = root / "Labels"
    labels.mkdir(parents=True)
    (labels / "labels_consensus.csv").write_text("\n".join([HEADER] + [",".join(row) for row in rows]) + "\n")
    (labels / "labels_detailed.csv").write_text("FileName,WorkerID,EmoClass\nMSP-PODCAST_0001_0008.wav,W1,Neutral\n")
    partition = [f"{row[7]}; {row[0]}" for row in rows] + [f"Test3; {TEST3}.wav"]
    (root / "Partition.txt").write_text("\n".join(partition) + "\n")
    for stem, text in TRANSCRIPTS.items():
        (root / "Transcripts").mkdir(exist_ok=True)
        (root / "Transcripts" / f"{stem}.txt").write_text(text)
    (root / "readme.txt").write_text(README)
    previous = root / "Previous_releases_information"
    (previous / "previous_releases_info").mkdir(parents=True)
    (previous / "previous_releases_info" / "labels_concensus.csv").write_text(HEADER + "\n")
    _write_audio(previous / "files_removed_from_prev_versions" / "MSP-PODCAST_0099_0001.wav", 7)
    return root


@pytest.fixture
def release(tmp_path) -> Path:
    return _make_release(tmp_path / "MSP-PODCAST-Publish-1.12")


def _rows_by_id(dataset: datasets.DatasetDict) -> dict[str, dict]:
    return {row["id"]: row for ds in dataset.remove_columns("audio").values() for row in ds}


def test_split_set_release_yields_every_labelled_segment_with_its_columns(release, tmp_path):
    dataset = load_msp_podcast(release, cache_dir=tmp_path / "cache")
    assert list(dataset) == ["train", "validation", "test1", "test2"]  # no test3: its labels are withheld
    assert {split: sorted(ds["id"]) for split, ds in dataset.items()} == {
        SPLIT_NAMES[split]: sorted(_stem(row[0]) for row in ROWS if row[7] == split) for split in SPLIT_NAMES
    }
    features = dataset["train"].features
    assert features["label"].names == list(CORPUS_LABELS["msp_podcast"]) == list("NHASFDUCOX")
    rows = _rows_by_id(dataset)
    for file_name, code, act, val, dom, speaker, gender, split in ROWS:
        row = rows[_stem(file_name)]
        assert features["label"].int2str(row["label"]) == code
        assert (row["arousal"], row["valence"], row["dominance"]) == (float(act), float(val), float(dom))
        assert row["speaker"] == speaker
        assert row["gender"] == {"Male": "M", "Female": "F", "Unknown": ""}[gender]
        assert row["split"] == SPLIT_NAMES[split]
    assert rows["MSP-PODCAST_0001_0009"]["arousal"] == 3.777778  # kept as printed, on the 1-7 scale
    assert rows["MSP-PODCAST_0001_0008"]["text"] == "Well, I think that's right."
    assert rows["MSP-PODCAST_0002_0001"]["text"] == "That was the best day of my life!"
    assert rows["MSP-PODCAST_0002_0002"]["text"] == ""  # no transcript file
    assert rows["MSP-PODCAST_0153_0001"]["podcast"] == "0153"
    samples = dataset["test2"][0]["audio"].get_all_samples()
    assert samples.sample_rate == 16000 and samples.data.shape[1] == 4800


def test_check_counts_splits_notes_withheld_test3_transcripts_and_past_releases(release):
    scan = scan_msp_podcast(release)
    check = scan.check
    assert not scan.problems
    assert (check.documented, check.found, check.missing, check.extra) == (6, 6, [], [])
    assert check.complete
    text = str(check)
    assert "MSP-Podcast 1.12: 6 utterances found, 6 documented" in text
    assert "lists 6 labelled segments: train 2, validation 1, test1 2, test2 1" in text
    assert "1 Test3 segment(s) whose labels are withheld, not read" in text
    assert "1 of 6 kept segments have no transcript" in text
    assert "1 audio file(s) under Previous_releases_information/ not read" in text
    assert "differs from readme.txt of release 1.12 (June 6, 2024): 7 audio files, documented 207,136" in text


def test_partitions_txt_form_without_split_set_reads_the_split_from_it(tmp_path):
    """Up to 1.8: labels_concensus.csv (so spelled), Validation for Development, split in Partitions.txt."""
    root = tmp_path / "MSP-PODCAST-Publish-1.8"
    rows = [row[:7] for row in ROWS]
    for seed, row in enumerate(rows):
        _write_audio(root / "Audios" / row[0], seed)
    (root / "Labels").mkdir()
    (root / "Labels" / "labels_concensus.csv").write_text(
        "\n".join([HEADER.rsplit(",", 1)[0]] + [",".join(row) for row in rows]) + "\n"
    )
    old_names = {"Development": "Validation"}
    lines = [f"{old_names.get(row[7], row[7])}; {row[0]}" for row in ROWS[1:]]  # the first is in no partition
    (root / "Partitions.txt").write_text("\n".join(lines + ["", "not a partition line"]) + "\n")

    with pytest.raises(ValueError, match=r"labels_concensus.csv:2: no split: the partition file does not list it"):
        load_msp_podcast(root, cache_dir=tmp_path / "cache")
    dataset = load_msp_podcast(root, skip_invalid=True, cache_dir=tmp_path / "cache")
    assert {split: sorted(ds["id"]) for split, ds in dataset.items()} == {
        "train": ["MSP-PODCAST_0002_0001", "MSP-PODCAST_0002_0002"],
        "validation": ["MSP-PODCAST_0003_0004"],
        "test1": ["MSP-PODCAST_0001_0009"],
        "test2": ["MSP-PODCAST_0153_0001"],
    }
    assert set(dataset["validation"]["text"]) == {""}
    text = str(scan_msp_podcast(root).check)
    assert "splits read from Partitions.txt (no Split_Set column)" in text
    assert "1 line(s) of Partitions.txt are not 'Split; file name', not read: lines 7" in text
    assert "5 of 5 kept segments have no transcript" in text
    assert "no readme.txt naming the release" in text


def test_flat_folder_and_a_flac_file_give_the_same_dataset(release, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for path in release.rglob("*"):
        if path.is_file() and "Previous_releases_information" not in path.parts:
            shutil.copy(path, flat / path.name)
    nested = tmp_path / "nested"
    _make_release(nested, flac="MSP-PODCAST_0003_0004")
    expected = _rows_by_id(load_msp_podcast(release, cache_dir=tmp_path / "cache"))
    for root in (flat, nested):
        dataset = load_msp_podcast(root, cache_dir=tmp_path / "cache")
        assert _rows_by_id(dataset) == expected
    flac = load_msp_podcast(nested, cache_dir=tmp_path / "cache")["validation"][0]["audio"]
    assert flac.metadata.path.endswith("MSP-PODCAST_0003_0004.flac")
    assert flac.get_all_samples().data.shape[1] == 4800


def test_missing_audio_is_a_problem_by_line_and_an_unlisted_file_is_extra(release, tmp_path, capsys):
    (release / "Audios" / "MSP-PODCAST_0002_0001.wav").unlink()
    _write_audio(release / "Audios" / "MSP-PODCAST_0500_0001.wav", 5)
    _write_audio(release / "Audios" / "notes.wav", 6)
    check = scan_msp_podcast(release).check
    assert (check.documented, check.found) == (6, 5)
    assert check.missing == ["MSP-PODCAST_0002_0001"] and check.extra == ["MSP-PODCAST_0500_0001"]
    assert "1 audio file(s) not named like MSP-Podcast files, not read: Audios/notes.wav" in str(check)

    with pytest.raises(SystemExit, match="differs from the release"):  # a copy that is not the release fails
        corpus_command(["msp_podcast", "--data_dir", str(release), "--check"])
    printed = capsys.readouterr().out
    assert "1 missing: MSP-PODCAST_0002_0001" in printed and "1 extra (not part of the release): " in printed
    assert f"{release / 'Labels' / 'labels_consensus.csv'}:4: no audio file for MSP-PODCAST_0002_0001" in printed

    with pytest.raises(ValueError, match=r"(?s)1 problem\(s\).*labels_consensus.csv:4: no audio file"):
        load_msp_podcast(release, cache_dir=tmp_path / "cache")
    dataset = load_msp_podcast(release, skip_invalid=True, cache_dir=tmp_path / "cache")
    assert dataset["train"]["id"] == ["MSP-PODCAST_0002_0002"]


def test_unreadable_audio_and_bad_values_are_all_listed_and_can_be_skipped(tmp_path, caplog):
    rows = list(ROWS)
    rows[1] = rows[1][:1] + ("Z",) + rows[1][2:]  # line 3: no such EmoClass
    rows[2] = rows[2][:2] + ("8.5",) + rows[2][3:]  # line 4: off the 1-7 scale
    rows[4] = rows[4][:6] + ("Other",) + rows[4][7:]  # line 6: gender
    rows[5] = rows[5][:7] + ("Test9",)  # line 7: split
    rows.append(rows[0])  # line 8: listed twice
    root = _make_release(tmp_path / "release", rows=rows)
    broken = root / "Audios" / "MSP-PODCAST_0002_0002.wav"
    broken.write_bytes(b"RIFF....WAVEjunk")
    labels = root / "Labels" / "labels_consensus.csv"

    with pytest.raises(ValueError) as error:
        load_msp_podcast(root, cache_dir=tmp_path / "cache")
    message = str(error.value)
    assert "6 problem(s)" in message
    assert f"{labels}:3: EmoClass 'Z' is not one of N, H, A, S, F, D, U, C, O, X" in message
    assert f"{labels}:4: EmoAct 8.5 is outside the rating scale 1-7" in message
    assert f"{labels}:6: Gender 'Other' is not Female, Male or Unknown" in message
    assert f"{labels}:7: Split_Set 'Test9' is not one of" in message
    assert f"{labels}:8: MSP-PODCAST_0001_0008 is listed twice in the label file" in message
    assert f"{broken}: unreadable audio" in message

    with caplog.at_level(logging.WARNING, logger="dataset_scripts.release"):
        dataset = load_msp_podcast(root, skip_invalid=True, cache_dir=tmp_path / "cache")
    assert {split: ds["id"] for split, ds in dataset.items()} == {"test1": ["MSP-PODCAST_0001_0008"]}
    assert "skipped 6 utterance(s) with problems" in caplog.text


def test_test3_rows_with_labels_make_a_test3_split(tmp_path):
    rows = [*ROWS, (f"{TEST3}.wav", "F", "5.0", "2.0", "2.5", "77", "Female", "Test3")]
    root = _make_release(tmp_path / "release", rows=rows)
    dataset = load_msp_podcast(root, cache_dir=tmp_path / "cache")
    assert dataset["test3"]["id"] == [TEST3] and dataset["test3"]["text"] == ["withheld"]
    assert "withheld" not in " ".join(scan_msp_podcast(root).check.notes)


def test_a_directory_that_is_not_the_release_names_what_was_expected(release, tmp_path):
    other = tmp_path / "other"
    _write_audio(other / "03-01-01-01-01-01-01.wav", 1)
    with pytest.raises(ValueError, match=r"is not an MSP-Podcast release: expected .*labels_consensus.csv"):
        load_msp_podcast(other, cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match=r"lists 6 segments, but none of their audio files is here"):
        load_msp_podcast(release / "Labels", cache_dir=tmp_path / "cache")
    csv = release / "Labels" / "labels_consensus.csv"
    csv.write_text(csv.read_text().replace("EmoDom,", "Dominance,", 1))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['EmoDom'\]"):
        load_msp_podcast(release, cache_dir=tmp_path / "cache")


def test_no_split_set_and_no_partition_file_is_an_error(release, tmp_path):
    (release / "Partition.txt").unlink()
    csv = release / "Labels" / "labels_consensus.csv"
    csv.write_text("\n".join(line.rsplit(",", 1)[0] for line in csv.read_text().splitlines()) + "\n")
    with pytest.raises(ValueError, match=r"has no Split_Set column and there is no Partition.txt"):
        load_msp_podcast(release, cache_dir=tmp_path / "cache")


def test_missing_directory_names_the_path_and_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere.*labels_consensus.csv"):
        load_msp_podcast(tmp_path / "nowhere", cache_dir=tmp_path / "cache")


def test_parquet_export_reads_back_without_the_release(release, tmp_path):
    out = tmp_path / "parquet"
    corpus_command(
        ["msp_podcast", "--data_dir", str(release), "--out", str(out), "--cache_dir", str(tmp_path / "cache")],
    )
    expected = _rows_by_id(load_msp_podcast(release, cache_dir=tmp_path / "cache"))
    shutil.rmtree(release)
    shutil.rmtree(tmp_path / "cache")
    files = {path.stem: str(path) for path in sorted(out.glob("*.parquet"))}
    assert sorted(files) == ["test1", "test2", "train", "validation"]
    dataset = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "reread"))
    assert dataset["train"].features == RELEASE.features
    assert _rows_by_id(dataset) == expected
    samples = dataset["test1"][0]["audio"].get_all_samples()
    assert samples.sample_rate == 16000 and samples.data.shape[1] == 4800


def test_a_release_documented_per_split_is_checked_against_its_documentation(release):
    (release / "readme.txt").write_text(README.replace("Release 1.12 (June 6, 2024)", "Release 1.11"))
    check = scan_msp_podcast(release).check
    assert (check.documented, check.found) == (84_030 + 19_815 + 30_647 + 14_815, 6)  # Test3's labels withheld
    assert not check.complete
    assert (
        "differs from the MSP lab's MSP-Podcast page for version 1.11: Train 2 in the label file, documented 84,030; "
        "Development 1 in the label file, documented 19,815" in str(check)
    )


def test_its_ratings_reach_training_on_0_1(release, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    classes = ["neutral", "happy", "angry", "sad"]
    part = read_part(
        "msp_podcast", str(release), classes, False, allow_incomplete=True, dimensions=("valence", "arousal")
    )
    rated = {_stem(row[0]): (float(row[3]), float(row[2])) for row in ROWS}
    rows = [row for split in part.splits.values() for row in split.remove_columns("audio")]
    assert rows and all(set(row) >= {"valence", "arousal"} for row in rows)
    for row in rows:
        valence, arousal = rated[row["id"].removeprefix("msp_podcast/")]
        assert (row["valence"], row["arousal"]) == pytest.approx(((valence - 1) / 6, (arousal - 1) / 6))
