"""The MELD builder on trees laid out as the raw release is: the published CSVs with a placeholder clip under every
name, and small hand-made releases with the release's faults (encoding damage, missing, silent and extra clips)."""

from __future__ import annotations

import csv
import logging
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf

from dataset_scripts.labels import CORPUS_LABELS
from dataset_scripts.meld import (
    CSV_FILES,
    SPLIT_FOLDERS,
    load_meld,
    parse_time,
    repair_text,
    scan_meld,
)
from dataset_scripts.release import corpus_command

PUBLISHED = Path("/work/shared/data/meld")  # the three CSVs as published, without the clips
HEADER = [
    "Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID", "Season", "Episode",
    "StartTime", "EndTime",
]  # fmt: skip
# The emotion distribution of the release (README of declare-lab/MELD, "Dataset Distribution").
DOCUMENTED_EMOTIONS = {
    "train": {"anger": 1109, "disgust": 271, "fear": 268, "joy": 1743, "neutral": 4710, "sadness": 683,
              "surprise": 1205},
    "validation": {"anger": 153, "disgust": 22, "fear": 40, "joy": 163, "neutral": 470, "sadness": 111,
                   "surprise": 150},
    "test": {"anger": 345, "disgust": 68, "fear": 50, "joy": 402, "neutral": 1256, "sadness": 208, "surprise": 281},
}  # fmt: skip
DOCUMENTED_SPEAKERS = {"train": 260, "validation": 47, "test": 100}


def _run_ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    """A 0.3 s clip as MELD's are (H.264 video, AAC audio at 16 kHz), the same without audio, and junk."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is needed to write mp4 clips")
    directory = tmp_path_factory.mktemp("clips")
    video = ["-f", "lavfi", "-i", "color=c=black:s=16x16:d=0.3:r=10"]
    audio = ["-f", "lavfi", "-i", "sine=frequency=440:duration=0.3:sample_rate=16000"]
    _run_ffmpeg(*video, *audio, "-shortest", "-c:v", "libx264", "-c:a", "aac", str(directory / "clip.mp4"))
    _run_ffmpeg(*video, "-c:v", "libx264", str(directory / "video_only.mp4"))
    (directory / "junk.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"not a movie" * 10)
    return {path.stem: path for path in directory.iterdir()}


def _write_csv(path: Path, rows: list[tuple], encoding: str = "utf-8") -> None:
    """A MELD CSV as published: the release's header, CRLF lines, the times quoted (they hold a comma)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding=encoding, newline="") as file:
        writer = csv.writer(file)
        writer.writerow(HEADER)
        for number, (dialogue, utterance, text, speaker, emotion, sentiment, season, episode, start, end) in enumerate(
            rows, 1
        ):
            writer.writerow(
                [number, text, speaker, emotion, sentiment, dialogue, utterance, season, episode, start, end]
            )


