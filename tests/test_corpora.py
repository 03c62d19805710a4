"""Public corpora by name in train.py: the shared label space, the within-corpus and leave-one-corpus-out protocols
on two small corpora in their release layouts (RAVDESS at 48 kHz, EmoDB at 22.05 kHz), and what bad input gets."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from release_fixtures import write_clip, write_emodb, write_ravdess

from dataset_scripts.emodb import FOLDS as EMODB_FOLDS
from dataset_scripts.labels import CORPUS_LABELS, SHARED_CLASSES, parse_classes, shared_label
from dataset_scripts.ravdess import FOLDS as RAVDESS_FOLDS
from mer.training.arguments import Arguments
from mer.training.fold_export import export_folds
from mer.training.protocol import describe_protocol, load_corpus, plan_folds

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> dict[str, Path]:
    """RAVDESS with neutral, calm, happy, sad, angry (calm has no place among the 4 classes) and EmoDB with
    neutral, happiness, anger, sadness and boredom."""
    root = tmp_path_factory.mktemp("releases")
    return {
        "ravdess": write_ravdess(root / "RAVDESS", emotions=("01", "02", "03", "04", "05")),
        "emodb": write_emodb(root / "emodb", emotions="NFWTL"),
    }


def corpus_arguments(releases, **kwargs) -> Arguments:
    """The small trees lack most of the releases' files: accepted on purpose."""
    return Arguments(corpus=[f"{name}={path}" for name, path in releases.items()], allow_incomplete=True, **kwargs)


