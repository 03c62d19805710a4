"""The synthetic corpus: IEMOCAP layout, awkward parts present, deterministic, and labels that need both modalities."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from transformers import BertTokenizer

from dataset_scripts import synthetic
from dataset_scripts.probe_modalities import dimension_probe, loso_scores, modality_features
from dataset_scripts.synthetic import AROUSAL_CENTRES, EMOTION_DESIGN, VALENCE_CENTRES, generate_corpus, vocabulary


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_has_five_sessions_with_both_genders_and_both_dialog_kinds(synthetic_corpus):
    root, utterances = synthetic_corpus.path, synthetic_corpus.utterances
    assert len(utterances) == 20 * 8
    for session in range(1, 6):
        mine = [u for u in utterances if u.session == session]
        assert {u.gender for u in mine} == {"F", "M"}
        assert {u.improvised for u in mine} == {True, False}
        for u in mine:
            base = root / f"Session{session}"
            assert (base / "dialog" / "EmoEvaluation" / f"{u.dialog}.txt").is_file()
            assert (base / "dialog" / "transcriptions" / f"{u.dialog}.txt").is_file()
    wavs = [p for p in root.glob("Session*/sentences/wav/*/*.wav") if not p.name.startswith(".")]
    assert sorted(p.stem for p in wavs) == sorted(u.id for u in utterances)
    for path in wavs[:: max(1, len(wavs) // 20)]:
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")


def test_the_release_awkward_parts_are_written(synthetic_corpus):
    root = synthetic_corpus.path
    transcripts = {p.stem: p.read_bytes() for p in root.glob("Session*/dialog/transcriptions/Ses*.txt")}
    assert all(b"\r\n" in text and b"\n" not in text.replace(b"\r\n", b"") for text in transcripts.values())
    xx_lines = re.findall(rb"^Ses05F_impro03_FXX3 .*$", transcripts["Ses05F_impro03"], flags=re.M)
    assert len(xx_lines) == 2 and xx_lines[1].strip().endswith(b":")  # duplicated, once with empty text
    assert b"\r\nM: Yeah.\r\nF :Here you go.\r\n" in transcripts["Ses01F_script01_1"]
    assert {"Ses05M_script01_1", "Ses05M_script01_1b", "Ses03M_impro05a", "Ses03M_impro05b"} <= set(transcripts)
    texts = [u.text for u in synthetic_corpus.utterances]
    assert any("[LAUGHTER]" in t for t in texts) and any("[breathing]" in t for t in texts)
    assert sum("\t" in t for t in texts) == 1
    vad = [x for u in synthetic_corpus.utterances for x in (u.valence, u.arousal, u.dominance)]
    assert 5.5 in vad and 0.5 in vad
    assert any(u.dialog[5] != u.gender for u in synthetic_corpus.utterances)  # speaker is not the mocap actor
    dotfiles = list(root.rglob("._*"))
    assert {p.suffix for p in dotfiles} == {".wav", ".txt"}
    assert (root / "Session1" / "dialog" / "EmoEvaluation" / "Categorical").is_dir()
    codes = synthetic_corpus.raw_label_counts()
    assert set(codes) == {"neu", "hap", "ang", "sad", "exc", "fru", "xxx", "sur", "fea", "oth", "dis"}


def test_same_seed_gives_identical_files_and_another_seed_other_sentences(tiny_corpus, tmp_path):
    again = synthetic.main(["--out", str(tmp_path / "again"), "--per-dialog", "2", "--seed", "7"])
    assert _files(again.path) == _files(tiny_corpus.path)
    other = generate_corpus(tmp_path / "other", per_dialog=2, seed=8)
    assert [u.text for u in other.utterances] != [u.text for u in tiny_corpus.utterances]


def test_refuses_to_write_into_a_non_empty_directory_unless_told(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        generate_corpus(tmp_path, per_dialog=2)
    with pytest.raises(ValueError, match="per_dialog must be >= 2"):
        generate_corpus(tmp_path / "new", per_dialog=1)


def test_missing_espeak_is_reported(monkeypatch, tmp_path):
    monkeypatch.setattr(synthetic.shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match="espeak-ng"):
        generate_corpus(tmp_path / "corpus", per_dialog=2)


def test_vocabulary_covers_every_transcript_without_unknown_tokens(synthetic_corpus, tiny_corpus):
    words = vocabulary()
    assert len(words) == len(set(words)) < 300
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    tokenizer = BertTokenizer(vocab={token: index for index, token in enumerate(tokens)})  # `vocab_file=` is ignored
    for utterance in synthetic_corpus.utterances + tiny_corpus.utterances:
        assert "[UNK]" not in tokenizer.tokenize(utterance.text), utterance.text


def test_prosody_carries_arousal_as_speaking_rate(synthetic_corpus):
    seconds_per_word: dict[str, list[float]] = {"high": [], "medium": [], "low": []}
    for u in synthetic_corpus.utterances:
        seconds_per_word[u.arousal_level].append((u.end - u.start) / len(u.text.split()))
    high, medium, low = (np.median(seconds_per_word[level]) for level in ("high", "medium", "low"))
    assert high * 1.1 < medium and medium * 1.1 < low


def test_words_carry_valence_and_prosody_arousal_as_designed(synthetic_corpus):
    for u in synthetic_corpus.utterances:
        if u.raw_label != "xxx":
            assert (u.sentence_valence, u.arousal_level) == EMOTION_DESIGN[u.raw_label][:2]
    angry = Counter(w for u in synthetic_corpus.utterances if u.raw_label == "ang" for w in u.text.split())
    happy = Counter(w for u in synthetic_corpus.utterances if u.raw_label == "hap" for w in u.text.split())
    assert "hate" in angry or "terrible" in angry or "awful" in angry
    assert not {"love", "adore", "wonderful", "lovely"} & set(angry)
    assert not {"hate", "loathe", "terrible", "awful"} & set(happy)


def test_each_modality_alone_misses_what_the_other_carries(synthetic_iemocap):
    """Linear probes, leave one session out: text tells neutral from sad but not angry from sad; audio tells angry
    from sad but not happy from angry."""
    matrices = modality_features(synthetic_iemocap)
    names = synthetic_iemocap["session1"].features["label"].names

    def recall(first: str, second: str, modality: str) -> float:
        keep = np.isin(matrices["label"], [names.index(first), names.index(second)])
        return loso_scores(matrices[modality][keep], matrices["label"][keep], matrices["session"][keep])[1]

    assert recall("angry", "sad", "text") < 0.7
    assert recall("neutral", "sad", "text") > 0.9
    assert recall("happy", "angry", "audio") < 0.7
    assert recall("angry", "sad", "audio") > 0.9


def test_speech_carries_arousal_and_words_carry_valence(synthetic_iemocap):
    """Ridge regressions, leave one session out: audio features predict the annotated arousal and words the valence;
    each predicts the other dimension only as far as the emotions tie the two (sad is low and negative); both
    together predict both."""
    ccc = dimension_probe(synthetic_iemocap)
    print("\nleave-one-session-out CCC (ridge regression):")
    for name, scores in ccc.items():
        print(f"  {name:5s} " + "  ".join(f"{dimension} {value:.3f}" for dimension, value in scores.items()))
    assert ccc["audio"]["arousal"] > 0.65 and ccc["audio"]["valence"] < ccc["audio"]["arousal"] - 0.3
    assert ccc["text"]["valence"] > 0.75 and ccc["text"]["arousal"] < ccc["text"]["valence"] - 0.4
    weakest = {name: min(scores["arousal"], scores["valence"]) for name, scores in ccc.items()}
    assert weakest["both"] > 0.55 and weakest["both"] > max(weakest["audio"], weakest["text"]) + 0.25


def test_dimension_ratings_follow_the_words_and_the_prosody(synthetic_corpus):
    for u in synthetic_corpus.utterances:
        if 1 <= u.valence <= 5:  # two ratings are out of range on purpose
            assert abs(u.valence - min(5, max(1, VALENCE_CENTRES[u.sentence_valence]))) <= 0.5
        if 1 <= u.arousal <= 5:
            assert abs(u.arousal - min(5, max(1, AROUSAL_CENTRES[u.arousal_level]))) <= 0.5