def _place(clip: Path, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    if target.exists():
        target.unlink()
    os.link(clip, target)
    return target


# --- the published CSVs, a placeholder clip under every name -----------------------------------------------------


@pytest.fixture(scope="module")
def published_release(clips, tmp_path_factory) -> Path:
    """MELD.Raw as unpacked: the published CSVs beside the three clip folders, one clip hard-linked under each row's
    name, with the release's faults: dev dia110_utt7 absent, clips no row names, macOS ``._`` files."""
    if not all((PUBLISHED / name).is_file() for name in CSV_FILES.values()):
        pytest.skip(f"the published MELD CSVs ({', '.join(CSV_FILES.values())}) are not in {PUBLISHED}")
    root = tmp_path_factory.mktemp("published") / "MELD.Raw"
    for split, name in CSV_FILES.items():
        folder = root / SPLIT_FOLDERS[split]
        folder.mkdir(parents=True)
        shutil.copy(PUBLISHED / name, root / name)
        with (PUBLISHED / name).open(encoding="utf-8", newline="") as file:
            for row in csv.DictReader(file):
                os.link(clips["clip"], folder / f"dia{row['Dialogue_ID']}_utt{row['Utterance_ID']}.mp4")
    (root / "dev_splits_complete" / "dia110_utt7.mp4").unlink()
    _place(clips["clip"], root / "dev_splits_complete", "dia49_utt4.mp4")
    _place(clips["clip"], root / "output_repeated_splits_test", "final_videos_testdia101_utt0.mp4")
    (root / "train_splits" / "._dia0_utt0.mp4").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    return root


def test_published_csvs_build_with_the_documented_counts(published_release, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="dataset_scripts.release"):
        meld = load_meld(published_release, skip_invalid=True, cache_dir=tmp_path / "cache")
    assert {split: len(ds) for split, ds in meld.items()} == {"train": 9989, "validation": 1108, "test": 2610}
    for split, ds in meld.items():
        expected = Counter(DOCUMENTED_EMOTIONS[split])
        expected["neutral"] -= split == "validation"  # dia110_utt7, the clip the release lacks, is neutral
        assert Counter(ds.features["label"].int2str(ds["label"])) == expected
        assert len(set(ds["speaker"])) == DOCUMENTED_SPEAKERS[split]
        assert set(ds["split"]) == {split} and all(i.startswith(f"{split}/dia") for i in ds["id"])
        assert set(ds["gender"]) == {""}
    log = caplog.text
    assert "MELD: 13707 utterances found, 13708 documented; 1 missing: validation/dia110_utt7" in log
    assert "2 extra (not part of the release): validation/dia49_utt4, test/final_videos_testdia101_utt0" in log
    assert "dev_sent_emo.csv: 1 row(s) name a clip that is not in dev_splits_complete/: dia110_utt7" in log
    assert "dialogues: train 1038 (1039 documented), validation 114 (114 documented), test 280" in log
    assert "3 row(s) with fewer than 3 millisecond digits" in log and "repaired" not in log  # these CSVs are clean

    train = meld["train"].remove_columns("audio")
    first = train[0]
    assert first == {
        "id": "train/dia0_utt0",
        "text": "also I was the point person on my company’s transition from the KL-5 to GR-6 system.",
        "label": train.features["label"].str2int("neutral"),
        "sentiment": "neutral",
        "speaker": "Chandler",
        "gender": "",
        "dialogue": 0,
        "utterance": 0,
        "season": 8,
        "episode": 21,
        "start": 976.059,
        "end": 981.731,
        "split": "train",
    }
    joey = train[train["id"].index("train/dia437_utt2")]
    assert (joey["start"], joey["end"]) == (405.489, 407.028)  # "00:06:47,28": 28 ms
    assert "Richard’s Date" in set(train["speaker"])
    assert meld["train"].features["label"].names == list(CORPUS_LABELS["meld"])


def _as_released(text: str) -> str:
    """The damage of the raw release's CSVs, from a clean text: cp1252 punctuation as C1 characters."""
    return text.translate({ord(c): chr(c.encode("cp1252")[0]) for c in "…‘’“”–—"})


def _as_mojibake(text: str) -> str:
    """A clean text's UTF-8 bytes read back as cp1252 (bytes cp1252 leaves undefined pass through as latin-1)."""

    def character(byte: int) -> str:
        try:
            return bytes([byte]).decode("cp1252")
        except UnicodeDecodeError:
            return chr(byte)

    return "".join(character(byte) for byte in text.encode("utf-8"))


def test_repair_undoes_both_kinds_of_damage_on_every_published_utterance():
    if not all((PUBLISHED / name).is_file() for name in CSV_FILES.values()):
        pytest.skip(f"the published MELD CSVs are not in {PUBLISHED}")
    damaged = 0
    for name in CSV_FILES.values():
        with (PUBLISHED / name).open(encoding="utf-8", newline="") as file:
            for row in csv.DictReader(file):
                clean = row["Utterance"]
                assert repair_text(clean) == clean
                assert repair_text(_as_released(clean)) == clean
                assert repair_text(_as_mojibake(clean)) == clean
                damaged += _as_released(clean) != clean
    assert damaged > 3500  # 3,801 rows: the rule is tested on thousands of real sentences


def test_repair_and_time_rules():
    assert repair_text("It\x92s \x93fine\x94\x85 I\x96you\x97no\xa0way") == "It’s “fine”… I–you—no way"
    assert repair_text("heâ€™s â€œokâ€\x9d â€” cafÃ©") == "he’s “ok” — café"
    assert repair_text("café’s naïve Ã ø") == "café’s naïve Ã ø"  # real accents and lone lead characters stay
    assert parse_time("00:16:16,059") == 976.059 and parse_time("0:10:44,769") == 644.769
    assert parse_time("00:06:47,28") == 407.028
    with pytest.raises(ValueError, match=r"'00:16:16\.059' is not hh:mm:ss,ms"):
        parse_time("00:16:16.059")


# --- small releases by hand ----------------------------------------------------------------------------------------

ROWS = {  # split -> rows as the raw release writes them: (dialogue, utterance, text, speaker, ..., start, end)
    "train": [
        (0, 0, "also I was the point person on my company\x92s transition.", "Chandler", "neutral", "neutral", 8, 21,
         "00:16:16,059", "00:16:21,731"),
        (0, 1, "You must\x92ve had your hands full.", "The Interviewer", "neutral", "neutral", 8, 21,
         "00:16:21,940", "00:16:23,442"),
        (1, 0, "Oh my God\x85 I\x96I can\x92t!", "Rachel", "fear", "negative", 2, 3, "0:10:44,769", "0:10:46,100"),
        (1, 1, "Dude! What are yo\x97you trying to kill me?!", "Joey", "anger", "negative", 8, 19,
         "00:06:45,489", "00:06:47,28"),
        (2, 0, "Well, I just wanted to see where you lived.", "Richard\x92s Date", "joy", "positive", 3, 13,
         "00:18:45,707", "00:18:48,251"),
    ],
    "validation": [
        (0, 0, "Oh my God, heâ€™s lost it.", "Phoebe", "sadness", "negative", 4, 7, "00:20:57,256", "00:21:00,049"),
        (0, 1, "What?", "Monica", "surprise", "negative", 4, 7, "00:21:01,927", "00:21:03,261"),
    ],
    "test": [
        (0, 0, "Why do all youâ€™re coffee mugs have numbers on the bottom?", "Mark", "surprise", "positive", 3, 19,
         "00:14:38,127", "00:14:40,378"),
        (0, 1, "Ugh\xa0that\x92s disgusting.", "Rachel", "disgust", "negative", 3, 19, "00:14:40,629", "00:14:47,385"),
    ],
}  # fmt: skip
REPAIRED = {
    "train/dia0_utt0": "also I was the point person on my company’s transition.",
    "train/dia0_utt1": "You must’ve had your hands full.",
    "train/dia1_utt0": "Oh my God… I–I can’t!",
    "train/dia1_utt1": "Dude! What are yo—you trying to kill me?!",
    "validation/dia0_utt0": "Oh my God, he’s lost it.",
    "test/dia0_utt0": "Why do all you’re coffee mugs have numbers on the bottom?",
    "test/dia0_utt1": "Ugh that’s disgusting.",
}


def _make_release(root: Path, clip: Path, layout: str = "release") -> Path:
    """A small MELD in the raw release's layout (``MELD.Raw/<csv>``, ``MELD.Raw/train_splits/...``), or as a
    re-packed copy nests it (``train/train_sent_emo.csv``, ``train/train_splits/...``)."""
    for split, rows in ROWS.items():
        folder = SPLIT_FOLDERS[split]
        nest = root if layout == "release" else root / {"validation": "dev"}.get(split, split)
        _write_csv(nest / CSV_FILES[split], rows)
        for dialogue, utterance, *_ in rows:
            _place(clip, nest / folder, f"dia{dialogue}_utt{utterance}.mp4")
    return root


@pytest.fixture
def release(clips, tmp_path) -> Path:
    return _make_release(tmp_path / "MELD.Raw", clips["clip"])


def test_examples_and_their_columns(release, tmp_path):
    meld = load_meld(release, cache_dir=tmp_path / "cache")
    assert {split: ds["id"] for split, ds in meld.items()} == {
        "train": ["train/dia0_utt0", "train/dia0_utt1", "train/dia1_utt0", "train/dia1_utt1", "train/dia2_utt0"],
        "validation": ["validation/dia0_utt0", "validation/dia0_utt1"],
        "test": ["test/dia0_utt0", "test/dia0_utt1"],
    }
    rows = {row["id"]: row for ds in meld.remove_columns("audio").values() for row in ds}
    for uid, text in REPAIRED.items():
        assert rows[uid]["text"] == text
    names = meld["train"].features["label"].names
    assert [names[rows[f"train/dia{d}_utt{u}"]["label"]] for d, u in ((0, 0), (1, 0), (1, 1), (2, 0))] == [
        "neutral", "fear", "anger", "joy"
    ]  # fmt: skip
    rachel = rows["train/dia1_utt0"]
    assert (rachel["speaker"], rachel["gender"], rachel["sentiment"]) == ("Rachel", "", "negative")
    assert (rachel["dialogue"], rachel["utterance"], rachel["season"], rachel["episode"]) == (1, 0, 2, 3)
    assert (rachel["start"], rachel["end"], rachel["split"]) == (644.769, 646.1, "train")
    assert rows["train/dia2_utt0"]["speaker"] == "Richard’s Date"
    assert rows["test/dia0_utt1"]["label"] == names.index("disgust")

    samples = meld["validation"][1]["audio"].get_all_samples()  # the audio stream of the mp4
    assert samples.sample_rate == 16000 and abs(samples.data.shape[-1] / 16000 - 0.3) < 0.05
    assert float(samples.data.abs().max()) > 0.1


def test_the_check_counts_the_repairs_and_names_nothing_missing(release):
    scan = scan_meld(release)
    assert scan.problems == [] and scan.check.found == 9 and scan.check.documented == 13708
    assert scan.check.missing == [] and scan.check.extra == []
    notes = "; ".join(scan.check.notes)
    assert "text or speaker repaired in 8 row(s)" in notes  # seven transcripts, and one speaker
    assert "rows per CSV: train 5 (9989 documented), validation 2 (1109 documented), test 2 (2610 documented)" in notes
    assert "1 row(s) with fewer than 3 millisecond digits" in notes


def test_nested_copy_with_extracted_flac_and_macos_files(clips, tmp_path):
    root = _make_release(tmp_path / "MELD-RAW", clips["clip"], layout="nested")
    clip = root / "test" / "output_repeated_splits_test" / "dia0_utt1.mp4"
    clip.unlink()
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(4800) / 16000)
    sf.write(clip.with_suffix(".flac"), tone, 16000)
    (clip.parent / "._dia0_utt0.mp4").write_bytes(b"\x00\x05\x16\x07")
    (root / "dev" / "._dev_sent_emo.csv").write_bytes(b"\x00\x05\x16\x07")
    meld = load_meld(root, cache_dir=tmp_path / "cache")
    assert {split: len(ds) for split, ds in meld.items()} == {"train": 5, "validation": 2, "test": 2}
    assert meld["test"][1]["audio"].metadata.path.endswith("dia0_utt1.flac")
    assert meld["test"][1]["text"] == REPAIRED["test/dia0_utt1"]


