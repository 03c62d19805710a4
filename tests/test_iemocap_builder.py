"""The IEMOCAP builder: exact on a synthetic corpus, loud and complete on broken trees, and a self-contained export."""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf

from dataset_scripts.iemocap import CONFIG_LABELS, load_iemocap
from dataset_scripts.release import corpus_command

FOUR_CLASS = CONFIG_LABELS["4class"][1]


def _by_session(utterances, mapping: dict[str, str] | None = None) -> dict[str, Counter]:
    counts: dict[str, Counter] = {}
    for u in utterances:
        if mapping is None or u.raw_label in mapping:
            label = u.raw_label if mapping is None else mapping[u.raw_label]
            counts.setdefault(f"session{u.session}", Counter())[label] += 1
    return counts


def _label_counts(dataset: datasets.DatasetDict) -> dict[str, Counter]:
    return {
        split: Counter(ds.features["label"].int2str(label) for label in ds["label"]) for split, ds in dataset.items()
    }


# --- on the synthetic corpus ------------------------------------------------------------------------------------


def test_4class_counts_per_session_and_class_merge_excited_into_happy(synthetic_corpus, synthetic_iemocap):
    assert synthetic_iemocap["session1"].features["label"].names == ["neutral", "happy", "angry", "sad"]
    assert _label_counts(synthetic_iemocap) == _by_session(synthetic_corpus.utterances, FOUR_CLASS)
    happy_codes = {r["raw_label"] for ds in synthetic_iemocap.values() for r in ds if r["label"] == 1}
    assert happy_codes == {"hap", "exc"}


@pytest.mark.parametrize("config_name", ["6class", "all"])
def test_6class_and_all_keep_raw_codes(config_name, synthetic_corpus, tmp_path):
    names, mapping = CONFIG_LABELS[config_name]
    dataset = load_iemocap(synthetic_corpus.path, config_name, cache_dir=tmp_path)
    assert dataset["session1"].features["label"].names == list(names)
    assert _label_counts(dataset) == _by_session(synthetic_corpus.utterances, mapping)
    if config_name == "all":
        assert sum(len(ds) for ds in dataset.values()) == synthetic_corpus.num_utterances  # xxx and rare codes too


def test_every_field_matches_what_the_generator_wrote(synthetic_corpus, synthetic_iemocap):
    written = {u.id: u for u in synthetic_corpus.utterances}
    rows = [row for ds in synthetic_iemocap.remove_columns("audio").values() for row in ds]
    assert len({row["id"] for row in rows}) == len(rows)
    for row in rows:
        u = written[row["id"]]
        assert row["text"] == " ".join(u.text.split())  # the TAB becomes a space, tags stay
        assert row["speaker"] == f"Ses0{u.session}_{u.gender}" and row["gender"] == u.gender
        assert (row["session"], row["dialog"], row["improvised"], row["raw_label"]) == (
            u.session, u.dialog, u.improvised, u.raw_label
        )  # fmt: skip
        assert (row["valence"], row["arousal"], row["dominance"]) == (u.valence, u.arousal, u.dominance)
        assert (row["start"], row["end"]) == (u.start, u.end)


def test_edge_cases_survive_the_build(synthetic_iemocap):
    rows = [row for ds in synthetic_iemocap.remove_columns("audio").values() for row in ds]
    dialogs = {row["dialog"] for row in rows}
    assert {"Ses03M_impro05a", "Ses03M_impro05b", "Ses05M_script01_1", "Ses05M_script01_1b"} <= dialogs
    assert all(row["id"].rsplit("_", 1)[0] == row["dialog"] for row in rows)
    assert any(row["gender"] != row["dialog"][5] for row in rows)  # speaker differs from the mocap actor
    for split, ds in synthetic_iemocap.items():
        assert set(ds["speaker"]) == {f"Ses0{split[-1]}_F", f"Ses0{split[-1]}_M"}
    texts = [row["text"] for row in rows]
    assert any(t.endswith("[LAUGHTER]") for t in texts) and not any("\t" in t for t in texts)
    assert 5.5 in {row["valence"] for row in rows} and 0.5 in {row["arousal"] for row in rows}
    assert not any("XX" in row["id"] or row["id"].startswith(".") for row in rows)


