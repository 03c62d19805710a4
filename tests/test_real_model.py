"""`make real-model`: the corpora found under a folder, one pooled run on held-out speakers, a served model with its
card (scripts/real_model.py), and the error when nothing is found."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mer.tiny import build_tiny_encoders, build_tiny_whisper

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "space"))

from real_model import find_corpora  # noqa: E402
from release_fixtures import write_emodb, write_ravdess  # noqa: E402


def test_no_corpus_under_the_folder_is_an_error_that_lists_what_was_looked_for(tmp_path):
    (tmp_path / "recordings").mkdir()
    with pytest.raises(ValueError, match=r"No corpus found under .*EmoDB \(.*emodb\).*RAVDESS.*found recordings"):
        find_corpora(tmp_path)
    with pytest.raises(ValueError, match=r"no such directory"):
        find_corpora(tmp_path / "missing")


def test_real_model_trains_on_the_corpora_it_finds_and_publishes_a_model_with_its_card(
    environment, synthetic_corpus, tmp_path
):
    data = tmp_path / "data"
    write_ravdess(data / "RAVDESS")
    write_emodb(data / "EmoDB")
    (data / "MELD").mkdir()  # named after a corpus but not one: skipped, saying why
    (data / "MELD" / "train_sent_emo.csv").write_text("Sr No.,Utterance,Speaker,Emotion\n")
    audio = build_tiny_whisper(tmp_path / "towers")
    _, text = build_tiny_encoders(tmp_path / "towers", "kids are talking by the door".split())
    out = tmp_path / "real"
    command = [
        sys.executable, str(REPO / "scripts" / "real_model.py"), "--corpora", str(data), "--out", str(out),
        "--audio-model", str(audio), "--text-model", str(text),
        "--", "--num_epochs", "1", "--batch_size", "4", "--num_workers", "0", "--allow_incomplete",
    ]  # fmt: skip
    result = subprocess.run(command, env=environment, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Skipped" in result.stdout and "MELD" in result.stdout
    (training,) = [line for line in result.stdout.splitlines() if line.startswith("Training on ")]
    assert "EmoDB" in training and "RAVDESS" in training and "MELD" not in training

    model = out / "model"
    assert (model / "model.safetensors").is_file() and (model / "processor_config.json").is_file()
    card = (model / "README.md").read_text()
    assert "linear probe: frozen speech features" in card and "| emodb |" in card and "| ravdess |" in card
    evaluation = json.loads((model / "config.json").read_text())["evaluation"]
    assert "EmoDB:" in evaluation["trained_on"] and "RAVDESS:" in evaluation["trained_on"]
    assert set(evaluation["corpora"]) == {"emodb", "ravdess"}
    assert "## What this model is" in card and "| EmoDB |" in card and "| RAVDESS |" in card
    assert "Limits: It has heard only" in card and "the transcript carries no emotion there" in card
    assert "min for the whole command" in card and "logical cores" in card  # its time and hardware
    timing = json.loads((out / "training_time.json").read_text())
    assert timing["seconds"] > 0 and len(timing["attempts"]) == 1

    # It loads back through AutoModel, in another process, and mer predict serves it.
    clip = next(synthetic_corpus.path.glob("Session1/sentences/wav/*/*.wav"))  # espeak-ng speech
    load = "from transformers import AutoModel; import sys; print(AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).config.model_type)"  # noqa: E501
    loaded = subprocess.run([sys.executable, "-c", load, str(model)], env=environment, capture_output=True, text=True)
    assert loaded.stdout.strip() == "mer", loaded.stderr[-2000:]
    mer = Path(sys.executable).with_name("mer")
    predictions, transcripts = tmp_path / "predictions.jsonl", tmp_path / "transcripts.csv"
    transcripts.write_text(f"path,transcript\n{clip},kids are talking by the door\n")
    served = subprocess.run(
        [str(mer), "predict", str(clip), "--model", str(model), "--output", str(predictions), "--quiet",
         "--runtime", "eager", "--transcripts", str(transcripts)],
        env=environment, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert served.returncode == 0, served.stderr[-2000:]
    (record,) = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert record["path"] == str(clip.resolve()) and record["model"] == str(model)
    assert record["label"] in ("neutral", "happy", "angry", "sad") and record["error"] is None

    # The Space says what the served model was trained on and what it scored on unheard speakers.
    from app import _provenance

    said = _provenance(evaluation)
    assert "Trained on EmoDB:" in said and "On held-out speakers" in said and "emodb" in said
