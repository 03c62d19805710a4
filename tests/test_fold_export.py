"""The folds as EmoBox-style JSONL (train.py --export_folds): identical splits for other toolkits, each path a file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import soundfile as sf

from mer.training.arguments import Arguments
from mer.training.fold_export import export_folds
from mer.training.protocol import load_corpus

REPO = Path(__file__).resolve().parents[1]
EMOBOX_KEYS = {"key", "dataset", "wav", "type", "sample_rate", "num_frame", "task", "length", "emo", "channel"}


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_fold_is_tested_once_and_trained_on_by_the_others(tiny_corpus, tmp_path):
    corpus = load_corpus(Arguments(data_dir=str(tiny_corpus.path)))
    written = export_folds(corpus, tmp_path / "folds", str(tiny_corpus.path))
    every = read(written["all"])
    assert written["all"] == tmp_path / "folds" / "corpus.jsonl"
    assert [row["id"] for row in every] == [i for fold in corpus.fold_names for i in corpus.folds[fold]["id"]]
    for number, fold in enumerate(corpus.fold_names, start=1):
        test = read(tmp_path / "folds" / f"fold_{number}" / f"corpus_test_fold_{number}.jsonl")
        train = read(tmp_path / "folds" / f"fold_{number}" / f"corpus_train_fold_{number}.jsonl")
        assert [row["id"] for row in test] == corpus.folds[fold]["id"]
        assert {row["fold"] for row in test} == {fold} and fold not in {row["fold"] for row in train}
        assert len(train) + len(test) == len(every)
    first = every[0]
    assert {"id", "path", "label", "fold"} | EMOBOX_KEYS == set(first)
    assert first["path"] == first["wav"] and Path(first["path"]).is_file()
    info = sf.info(first["path"])
    assert first["sample_rate"] == info.samplerate and first["length"] == round(info.duration, 4)
    assert first["key"] == f"corpus-{first['id']}" and first["type"] == "raw" and first["task"] == "category"
    # `label` is the class trained on; `emo` the corpus's own code, as EmoBox keeps it.
    merged = [row for row in every if row["emo"] == "exc"]
    assert merged and {row["label"] for row in merged} == {"happy"}
    assert json.loads((tmp_path / "folds" / "label_map.json").read_text())["exc"] == "happy"


def test_audio_held_as_bytes_is_written_out(tiny_corpus, tmp_path):
    folds = load_corpus(Arguments(data_dir=str(tiny_corpus.path))).folds
    table = datasets.concatenate_datasets(
        [folds[name].select(range(2)) for name in ("session1", "session2", "session3")]
    )
    table = table.select_columns(["audio", "text", "label", "speaker", "session"])
    embedded = table.cast_column("audio", datasets.Audio(decode=False)).map(
        lambda row: {"audio": {"bytes": Path(row["audio"]["path"]).read_bytes(), "path": None}}
    )
    embedded.to_parquet(tmp_path / "mine.parquet")
    corpus = load_corpus(Arguments(dataset=str(tmp_path / "mine.parquet"), validation_strategy="utterance"))
    written = export_folds(corpus, tmp_path / "folds", str(tmp_path / "mine.parquet"))
    rows = read(written["all"])
    assert len(rows) == 6 and rows[0]["id"] == f"{rows[0]['fold']}-0" and rows[0]["dataset"] == "mine_parquet"
    for row in rows:
        assert Path(row["path"]).parent.parent == (tmp_path / "folds" / "audio").resolve()
        assert abs(sf.info(row["path"]).duration - row["length"]) < 1e-3


def test_train_py_exports_the_folds_and_stops_without_any_model(tiny_corpus, tmp_path):
    """The README's command: no encoder is loaded (the default Hub ids cannot be reached offline), nothing trains."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ACCELERATE_")}
    environment.update(HF_HUB_OFFLINE="1", HF_DATASETS_CACHE=str(tmp_path / "datasets"))
    command = [sys.executable, str(REPO / "train.py"), "--data_dir", str(tiny_corpus.path)]
    result = subprocess.run(
        [*command, "--export_folds", str(tmp_path / "folds"), "--output_dir", str(tmp_path / "run")],
        env=environment, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Wrote the 5 folds as EmoBox-style JSONL" in result.stderr
    session3 = load_corpus(Arguments(data_dir=str(tiny_corpus.path))).folds["session3"]
    assert [row["id"] for row in read(tmp_path / "folds" / "fold_3" / "corpus_test_fold_3.jsonl")] == session3["id"]
    assert not (tmp_path / "run").exists()