def test_repacked_audio_folders_train_dev_test_are_read(clips, tmp_path):
    root = tmp_path / "meld_audio"
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(4800) / 16000)
    for split, rows in ROWS.items():
        _write_csv(root / CSV_FILES[split], rows)
        for dialogue, utterance, *_ in rows:
            folder = root / "audio" / {"validation": "dev"}.get(split, split)
            folder.mkdir(parents=True, exist_ok=True)
            sf.write(folder / f"dia{dialogue}_utt{utterance}.flac", tone, 16000)
    scan = scan_meld(root)
    assert scan.problems == [] and {split: len(x) for split, x in scan.splits.items()} == {
        "train": 5, "validation": 2, "test": 2
    }  # fmt: skip


def test_every_problem_is_listed_at_once_and_can_be_skipped(release, clips, tmp_path, caplog):
    (release / "dev_splits_complete" / "dia0_utt1.mp4").unlink()
    (release / "train_splits" / "dia1_utt1.mp4").unlink()
    silent = _place(clips["video_only"], release / "train_splits", "dia0_utt1.mp4")
    junk = _place(clips["junk"], release / "output_repeated_splits_test", "dia0_utt0.mp4")
    with (release / "train_sent_emo.csv").open("a", encoding="utf-8", newline="") as file:
        csv.writer(file).writerow([6, "Hi.", "Ross", "happy", "positive", 3, 0, 1, 1, "00:00:01,000", "00:00:02,000"])

    with pytest.raises(ValueError) as error:
        load_meld(release, cache_dir=tmp_path / "cache")
    message = str(error.value)
    assert "5 problem(s) in MELD corpus" in message and "affecting 5 utterance(s)" in message
    assert f"{release / 'train_sent_emo.csv'}:7: emotion 'happy' is not one of MELD's" in message
    assert f"{release / 'train_sent_emo.csv'}: 1 row(s) name a clip that is not in train_splits/: dia1_utt1" in message
    assert f"{release / 'dev_sent_emo.csv'}: 1 row(s) name a clip that is not in dev_splits_complete/: dia0_utt1" in (
        message
    )
    assert f"{silent}: train/dia0_utt1: no audio stream in the clip (video only)" in message
    assert f"{junk}: test/dia0_utt0: unreadable audio" in message

    with caplog.at_level(logging.WARNING, logger="dataset_scripts.release"):
        meld = load_meld(release, skip_invalid=True, cache_dir=tmp_path / "cache")
    assert {split: ds["id"] for split, ds in meld.items()} == {
        "train": ["train/dia0_utt0", "train/dia1_utt0", "train/dia2_utt0"],
        "validation": ["validation/dia0_utt0"],
        "test": ["test/dia0_utt1"],
    }
    assert "skipped 5 utterance(s) with problems" in caplog.text
    assert "2 missing: train/dia1_utt1, validation/dia0_utt1" in caplog.text