@pytest.fixture(scope="module")
def within(releases, tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("cache")))
    return load_corpus(corpus_arguments(releases))


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_every_corpus_label_has_a_shared_class_or_none_and_the_four_classes_come_first():
    assert SHARED_CLASSES[:4] == ("neutral", "happy", "angry", "sad")
    for corpus, mapping in CORPUS_LABELS.items():
        assert set(mapping.values()) - {None} <= set(SHARED_CLASSES), corpus
        assert {"neutral", "happy", "angry", "sad"} <= set(mapping.values()), corpus
    assert shared_label("iemocap", "exc") == "happy" and shared_label("emodb", "boredom") == "bored"
    assert shared_label("msp_podcast", "X") is None and shared_label("tess", "ps") == "surprised"
    with pytest.raises(ValueError, match=r"ravdess has no label 'joy'; its labels are \['angry', 'calm'"):
        shared_label("ravdess", "joy")
    assert parse_classes("angry, sad") == ["angry", "sad"] and parse_classes("all") == list(SHARED_CLASSES)
    for text, message in (("angry,joy", r"\['joy'\] are not shared classes"), ("sad,sad", "given twice"),
                          ("sad", "at least two")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            parse_classes(text)


def test_within_corpus_rounds_test_every_utterance_once_with_speakers_apart(within, releases):
    rounds = max(len(RAVDESS_FOLDS), len(EMODB_FOLDS))
    assert within.fold_names == [f"fold{i}" for i in range(1, rounds + 1)]
    assert within.label_names == ["neutral", "happy", "angry", "sad"]
    # calm (RAVDESS) and boredom (EmoDB) are dropped and counted
    assert within.parts["ravdess"].dropped == {"calm": 24} and within.parts["emodb"].dropped == {"boredom": 10}
    tested = Counter(i for fold in within.fold_names for i in within.test_set(fold)["id"])
    assert len(tested) == 24 * 4 + 10 * 4 and set(tested.values()) == {1}
    # round i tests the i-th fold of each corpus; the corpus with fewer folds only trains in the last round
    last = within.test_set(f"fold{rounds}")
    assert set(last["corpus"]) == {"ravdess" if len(RAVDESS_FOLDS) > len(EMODB_FOLDS) else "emodb"}
    first = within.test_set("fold1")
    expected = {f"ravdess/Actor_{actor}" for actor in RAVDESS_FOLDS[1]} | {f"emodb/{s}" for s in EMODB_FOLDS[1]}
    assert set(first["speaker"]) == expected
    plan = plan_folds(within, corpus_arguments(releases))
    for split in plan:
        validation = set(split.validation["speaker"])
        assert {speaker.split("/")[0] for speaker in validation} == {"ravdess", "emodb"}  # each corpus validates
        assert not validation & set(split.train["speaker"]) and not set(split.test["speaker"]) & set(
            split.train["speaker"]
        )
        assert len(split.train) + len(split.validation) + len(split.test) == 24 * 4 + 40
    line = describe_protocol(corpus_arguments(releases), within, plan)
    assert "Within each corpus: round i tests the i-th fold" in line and "RAVDESS (96 utterances, 24 dropped" in line


def test_leave_one_corpus_out_tests_each_corpus_whole(releases):
    corpus = load_corpus(corpus_arguments(releases, protocol="leave-one-corpus-out"))
    assert corpus.fold_names == ["emodb", "ravdess"]
    plan = plan_folds(corpus, corpus_arguments(releases, protocol="leave-one-corpus-out"))
    for split in plan:
        assert set(split.test["corpus"]) == {split.name}
        assert set(split.train["corpus"]) == set(split.validation["corpus"]) == {"emodb", "ravdess"} - {split.name}


def test_fold_export_writes_each_corpus_on_its_own_folds(within, tmp_path):
    written = export_folds(within, tmp_path, "unused")
    for name, folds in (("ravdess", RAVDESS_FOLDS), ("emodb", EMODB_FOLDS)):
        rows = [json.loads(line) for line in (tmp_path / name / f"{name}.jsonl").read_text().splitlines()]
        assert len(rows) == {"ravdess": 96, "emodb": 40}[name] and rows[0]["key"].startswith(f"{name}-")
        for number in folds:
            test = (tmp_path / name / f"fold_{number}" / f"{name}_test_fold_{number}.jsonl").read_text().splitlines()
            train = (tmp_path / name / f"fold_{number}" / f"{name}_train_fold_{number}.jsonl").read_text().splitlines()
            assert len(test) + len(train) == len(rows)
    assert json.loads((tmp_path / "emodb" / "label_map.json").read_text())["anger"] == "angry"
    assert f"ravdess/fold{len(RAVDESS_FOLDS)}/test" in written


def test_bad_corpus_arguments_are_refused_naming_them(releases, tmp_path):
    ravdess = f"ravdess={releases['ravdess']}"
    cases = [
        ([ravdess, ravdess], "--corpus ravdess is given twice"),
        (["savee=/tmp"], r"unknown corpus 'savee'; the corpora are \['cremad'"),
        ([f"ravdess={tmp_path / 'absent'}"], "no such directory; expected the RAVDESS release"),
        (["ravdess"], "expected name=directory"),
    ]
    for values, message in cases:
        with pytest.raises(ValueError, match=message):
            Arguments(corpus=values).check()
    with pytest.raises(ValueError, match="leave-one-corpus-out needs at least two corpora"):
        Arguments(corpus=[ravdess], protocol="leave-one-corpus-out").check()
    with pytest.raises(ValueError, match="exactly one of --data_dir"):
        Arguments(corpus=[ravdess], data_dir="x").check()
    write_clip(tmp_path / "other" / "hello.wav")
    with pytest.raises(ValueError, match=r"does not hold RAVDESS: expected .*; it holds \['hello.wav'\]\.$"):
        load_corpus(Arguments(corpus=[f"ravdess={tmp_path / 'other'}"]))


def test_a_folder_of_another_corpus_is_refused_before_any_corpus_is_built(releases, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    swapped = [f"ravdess={releases['ravdess']}", f"emodb={releases['ravdess']}"]
    with pytest.raises(ValueError, match=r"does not hold EmoDB: expected .*wav/ folder.* It looks like RAVDESS\.$"):
        load_corpus(Arguments(corpus=swapped, allow_incomplete=True))
    assert not (tmp_path / "cache").exists()  # RAVDESS, named first, was not built


def test_an_incomplete_copy_stops_the_run_with_its_counts_unless_allowed(releases, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    args = Arguments(corpus=[f"emodb={releases['emodb']}"])
    for _ in ("built", "cached"):  # the stored check answers the second time
        with pytest.raises(ValueError, match=r"is not the whole release: 50 of the 535 documented files are here "
                                             r"\(485 missing, e\.g\. .*--allow_incomplete"):  # fmt: skip
            load_corpus(args)
    corpus = load_corpus(replace(args, allow_incomplete=True))
    assert corpus.parts["emodb"].check.found == 50
    line = describe_protocol(args, corpus, plan_folds(corpus, args))
    assert "this copy against the release's 535 files: 485 missing" in line


def test_classes_no_corpus_has_get_no_output_unit_and_unseen_test_classes_are_refused(releases, tmp_path):
    everything = load_corpus(corpus_arguments(releases, classes="all"))
    assert "frustrated" not in everything.label_names and "contemptuous" not in everything.label_names
    assert {"calm", "bored"} <= set(everything.label_names)
    with pytest.raises(ValueError, match=r"no corpus of this run \(RAVDESS \+ EmoDB\) has frustrated"):
        load_corpus(corpus_arguments(releases, classes="neutral,sad,frustrated"))
    with pytest.raises(ValueError, match=r"RAVDESS is tested with calm \(24 utterances\) that no other corpus trains; "
                                         r"EmoDB is tested with bored \(10 utterances\) that no other corpus trains\. "
                                         r".*--classes neutral,happy,angry,sad\.$"):  # fmt: skip
        load_corpus(corpus_arguments(releases, classes="all", protocol="leave-one-corpus-out"))
    # Only the rounds the run tests count: testing RAVDESS alone, EmoDB's boredom is a class trained, never tested.
    with pytest.raises(ValueError, match=r"leave-one-corpus-out: RAVDESS is tested with calm \(24 utterances\)[^;]*$"):
        load_corpus(corpus_arguments(releases, classes="all", protocol="leave-one-corpus-out", folds=["ravdess"]))


def test_train_py_refuses_bad_input_in_one_line(releases, tmp_path, environment):
    command = [sys.executable, str(REPO / "train.py"), "--corpus", f"emodb={releases['ravdess']}",
               "--output_dir", str(tmp_path / "run"), "--export_folds", str(tmp_path / "folds")]  # fmt: skip
    result = subprocess.run(command, env=environment, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "train.py: error: " in result.stderr and "does not hold EmoDB" in result.stderr


def test_speaker_names_two_corpora_share_stay_apart(releases, tmp_path):
    """RAVDESS's and a second corpus's speakers are told apart by their corpus, even with the same names."""
    corpus = load_corpus(corpus_arguments(releases))
    speakers = set(corpus.test_set("fold1")["speaker"]) | set(corpus.test_set("fold2")["speaker"])
    assert all(speaker.startswith(("ravdess/", "emodb/")) for speaker in speakers)
    assert corpus.speakers_of(corpus.folds["fold1"]) == set(corpus.folds["fold1"]["speaker"])


def test_train_py_pools_corpora_at_different_rates_and_reports_each(releases, tmp_path, environment, tiny_encoders):
    """One command trains on both corpora (48 kHz and 22.05 kHz audio in one batch) and gives each corpus's scores,
    for both protocols."""
    for protocol, fold in (("within-corpus", "1"), ("leave-one-corpus-out", "emodb")):
        out = tmp_path / protocol
        command = [
            sys.executable, str(REPO / "train.py"),
            *[arg for name, path in releases.items() for arg in ("--corpus", f"{name}={path}")],
            "--protocol", protocol, "--folds", fold,
            "--audio_model", tiny_encoders[0], "--text_model", tiny_encoders[1], "--output_dir", str(out),
            "--num_epochs", "1", "--batch_size", "8", "--num_workers", "0", "--ablations", "false",
            "--config_overrides", "fusion_hidden_size=16,fusion_num_heads=2", "--allow_incomplete",
        ]  # fmt: skip
        result = subprocess.run(command, env=environment, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-4000:]
        summary = json.loads((out / "results.json").read_text())
        assert summary["dataset"] == "RAVDESS + EmoDB" and summary["classes"] == ["neutral", "happy", "angry", "sad"]
        tested = summary["corpora"]
        if protocol == "within-corpus":
            assert set(tested) == {"ravdess", "emodb"}
            assert tested["ravdess"]["test_size"] == 4 * len(RAVDESS_FOLDS[1])
            assert "Within each corpus" in summary["protocol"]
        else:
            assert set(tested) == {"emodb"} and tested["emodb"]["test_size"] == 40
            assert "Leave-one-corpus-out" in summary["protocol"]
        assert "| test corpus | tested in |" in summary["table"] and "| test corpus |" in result.stderr
        checks = summary["release_checks"]
        assert (checks["ravdess"]["found"], checks["emodb"]["documented"]) == (120, 535) and not checks["ravdess"][
            "complete"
        ]
        assert "this copy against the release's 1440 files: 1320 missing" in summary["protocol"]
        card = (out / "README.md").read_text()
        assert "dataset:\n      type: emodb" in card or "type: emodb" in card
        assert (out / "folds" / "emodb" / "emodb.jsonl").exists()


def test_an_unreadable_file_stops_the_run_by_name_unless_skipped(releases, tmp_path):
    broken = write_ravdess(tmp_path / "RAVDESS", emotions=("01", "05"))
    bad = broken / "Actor_03" / "03-01-05-01-01-01-03.wav"
    bad.write_bytes(b"RIFF\x00\x00")
    args = Arguments(corpus=[f"ravdess={broken}"], validation_strategy="utterance", allow_incomplete=True)
    with pytest.raises(
        ValueError, match=r"(?s)1 problem\(s\) in RAVDESS corpus .*03-01-05-01-01-01-03.wav: unreadable"
    ):
        load_corpus(args)
    corpus = load_corpus(replace(args, skip_invalid=True))
    assert sum(len(corpus.test_set(fold)) for fold in corpus.fold_names) == 24 * 2 - 1


def test_iemocap_by_name_keeps_its_sessions_and_the_four_class_protocol(synthetic_corpus, synthetic_iemocap):
    corpus = load_corpus(Arguments(corpus=[f"iemocap={synthetic_corpus.path}"]))
    assert corpus.fold_names == ["session1", "session2", "session3", "session4", "session5"]
    for session in corpus.fold_names:
        assert len(corpus.test_set(session)) == len(synthetic_iemocap[session])
    assert "exc" in set(corpus.folds["session1"]["raw_label"]) or "hap" in set(corpus.folds["session1"]["raw_label"])
    assert set(corpus.parts["iemocap"].dropped) <= {"fru", "sur", "fea", "oth", "dis", "xxx"}


def test_dimensions_come_with_iemocap_by_name_and_are_refused_for_a_corpus_without_ratings(synthetic_corpus, releases):
    corpus = load_corpus(Arguments(corpus=[f"iemocap={synthetic_corpus.path}"], dimensions="arousal"))
    rated = {f"iemocap/{u.id}": u.arousal for u in synthetic_corpus.utterances}
    session = corpus.folds["session2"]
    for utterance, value in zip(session["id"], session["arousal"], strict=True):
        assert value == pytest.approx(min(1.0, max(0.0, (rated[utterance] - 1) / 4)))
    pooled = [f"iemocap={synthetic_corpus.path}", f"ravdess={releases['ravdess']}"]
    with pytest.raises(ValueError, match=r"arousal: RAVDESS has no dimensional .* are IEMOCAP, MSP-Podcast\.$"):
        load_corpus(Arguments(corpus=pooled, dimensions="arousal"))


def test_exported_folds_keep_the_release_numbers_when_a_copy_lacks_some(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    root = write_ravdess(tmp_path / "RAVDESS", emotions=("01", "05"))
    for fold in (1, 2, 3):
        for actor in RAVDESS_FOLDS[fold]:
            shutil.rmtree(root / f"Actor_{actor}")
    corpus = load_corpus(Arguments(corpus=[f"ravdess={root}"], allow_incomplete=True))
    assert corpus.fold_names == ["fold4", "fold5", "fold6"]
    export_folds(corpus, tmp_path / "folds", "unused")
    assert sorted(path.name for path in (tmp_path / "folds" / "ravdess").glob("fold_*")) == [
        "fold_4",
        "fold_5",
        "fold_6",
    ]
    test = (tmp_path / "folds" / "ravdess" / "fold_4" / "ravdess_test_fold_4.jsonl").read_text().splitlines()
    assert {json.loads(line)["fold"] for line in test} == {"fold4"}