def test_audio_decodes_at_16_khz_with_the_length_of_its_times(synthetic_iemocap):
    ds = synthetic_iemocap["session3"]
    for index in (0, len(ds) // 2, len(ds) - 1):
        row = ds[index]
        samples = row["audio"].get_all_samples()
        assert samples.sample_rate == 16000 and samples.data.shape[0] == 1
        assert abs(samples.data.shape[1] / 16000 - (row["end"] - row["start"])) < 1e-3
        assert float(samples.data.abs().max()) > 0.05  # speech, not silence


def test_improvised_only_keeps_improvised_dialogs(synthetic_corpus, tmp_path):
    dataset = load_iemocap(synthetic_corpus.path, improvised_only=True, cache_dir=tmp_path)
    improvised = [u for u in synthetic_corpus.utterances if u.improvised]
    assert _label_counts(dataset) == _by_session(improvised, FOUR_CLASS)
    assert all(all(ds["improvised"]) for ds in dataset.values())


def test_parquet_export_reads_back_without_the_corpus(tiny_corpus, tmp_path):
    corpus = shutil.copytree(tiny_corpus.path, tmp_path / "IEMOCAP_full_release")
    out = tmp_path / "parquet"
    corpus_command(
        ["iemocap", "--data_dir", str(corpus), "--config", "4class", "--out", str(out), "--cache_dir", str(tmp_path)]
    )
    shutil.rmtree(corpus)
    shutil.rmtree(tmp_path / "iemocap")  # the Arrow cache, whose audio pointed into the corpus
    files = {p.stem: str(p) for p in sorted(out.glob("*.parquet"))}
    assert list(files) == [f"session{s}" for s in range(1, 6)]
    dataset = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "reread"))
    assert _label_counts(dataset) == _by_session(tiny_corpus.utterances, FOUR_CLASS)
    assert dataset["session2"].features["label"].names == ["neutral", "happy", "angry", "sad"]
    row = dataset["session5"][0]
    samples = row["audio"].get_all_samples()
    assert samples.sample_rate == 16000
    assert abs(samples.data.shape[1] / 16000 - (row["end"] - row["start"])) < 1e-3


# --- on hand-made trees -------------------------------------------------------------------------------------------

_TREE = {  # dialog -> [(utterance id, code, start, end, text)]
    "Ses01F_impro01": [
        ("Ses01F_impro01_F000", "neu", 1.0, 1.5, "Excuse me."),
        ("Ses01F_impro01_M000", "ang", 2.0, 2.5, "What?"),
        ("Ses01F_impro01_F001", "sad", 3.0, 3.5, "Nothing."),
    ],
    "Ses02M_script01_1": [
        ("Ses02M_script01_1_F000", "hap", 1.0, 1.5, "Great."),
        ("Ses02M_script01_1_M000", "exc", 2.0, 2.5, "Yes!"),
    ],
}


def _summary_line(uid: str, code: str, start: float, end: float) -> str:
    return f"[{start:.4f} - {end:.4f}]\t{uid}\t{code}\t[2.5000, 3.0000, 3.5000]"


def _make_tree(root: Path) -> Path:
    """A minimal valid IEMOCAP_full_release: two sessions, five labelled utterances, 0.5 s tone wavs."""
    tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(8000) / 16000) * 32767).astype(np.int16)
    for dialog, utterances in _TREE.items():
        session = root / f"Session{int(dialog[3:5])}"
        labels = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        transcript = []
        for uid, code, start, end, text in utterances:
            labels += [_summary_line(uid, code, start, end), "C-E2:\tNeutral state;\t()", ""]
            transcript.append(f"{uid} [{start:08.4f}-{end:08.4f}]: {text}")
            wav = session / "sentences" / "wav" / dialog / f"{uid}.wav"
            wav.parent.mkdir(parents=True, exist_ok=True)
            sf.write(wav, tone, 16000, subtype="PCM_16")
        for folder, lines, newline in (("EmoEvaluation", labels, "\n"), ("transcriptions", transcript, "\r\n")):
            path = session / "dialog" / folder / f"{dialog}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes((newline.join(lines) + newline).encode())
    return root


def _labels(root: Path, dialog: str) -> Path:
    return root / f"Session{int(dialog[3:5])}" / "dialog" / "EmoEvaluation" / f"{dialog}.txt"


def _transcript(root: Path, dialog: str) -> Path:
    return root / f"Session{int(dialog[3:5])}" / "dialog" / "transcriptions" / f"{dialog}.txt"


def _wav(root: Path, uid: str) -> Path:
    dialog = uid.rsplit("_", 1)[0]
    return root / f"Session{int(dialog[3:5])}" / "sentences" / "wav" / dialog / f"{uid}.wav"


@pytest.fixture
def tree(tmp_path) -> Path:
    return _make_tree(tmp_path / "IEMOCAP_full_release")


def test_hand_made_tree_builds_with_sessions_that_exist(tree, tmp_path):
    dataset = load_iemocap(tree, cache_dir=tmp_path / "cache")
    assert sorted(dataset) == ["session1", "session2"]
    assert dataset["session2"]["label"] == [1, 1]  # hap and exc are both happy
    assert dataset["session1"]["text"] == ["Excuse me.", "What?", "Nothing."]