def test_extra_clips_are_named_and_not_read(release, clips):
    _place(clips["clip"], release / "output_repeated_splits_test", "final_videos_testdia0_utt0.mp4")
    _place(clips["clip"], release / "dev_splits_complete", "dia49_utt4.mp4")
    _place(clips["clip"], release / "dev_splits_complete", "dia0_utt01.mp4")  # not how MELD writes a name
    _place(clips["clip"], release, "dia7_utt7.mp4")  # in no clip folder
    scan = scan_meld(release)
    assert scan.problems == [] and sum(len(x) for x in scan.splits.values()) == 9
    assert scan.check.extra == ["validation/dia49_utt4", "validation/dia0_utt01", "test/final_videos_testdia0_utt0"]
    assert not scan.check.complete
    text = str(scan.check)
    assert "3 extra (not part of the release): validation/dia49_utt4" in text
    assert "1 audio file(s) outside the clip folders, not read: dia7_utt7.mp4" in text


def test_a_clip_found_twice_is_a_problem_naming_both(release, clips):
    copy = _place(clips["clip"], release / "train_splits" / "waves", "dia0_utt0.mp4")
    scan = scan_meld(release)
    assert [str(p) for p in scan.problems] == [
        f"{copy}: dia0_utt0 is here twice: also {copy.parent.parent}/dia0_utt0.mp4"
    ]


