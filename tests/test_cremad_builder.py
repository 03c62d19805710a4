"""The CREMA-D builder on tiny trees in the release's own layout: labels and demographics from the names and
VideoDemographics.csv, the actor folds, the release's faults, loud errors, and a self-contained export."""

from __future__ import annotations

import csv
import io
import logging
import shutil
import subprocess
import zlib
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf

from dataset_scripts.cremad import (
    EMOTIONS,
    RELEASE_LACKS,
    RELEASE_NAMES,
    SPEAKER_FOLDS,
    load_cremad,
    scan_cremad,
)
from dataset_scripts.labels import CORPUS_LABELS
from dataset_scripts.release import corpus_command

RATE = 16000
# The release's VideoDemographics.csv, as published (quoted header and strings).
DEMOGRAPHICS = """"ActorID","Age","Sex","Race","Ethnicity"
1001,51,"Male","Caucasian","Not Hispanic"
1002,21,"Female","Caucasian","Not Hispanic"
1003,21,"Female","Caucasian","Not Hispanic"
1004,42,"Female","Caucasian","Not Hispanic"
1005,29,"Male","African American","Not Hispanic"
1006,58,"Female","Caucasian","Not Hispanic"
1007,38,"Female","African American","Not Hispanic"
1008,46,"Female","Caucasian","Not Hispanic"
1009,24,"Female","Caucasian","Not Hispanic"
1010,27,"Female","Caucasian","Not Hispanic"
1011,32,"Male","Caucasian","Not Hispanic"
1012,23,"Female","Caucasian","Not Hispanic"
1013,22,"Female","Caucasian","Hispanic"
1014,24,"Male","Caucasian","Not Hispanic"
1015,32,"Male","African American","Not Hispanic"
1016,61,"Male","Caucasian","Not Hispanic"
1017,42,"Male","Caucasian","Not Hispanic"
1018,25,"Female","Caucasian","Hispanic"
1019,29,"Male","Asian","Not Hispanic"
1020,61,"Female","Caucasian","Not Hispanic"
1021,30,"Female","Caucasian","Not Hispanic"
1022,22,"Male","Caucasian","Not Hispanic"
1023,22,"Male","Caucasian","Not Hispanic"
1024,59,"Female","Caucasian","Not Hispanic"
1025,48,"Female","Caucasian","Not Hispanic"
1026,33,"Male","Caucasian","Not Hispanic"
1027,44,"Male","Caucasian","Not Hispanic"
1028,57,"Female","Caucasian","Not Hispanic"
1029,33,"Female","African American","Not Hispanic"
1030,42,"Female","African American","Not Hispanic"
1031,31,"Male","Caucasian","Hispanic"
1032,30,"Male","African American","Not Hispanic"
1033,31,"Male","Caucasian","Not Hispanic"
1034,74,"Male","Caucasian","Not Hispanic"
1035,48,"Male","Caucasian","Not Hispanic"
1036,49,"Male","African American","Not Hispanic"
1037,45,"Female","Caucasian","Not Hispanic"
1038,21,"Male","African American","Not Hispanic"
1039,51,"Male","African American","Not Hispanic"
1040,42,"Male","Caucasian","Not Hispanic"
1041,42,"Male","Caucasian","Not Hispanic"
1042,37,"Male","African American","Not Hispanic"
1043,25,"Female","Caucasian","Hispanic"
1044,40,"Male","Caucasian","Not Hispanic"
1045,22,"Male","Asian","Not Hispanic"
1046,22,"Female","Caucasian","Hispanic"
1047,22,"Female","Unknown","Hispanic"
1048,38,"Male","Caucasian","Hispanic"
1049,25,"Female","Caucasian","Hispanic"
1050,62,"Male","African American","Not Hispanic"
1051,56,"Male","Caucasian","Not Hispanic"
1052,33,"Female","Caucasian","Not Hispanic"
1053,35,"Female","Caucasian","Not Hispanic"
1054,36,"Female","Caucasian","Not Hispanic"
1055,57,"Female","Caucasian","Not Hispanic"
1056,52,"Female","African American","Not Hispanic"
1057,25,"Male","Caucasian","Not Hispanic"
1058,36,"Female","Caucasian","Not Hispanic"
1059,21,"Male","African American","Not Hispanic"
1060,28,"Female","African American","Not Hispanic"
1061,51,"Female","African American","Not Hispanic"
1062,56,"Male","Caucasian","Not Hispanic"
1063,33,"Female","African American","Not Hispanic"
1064,53,"Male","Caucasian","Not Hispanic"
1065,38,"Male","Caucasian","Not Hispanic"
1066,25,"Male","Caucasian","Not Hispanic"
1067,66,"Male","Caucasian","Not Hispanic"
1068,34,"Male","Caucasian","Not Hispanic"
1069,27,"Male","Caucasian","Not Hispanic"
1070,25,"Male","African American","Not Hispanic"
1071,41,"Male","Caucasian","Not Hispanic"
1072,33,"Female","Asian","Not Hispanic"
1073,24,"Female","African American","Hispanic"
1074,31,"Female","African American","Not Hispanic"
1075,40,"Female","Caucasian","Not Hispanic"
1076,25,"Female","Caucasian","Not Hispanic"
1077,20,"Male","Caucasian","Not Hispanic"
1078,21,"Female","Caucasian","Not Hispanic"
1079,21,"Female","Caucasian","Hispanic"
1080,21,"Male","African American","Not Hispanic"
1081,30,"Male","Asian","Not Hispanic"
1082,20,"Female","Caucasian","Not Hispanic"
1083,45,"Male","African American","Not Hispanic"
1084,46,"Female","Caucasian","Not Hispanic"
1085,34,"Male","Asian","Not Hispanic"
1086,33,"Male","Caucasian","Not Hispanic"
1087,62,"Male","Caucasian","Not Hispanic"
1088,23,"Male","African American","Not Hispanic"
1089,24,"Female","Caucasian","Not Hispanic"
1090,50,"Male","Asian","Not Hispanic"
1091,29,"Female","Asian","Not Hispanic"
"""
CLIPS = ["1001_DFA_ANG_XX", "1002_IEO_HAP_LO", "1005_IEO_SAD_HI", "1013_IEO_DIS_MD", "1091_WSI_NEU_XX"]