def test_missing_data_dir_names_the_path_and_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere.*IEMOCAP_full_release.*Session1"):
        load_iemocap(tmp_path / "nowhere", cache_dir=tmp_path)


def test_directory_without_sessions_is_not_iemocap_and_the_error_points_inside(tree, tmp_path):
    with pytest.raises(ValueError, match=r"expected Session1 \.\.\. Session5.*did you mean .*IEMOCAP_full_release"):
        load_iemocap(tree.parent, cache_dir=tmp_path / "cache")


def test_session_missing_a_folder_names_it(tree, tmp_path):
    shutil.rmtree(tree / "Session2" / "sentences")
    with pytest.raises(ValueError, match=r"missing directories: .*Session2/sentences/wav"):
        load_iemocap(tree, cache_dir=tmp_path / "cache")


def test_all_problems_are_listed_at_once_and_can_be_skipped(tree, tmp_path, caplog):
    _wav(tree, "Ses01F_impro01_F001").unlink()
    transcript = _transcript(tree, "Ses01F_impro01")
    transcript.write_bytes(b"".join(x for x in transcript.read_bytes().splitlines(True) if b"_M000" not in x))
    labels = _labels(tree, "Ses02M_script01_1")
    labels.write_text(labels.read_text() + "[3.0000 - 3.5000]\tSes02M_script01_1_F001\tneu\t[2.5, 3.0]\n")
    _wav(tree, "Ses02M_script01_1_M000").write_bytes(b"RIFF....WAVEjunk")

    with pytest.raises(ValueError) as error:
        load_iemocap(tree, cache_dir=tmp_path / "cache")
    message = str(error.value)
    assert "4 problem(s)" in message
    assert f"{_labels(tree, 'Ses01F_impro01')}:6: no transcript line for Ses01F_impro01_M000" in message
    assert f"{_labels(tree, 'Ses01F_impro01')}:9: no wav for this utterance" in message
    assert f"{labels}:9: malformed summary line" in message
    assert f"{labels}:6: unreadable wav {_wav(tree, 'Ses02M_script01_1_M000')}" in message

    with caplog.at_level(logging.WARNING, logger="dataset_scripts.iemocap.iemocap"):
        dataset = load_iemocap(tree, skip_invalid=True, cache_dir=tmp_path / "cache")
    assert {split: ds["id"] for split, ds in dataset.items()} == {
        "session1": ["Ses01F_impro01_F000"],
        "session2": ["Ses02M_script01_1_F000"],
    }
    assert "skipped 4 labelled utterance(s)" in caplog.text


def test_missing_transcript_file_costs_all_its_utterances_and_time_mismatch_is_reported(tree, tmp_path):
    _transcript(tree, "Ses02M_script01_1").unlink()
    transcript = _transcript(tree, "Ses01F_impro01")
    transcript.write_bytes(transcript.read_bytes().replace(b"[001.0000-001.5000]", b"[001.0000-001.9000]"))
    with pytest.raises(ValueError) as error:
        load_iemocap(tree, cache_dir=tmp_path / "cache")
    message = str(error.value)
    assert "affecting 3 labelled utterance(s)" in message
    assert "Ses02M_script01_1.txt: transcript file missing; 2 labelled utterances" in message
    assert "times [1.0 - 1.5] of Ses01F_impro01_F000 differ from [1.0-1.9]" in message


def test_unknown_config_is_rejected(tree, tmp_path):
    with pytest.raises(ValueError, match=r"'5class' not found"):
        load_iemocap(tree, "5class", cache_dir=tmp_path / "cache")


def test_config_that_keeps_nothing_is_an_error_and_empty_sessions_have_no_split(tree, tmp_path):
    dataset = load_iemocap(tree, improvised_only=True, cache_dir=tmp_path / "cache")
    assert list(dataset) == ["session1"]  # Session2 has only a scripted dialog
    shutil.rmtree(tree / "Session1")
    with pytest.raises(ValueError, match="no labelled utterances .* are kept"):
        load_iemocap(tree, improvised_only=True, cache_dir=tmp_path / "cache")


def test_editing_the_corpus_rebuilds_instead_of_reusing_a_stale_cache(tree, tmp_path):
    assert load_iemocap(tree, cache_dir=tmp_path / "cache")["session1"]["raw_label"][1] == "ang"
    labels = _labels(tree, "Ses01F_impro01")
    labels.write_text(labels.read_text().replace("\tang\t", "\tsad\t"))
    assert load_iemocap(tree, cache_dir=tmp_path / "cache")["session1"]["raw_label"][1] == "sad"