def test_csv_in_cp1252_bytes_is_read(release):
    rows = [(d, u, repair_text(text), repair_text(speaker), *rest) for d, u, text, speaker, *rest in ROWS["train"]]
    _write_csv(release / "train_sent_emo.csv", rows, encoding="cp1252")
    scan = scan_meld(release)
    texts = {example["id"]: example["text"] for example in scan.splits["train"]}
    assert (
        texts["train/dia0_utt0"] == REPAIRED["train/dia0_utt0"] and texts["train/dia1_utt0"] == "Oh my God… I–I can’t!"
    )
    assert scan.splits["train"][4]["speaker"] == "Richard’s Date"
    assert "5 CSV line(s) were not UTF-8 and were read as cp1252" in "; ".join(scan.check.notes)  # all but the header


def test_directories_that_are_not_meld(release, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"MELD data_dir .*nowhere does not exist.*train_sent_emo\.csv"):
        load_meld(tmp_path / "nowhere", cache_dir=tmp_path / "cache")

    other = tmp_path / "other"
    other.mkdir()
    (other / "labels.csv").write_text("file,emotion\n")
    sf.write(other / "03-01-01-01-01-01-01.wav", np.zeros(1600), 16000)
    with pytest.raises(ValueError, match=r"is not a MELD release: expected the MELD raw release .*found no MELD CSV "
                                         r"\(found: \['labels\.csv', '03-01-01-01-01-01-01\.wav'\]\)"):  # fmt: skip
        scan_meld(other)

    (release / "test_sent_emo.csv").unlink()
    with pytest.raises(ValueError, match=r"not a complete MELD release: no test_sent_emo\.csv"):
        scan_meld(release)

    packed = tmp_path / "packed" / "MELD.Raw"
    for split, rows in ROWS.items():
        _write_csv(packed / CSV_FILES[split], rows)
        (packed / f"{ {'validation': 'dev'}.get(split, split) }.tar.gz").write_bytes(b"\x1f\x8b")
    with pytest.raises(
        ValueError, match=r"MELD CSVs but no clip in train_splits/.*unpack dev\.tar\.gz, test\.tar\.gz"
    ):
        scan_meld(packed)

    _write_csv(packed / "dev_sent_emo.csv", [])
    (packed / "dev_sent_emo.csv").write_text("Utterance,Speaker,Emotion\nHi,Ross,joy\n")
    _place(next((tmp_path / "MELD.Raw").glob("train_splits/*.mp4")), packed / "train_splits", "dia0_utt0.mp4")
    with pytest.raises(ValueError, match=r"dev_sent_emo\.csv is not a MELD CSV: no column\(s\) \['Sr No\.', "):
        scan_meld(packed)