def _tone(name: str) -> np.ndarray:
    """0.3 s of noise, different for every name (so no two clips are byte-identical unless a test wants them)."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    return (0.2 * rng.standard_normal(int(0.3 * RATE))).astype(np.float32)


def _write(path: Path, name: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, _tone(name or path.stem), RATE, subtype="PCM_16")
    return path


def _make_release(root: Path, clips=CLIPS, flat: bool = False, demographics: str | None = DEMOGRAPHICS) -> Path:
    """The release as cloned: AudioWAV/<clip>.wav, VideoDemographics.csv and SentenceFilenames.csv at the top
    (flat: every file in one folder)."""
    root.mkdir(parents=True, exist_ok=True)
    for clip in clips:
        _write((root if flat else root / "AudioWAV") / f"{clip}.wav")
    if demographics is not None:
        (root / "VideoDemographics.csv").write_text(demographics)
    listing = "".join(f'{number},"{clip}"\n' for number, clip in enumerate(clips, start=1))
    (root / "SentenceFilenames.csv").write_text('"Stimulus_Number","Filename"\n' + listing)
    return root


def _rows(dataset: datasets.DatasetDict) -> dict[str, dict]:
    return {row["id"]: row for ds in dataset.remove_columns("audio").values() for row in ds}


@pytest.fixture
def release(tmp_path) -> Path:
    return _make_release(tmp_path / "CREMA-D")


# --- the constants the scan checks against ------------------------------------------------------------------------


def test_the_documented_release_is_7442_clips_of_the_grid_less_20():
    assert len(RELEASE_NAMES) == 7442 and len(RELEASE_LACKS) == 20 and not RELEASE_NAMES & RELEASE_LACKS
    assert Counter(name.split("_")[2] for name in RELEASE_NAMES) == {
        "ANG": 1271, "DIS": 1271, "FEA": 1271, "HAP": 1271, "SAD": 1271, "NEU": 1087,
    }  # fmt: skip
    assert Counter(name[:4] for name in RELEASE_NAMES)["1008"] == 76  # no WSI
    levels = Counter(name.split("_")[3] for name in RELEASE_NAMES if name.split("_")[1] == "IEO")
    assert levels == {"LO": 455, "MD": 455, "HI": 455, "XX": 91}  # five emotions x 91 actors, neutral at XX
    assert not any(name.split("_")[1] != "IEO" and not name.endswith("_XX") for name in RELEASE_NAMES)


def test_speaker_folds_partition_the_91_actors_by_the_documented_rule():
    rows = list(csv.DictReader(io.StringIO(DEMOGRAPHICS)))
    men = [row["ActorID"] for row in rows if row["Sex"] == "Male"]
    women = [row["ActorID"] for row in rows if row["Sex"] == "Female"]
    assert (len(men), len(women)) == (48, 43)
    dealt: dict[int, list[str]] = {fold: [] for fold in range(1, 6)}
    for index, actor in enumerate(men + women):
        dealt[index % 5 + 1].append(actor)
    assert {fold: sorted(actors) for fold, actors in dealt.items()} == {f: list(a) for f, a in SPEAKER_FOLDS.items()}
    in_folds = [actor for actors in SPEAKER_FOLDS.values() for actor in actors]
    assert sorted(in_folds) == [str(actor) for actor in range(1001, 1092)]  # each actor exactly once
    assert [sum(a in men for a in SPEAKER_FOLDS[f]) for f in range(1, 6)] == [10, 10, 10, 9, 9]
    assert [sum(a in women for a in SPEAKER_FOLDS[f]) for f in range(1, 6)] == [9, 8, 8, 9, 9]


# --- what a build yields ------------------------------------------------------------------------------------------


def test_clips_yield_sentence_label_actor_demographics_and_fold(release, tmp_path):
    dataset = load_cremad(release, cache_dir=tmp_path / "cache")
    assert dataset["fold1"].features["label"].names == list(CORPUS_LABELS["cremad"]) == list(EMOTIONS)
    assert sorted(dataset) == ["fold1", "fold2", "fold3", "fold4"]  # fold5 holds none of these actors
    fold_of = {actor: fold for fold, actors in SPEAKER_FOLDS.items() for actor in actors}
    for split, ds in dataset.items():
        assert all(f"fold{fold_of[speaker]}" == split for speaker in ds["speaker"])
        assert ds["fold"] == [int(split[-1])] * len(ds)
    rows = _rows(dataset)
    assert sorted(rows) == sorted(CLIPS)
    label = dataset["fold1"].features["label"].int2str
    row = rows["1002_IEO_HAP_LO"]
    assert (row["text"], label(row["label"]), row["speaker"], row["gender"], row["age"]) == (
        "It's eleven o'clock", "HAP", "1002", "F", 21,
    )  # fmt: skip
    assert (row["race"], row["ethnicity"], row["sentence"], row["level"], row["fold"]) == (
        "Caucasian", "Not Hispanic", "IEO", "low", 4,
    )  # fmt: skip
    assert (rows["1005_IEO_SAD_HI"]["level"], rows["1013_IEO_DIS_MD"]["level"]) == ("high", "medium")
    assert rows["1013_IEO_DIS_MD"]["ethnicity"] == "Hispanic"
    row = rows["1091_WSI_NEU_XX"]
    assert (row["text"], label(row["label"]), row["gender"], row["race"], row["level"], row["fold"]) == (
        "We'll stop in a couple of minutes", "NEU", "F", "Asian", "unspecified", 1,
    )  # fmt: skip
    row = rows["1001_DFA_ANG_XX"]
    assert (row["text"], label(row["label"]), row["gender"], row["age"]) == ("Don't forget a jacket", "ANG", "M", 51)
    samples = dataset["fold1"].filter(lambda r: r["id"] == "1001_DFA_ANG_XX")[0]["audio"].get_all_samples()
    assert samples.sample_rate == RATE and samples.data.shape == (1, int(0.3 * RATE))


def test_flat_layout_gives_the_same_clips_as_the_nested_one(release, tmp_path):
    flat = _make_release(tmp_path / "flat", flat=True)
    nested_rows = _rows(load_cremad(release, cache_dir=tmp_path / "cache"))
    flat_rows = _rows(load_cremad(flat, cache_dir=tmp_path / "cache"))
    assert flat_rows == nested_rows


def test_wavs_win_over_the_raters_mp3s_other_formats_are_read_and_videos_are_not(release, tmp_path):
    def encode(source: Path, target: Path):
        target.parent.mkdir(parents=True, exist_ok=True)
        command = ["ffmpeg", "-loglevel", "error", "-y", "-i", str(source), str(target)]
        subprocess.run(command, check=True)

    scratch = _write(tmp_path / "scratch" / "1020_TSI_FEA_XX.wav")
    encode(scratch, release / "AudioMP3" / "1020_TSI_FEA_XX.mp3")  # only an MP3 of this clip
    encode(release / "AudioWAV" / "1001_DFA_ANG_XX.wav", release / "AudioMP3" / "1001_DFA_ANG_XX.mp3")
    encode(release / "AudioWAV" / "1001_DFA_ANG_XX.wav", release / "VideoFlash" / "1001_DFA_ANG_XX.mp4")
    sf.write(release / "AudioWAV" / "1003_ITS_SAD_XX.flac", _tone("1003_ITS_SAD_XX"), RATE)

    scan = scan_cremad(release)
    assert scan.problems == []  # a clip in AudioWAV/ and AudioMP3/ is not a clip found twice
    notes = "; ".join(scan.check.notes)
    assert "1 clip(s) read from AudioMP3/ (no other copy): 1020_TSI_FEA_XX" in notes
    assert "1 MP3 copies in AudioMP3/ not read" in notes and "1 file(s) in VideoFlash/ not read" in notes
    dataset = load_cremad(release, cache_dir=tmp_path / "cache")
    audio = {row["id"]: row["audio"]["path"] for ds in dataset.cast_column("audio", datasets.Audio(decode=False))
             .values() for row in ds}  # fmt: skip
    assert Path(audio["1001_DFA_ANG_XX"]).parent.name == "AudioWAV"
    assert audio["1020_TSI_FEA_XX"].endswith(".mp3") and audio["1003_ITS_SAD_XX"].endswith(".flac")
    rows = _rows(dataset)
    assert rows["1003_ITS_SAD_XX"]["text"] == "I think I've seen this before" and rows["1020_TSI_FEA_XX"]["fold"] == 5


# --- the check against the release ---------------------------------------------------------------------------------


def test_check_names_what_this_copy_lacks_what_the_release_lacks_and_extras(release, capsys):
    _write(release / "AudioWAV" / "1002_TIE_NEU_XX.wav")  # in the grid, not in the release
    _write(release / "AudioWAV" / "1001_TIE_ANG_HI.wav")  # TIE was only recorded at XX
    check = scan_cremad(release).check
    assert (check.documented, check.found, check.complete) == (7442, 7, False)
    assert check.extra == ["1001_TIE_ANG_HI", "1002_TIE_NEU_XX"]
    assert len(check.missing) == 7442 - len(CLIPS) and not set(check.missing) & set(CLIPS)
    assert {"1001_DFA_HAP_XX", "1091_WSI_DIS_XX", "1076_MTI_SAD_XX"} <= set(check.missing)
    assert not set(check.missing) & RELEASE_LACKS  # the release's own gaps are not this copy's
    notes = "; ".join(check.notes)
    assert "the release itself lacks 20 (1002_TIE_NEU_XX, 1008_WSI_ANG_XX" in notes
    assert "this copy lacks 7437 of the release's 7442" in notes
    assert "in the grid but not in the release: 1002_TIE_NEU_XX" in notes
    (release / "notes.wav").write_bytes(b"RIFF")
    with pytest.raises(SystemExit, match="differs from the release"):  # a copy that is not the release fails
        corpus_command(["cremad", "--data_dir", str(release), "--check"])
    printed = capsys.readouterr().out
    assert "CREMA-D: 8 utterances found, 7442 documented; 7437 missing: 1001_DFA_DIS_XX" not in printed
    assert "CREMA-D: 7 utterances found, 7442 documented; 7437 missing: 1001_DFA_DIS_XX" in printed
    assert "2 extra (not part of the release): 1001_TIE_ANG_HI, 1002_TIE_NEU_XX" in printed
    assert "1 audio file(s) not named like CREMA-D clips, not read: notes.wav" in printed


# --- the release's own faults -------------------------------------------------------------------------------------


def test_known_faults_of_the_release_are_handled_and_named(release, tmp_path):
    _write(release / "AudioWAV" / "1076_MTI_SAD_XX.wav")  # documented: no audio
    _write(release / "AudioWAV" / "1040_ITH_SAD_X.wav")  # the old name of 1040_ITH_SAD_XX
    shutil.copy(release / "AudioWAV" / "1001_DFA_ANG_XX.wav", release / "AudioWAV" / "1001_DFA_SAD_XX.wav")
    minute = np.tile(_tone("1064_IEO_DIS_MD"), 35)  # 10.5 s: every IEO display in one file, as its MP3 is
    sf.write(release / "AudioWAV" / "1064_IEO_DIS_MD.wav", minute, RATE, subtype="PCM_16")
    scan = scan_cremad(release)
    notes = "; ".join(scan.check.notes)
    assert "1 clip(s) longer than 10 s, more than one sentence, kept as released: 1064_IEO_DIS_MD (10.5 s)" in notes
    assert "1076_MTI_SAD_XX left out: no audio" in notes
    assert "1040_ITH_SAD_X.wav read as 1040_ITH_SAD_XX" in notes
    assert "byte-identical audio, kept as released: 1001_DFA_ANG_XX = 1001_DFA_SAD_XX" in notes
    assert "1040_ITH_SAD_XX" not in scan.check.missing and "1040_ITH_SAD_X" not in scan.check.extra
    rows = _rows(load_cremad(release, cache_dir=tmp_path / "cache"))
    assert "1076_MTI_SAD_XX" not in rows and {"1001_DFA_ANG_XX", "1001_DFA_SAD_XX", "1064_IEO_DIS_MD"} <= set(rows)
    assert (rows["1040_ITH_SAD_XX"]["text"], rows["1040_ITH_SAD_XX"]["gender"]) == (
        "I think I have a doctor's appointment", "M",
    )  # fmt: skip

    _write(release / "AudioWAV" / "1040_ITH_SAD_XX.wav")  # both spellings: which is the clip?
    message = "; ".join(str(problem) for problem in scan_cremad(release).problems)
    assert "1040_ITH_SAD_X is the old name of 1040_ITH_SAD_XX, which is here too" in message


def test_git_lfs_pointers_are_named_and_a_zip_download_is_refused(release, tmp_path):
    pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:c6f94b25\nsize 72862\n"
    (release / "AudioWAV" / "1005_IEO_SAD_HI.wav").write_bytes(pointer)
    with pytest.raises(ValueError, match=r"1005_IEO_SAD_HI\.wav: a Git LFS pointer, not audio"):
        load_cremad(release, cache_dir=tmp_path / "cache")
    for path in (release / "AudioWAV").iterdir():
        path.write_bytes(pointer)
    with pytest.raises(ValueError, match=r"holds Git LFS pointers, not audio \(5 files .*git lfs install"):
        load_cremad(release, cache_dir=tmp_path / "cache")


# --- errors ----------------------------------------------------------------------------------------------------------


def test_unreadable_and_unlabelled_clips_are_listed_by_path_and_can_be_skipped(release, tmp_path, caplog):
    garbage = release / "AudioWAV" / "1002_IEO_HAP_LO.wav"
    garbage.write_bytes(b"RIFF....WAVEjunk")
    empty = release / "AudioWAV" / "1005_IEO_SAD_HI.wav"
    sf.write(empty, np.zeros(0, np.float32), RATE)
    stranger = _write(release / "AudioWAV" / "1092_DFA_ANG_XX.wav")
    odd_code = _write(release / "AudioWAV" / "1001_DFA_CAL_XX.wav")
    with pytest.raises(ValueError) as error:
        load_cremad(release, cache_dir=tmp_path / "cache")
    message = str(error.value)
    assert "4 problem(s) in CREMA-D corpus" in message
    assert f"{garbage}: unreadable audio" in message and f"{empty}: the audio has no samples" in message
    assert f"{stranger}: actor 1092 is not one of CREMA-D's 91 (1001-1091)" in message
    assert f"{odd_code}: emotion CAL is not one of CREMA-D's six" in message
    with caplog.at_level(logging.WARNING, logger="dataset_scripts.release"):
        dataset = load_cremad(release, skip_invalid=True, cache_dir=tmp_path / "cache")
    assert sorted(_rows(dataset)) == ["1001_DFA_ANG_XX", "1013_IEO_DIS_MD", "1091_WSI_NEU_XX"]
    assert "skipped 4 utterance(s)" in caplog.text


def test_a_folder_that_is_not_crema_d_and_a_missing_folder_are_errors(tmp_path):
    other = tmp_path / "RAVDESS" / "Actor_01"
    _write(other / "03-01-01-01-01-01-01.wav")
    with pytest.raises(ValueError, match=r"is not a CREMA-D release: expected .*AudioWAV/.*found: \['Actor_01/03-01"):
        load_cremad(tmp_path / "RAVDESS", cache_dir=tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match=r"CREMA-D data_dir .*nowhere does not exist.*AudioWAV"):
        load_cremad(tmp_path / "nowhere", cache_dir=tmp_path / "cache")


def test_without_demographics_gender_is_empty_and_a_broken_row_is_a_problem(tmp_path):
    bare = _make_release(tmp_path / "bare", demographics=None)
    scan = scan_cremad(bare)
    assert any(note.startswith("no VideoDemographics.csv under") for note in scan.check.notes)
    rows = _rows(load_cremad(bare, cache_dir=tmp_path / "cache"))
    assert {(row["gender"], row["age"], row["race"]) for row in rows.values()} == {("", None, "")}

    broken = DEMOGRAPHICS.replace('1002,21,"Female"', '1002,21,"F"')
    broken = broken.replace('1091,29,"Female","Asian","Not Hispanic"', "1091,29")  # a short row
    partial = _make_release(tmp_path / "partial", demographics=broken)
    scan = scan_cremad(partial)
    message = "; ".join(str(problem) for problem in scan.problems)
    assert "VideoDemographics.csv:3: unreadable row '1002,21,F,Caucasian,Not Hispanic'" in message
    assert "VideoDemographics.csv:92: unreadable row '1091,29,,,'" in message
    assert any(note.startswith("2 actor(s) not in") and note.endswith(": 1002, 1091; gender left empty")
               for note in scan.check.notes)  # fmt: skip
    rows = _rows(load_cremad(partial, skip_invalid=True, cache_dir=tmp_path / "cache"))
    assert (rows["1002_IEO_HAP_LO"]["gender"], rows["1001_DFA_ANG_XX"]["gender"]) == ("", "M")


# --- export ----------------------------------------------------------------------------------------------------------


def test_parquet_export_reads_back_without_the_corpus(release, tmp_path):
    out = tmp_path / "parquet"
    corpus_command(
        ["cremad", "--data_dir", str(release), "--out", str(out), "--cache_dir", str(tmp_path / "cache")],
    )  # fmt: skip
    expected = _rows(load_cremad(release, cache_dir=tmp_path / "cache"))
    shutil.rmtree(release)
    shutil.rmtree(tmp_path / "cache")  # the Arrow cache, whose audio pointed into the corpus
    files = {path.stem: str(path) for path in sorted(out.glob("*.parquet"))}
    assert list(files) == ["fold1", "fold2", "fold3", "fold4"]
    dataset = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "reread"))
    assert dataset["fold4"].features["label"].names == list(EMOTIONS)
    assert _rows(dataset) == expected
    samples = dataset["fold4"][0]["audio"].get_all_samples()
    assert samples.sample_rate == RATE and samples.data.shape == (1, int(0.3 * RATE))