def test_parquet_export_reads_back_without_the_corpus(release, tmp_path, capsys):
    with pytest.raises(SystemExit, match="differs from the release"):  # a copy that is not the release fails
        corpus_command(["meld", "--data_dir", str(release), "--check"])
    printed = capsys.readouterr().out
    assert printed.startswith("MELD: 9 utterances found, 13708 documented; rows per CSV: train 5")

    out = tmp_path / "parquet"
    written = corpus_command(
        ["meld", "--data_dir", str(release), "--out", str(out), "--cache_dir", str(tmp_path / "cache")],
    )  # fmt: skip
    assert sorted(written) == ["test", "train", "validation"]
    shutil.rmtree(release)
    shutil.rmtree(tmp_path / "cache")  # the Arrow cache, whose audio pointed into the corpus
    files = {split: str(path) for split, path in written.items()}
    meld = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "reread"))
    assert {split: len(ds) for split, ds in meld.items()} == {"train": 5, "validation": 2, "test": 2}
    assert meld["test"].features["label"].names == list(CORPUS_LABELS["meld"])
    row = meld["validation"][0]
    assert row["id"] == "validation/dia0_utt0" and row["text"] == REPAIRED["validation/dia0_utt0"]
    samples = row["audio"].get_all_samples()  # decoded from the embedded mp4 bytes
    assert samples.sample_rate == 16000 and abs(samples.data.shape[-1] / 16000 - 0.3) < 0.05
