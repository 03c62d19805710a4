"""train.py end to end on a small synthetic corpus: files, reproducible saved models, 2 processes, resume, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import HfApi

from dataset_scripts.iemocap import load_iemocap
from dataset_scripts.synthetic import vocabulary
from mer_tools.data import decode_audio
from mer_tools.tiny import build_tiny_encoders
from mer_tools.training import Arguments, check_output_dir, load_folds, parse_config_overrides, push_model_to_hub

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def encoders(tmp_path_factory) -> tuple[str, str]:
    audio_dir, text_dir = build_tiny_encoders(tmp_path_factory.mktemp("train_encoders"), vocabulary())
    return str(audio_dir), str(text_dir)


@pytest.fixture(scope="module")
def environment(tmp_path_factory) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "PYTHONPATH"))}
    cache = tmp_path_factory.mktemp("hf_cache")
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_CACHE=str(cache / "datasets"), HF_MODULES_CACHE=str(cache / "modules"))
    return env


def train_command(corpus, encoders, output_dir, *extra, launcher=()) -> list[str]:
    return [
        *(launcher or [sys.executable]),
        str(REPO / "train.py"),
        "--data_dir", str(corpus.path),
        "--audio_model", encoders[0],
        "--text_model", encoders[1],
        "--output_dir", str(output_dir),
        "--folds", "1",
        "--batch_size", "8",
        "--group_by_length", "false",
        "--learning_rate", "3e-3",
        "--encoder_learning_rate", "3e-3",
        "--num_workers", "0",
        "--config_overrides", "fusion_hidden_size=16,fusion_num_heads=2",
        *extra,
    ]  # fmt: skip


def two_process_launcher(port: int) -> list[str]:
    """`accelerate launch` with two CPU processes (with ACCELERATE_USE_CPU=1 in the environment: gloo backend)."""
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    return [
        accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
    ]  # fmt: skip


def run(command, env, cwd, timeout=600) -> subprocess.CompletedProcess:
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


@pytest.fixture(scope="module")
def one_process_run(synthetic_corpus, encoders, environment, tmp_path_factory) -> Path:
    output_dir = tmp_path_factory.mktemp("run") / "one"
    extra = ("--num_epochs", "4", "--early_stopping_patience", "9", "--report_to", "tensorboard")
    command = train_command(synthetic_corpus, encoders, output_dir, *extra)
    run(command, environment, cwd=output_dir.parent)
    return output_dir


def test_training_writes_results_models_and_card(one_process_run, synthetic_corpus):
    fold = one_process_run / "session1"
    for name in ("results.json", "README.md", "run_args.json"):
        assert (one_process_run / name).is_file(), name
    for name in ("metrics.json", "predictions.json", "confusion.png"):
        assert (fold / name).is_file(), name
    saved = {p.name for p in (fold / "model").iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "modeling_mer.py",
        "configuration_mer.py",
        "processing_mer.py",
    } <= saved
    assert "processor_config.json" in saved
    assert not (fold / "checkpoint.partial").exists() and not (fold / "model.staging").exists()

    metrics = json.loads((fold / "metrics.json").read_text())
    history = metrics["history"]
    assert len(history) == 4
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert metrics["best_epoch"] == 1 + int(np.argmax([epoch["val_ua"] for epoch in history]))
    for condition in ("test", "test_audio_only", "test_text_only"):
        assert 0 <= metrics[condition]["wa"] <= 1 and 0 <= metrics[condition]["ua"] <= 1

    results = json.loads((one_process_run / "results.json").read_text())
    assert results["folds"]["session1"]["test"]["wa"] == metrics["test"]["wa"]
    assert results["mean"]["test_ua"] == metrics["test"]["ua"]
    assert results["environment"]["num_processes"] == 1
    assert list(one_process_run.rglob("events.out.tfevents.*")), "no TensorBoard log"
    card = (one_process_run / "README.md").read_text()
    assert "model-index" in card and "| session1 |" in card and "trust_remote_code=True" in card


def test_every_test_utterance_is_scored_once(one_process_run, synthetic_iemocap):
    predictions = json.loads((one_process_run / "session1" / "predictions.json").read_text())
    expected_ids = sorted(synthetic_iemocap["session1"]["id"])
    assert [row["id"] for row in predictions] == expected_ids
    metrics = json.loads((one_process_run / "session1" / "metrics.json").read_text())
    assert metrics["test"]["num_examples"] == len(expected_ids)


CLEAN_PREDICTOR = """
import importlib.util, json, sys
sys.path.append({site_packages!r})
assert importlib.util.find_spec("modeling_mer") is None and importlib.util.find_spec("mer_tools") is None
import numpy as np, torch
from transformers import AutoModelForAudioClassification, AutoProcessor

model_dir, inputs = sys.argv[1], np.load(sys.argv[2], allow_pickle=True)
model = AutoModelForAudioClassification.from_pretrained(model_dir, trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained(model_dir, trust_remote_code=True)
rows = []
for wave, text, utterance in zip(inputs["audio"], inputs["text"], inputs["id"]):
    with torch.no_grad():
        probabilities = model(**processor(audio=wave, text=str(text), sampling_rate=16000)).logits.softmax(-1)[0]
    rows.append({{"id": str(utterance), "probabilities": probabilities.tolist()}})
print(json.dumps(rows))
"""


def test_saved_model_reproduces_the_reported_predictions_in_a_clean_process(
    one_process_run, synthetic_corpus, environment, tmp_path
):
    session = load_iemocap(synthetic_corpus.path, "4class", cache_dir=tmp_path / "cache")["session1"]
    waves = np.empty(len(session), dtype=object)
    waves[:] = [decode_audio(row["audio"])[0][0].numpy() for row in session]
    np.savez(tmp_path / "inputs.npz", audio=waves, text=np.array(session["text"]), id=np.array(session["id"]))

    script = CLEAN_PREDICTOR.format(site_packages=sysconfig.get_paths()["purelib"])
    model_dir = one_process_run / "session1" / "model"
    result = run(
        [sys.executable, "-S", "-c", script, str(model_dir), str(tmp_path / "inputs.npz")], environment, tmp_path
    )
    reproduced = {row["id"]: row["probabilities"] for row in json.loads(result.stdout.strip().splitlines()[-1])}

    reported = json.loads((one_process_run / "session1" / "predictions.json").read_text())
    for row in reported:
        assert int(np.argmax(reproduced[row["id"]])) == row["prediction"], row["id"]
        np.testing.assert_allclose(reproduced[row["id"]], row["probabilities"], atol=1e-4)


def test_two_processes_score_the_same_utterances(one_process_run, synthetic_corpus, encoders, environment, tmp_path):
    output_dir = tmp_path / "two"
    env = {**environment, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    extra = ("--num_epochs", "1", "--ablations", "false")
    run(
        train_command(synthetic_corpus, encoders, output_dir, *extra, launcher=two_process_launcher(29517)),
        env,
        tmp_path,
    )

    two = json.loads((output_dir / "session1" / "metrics.json").read_text())
    one = json.loads((one_process_run / "session1" / "metrics.json").read_text())
    assert two["test"]["num_examples"] == one["test"]["num_examples"]
    predicted_ids = [row["id"] for row in json.loads((output_dir / "session1" / "predictions.json").read_text())]
    assert len(predicted_ids) == len(set(predicted_ids)) == one["test"]["num_examples"]
    assert json.loads((output_dir / "results.json").read_text())["environment"]["num_processes"] == 2


def test_a_killed_run_resumes_where_it_stopped(synthetic_corpus, encoders, environment, tmp_path):
    output_dir = tmp_path / "resumed"
    command = train_command(synthetic_corpus, encoders, output_dir, "--num_epochs", "3", "--ablations", "false")
    process = subprocess.Popen(
        command, env=environment, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    state = output_dir / "session1" / "checkpoint" / "state.json"
    deadline = time.monotonic() + 300
    while not state.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert state.exists(), "no checkpoint was written"
    process.send_signal(signal.SIGKILL)
    process.wait()
    stopped_after = json.loads(state.read_text())["epoch"]
    assert stopped_after < 3 and not (output_dir / "session1" / "metrics.json").exists()

    resumed = run(command, environment, tmp_path)
    assert f"session1: resuming after epoch {stopped_after}" in resumed.stderr
    metrics = json.loads((output_dir / "session1" / "metrics.json").read_text())
    assert [epoch["epoch"] for epoch in metrics["history"]] == [1, 2, 3]

    again = run(command, environment, tmp_path)
    assert "session1 is finished already" in again.stderr


def test_a_different_run_in_the_output_dir_is_refused(one_process_run, synthetic_corpus):
    args = Arguments(data_dir=str(synthetic_corpus.path), output_dir=str(one_process_run), num_epochs=7)
    with pytest.raises(ValueError, match=r"holds a different run \(it differs in \['audio_model', .*'num_epochs'"):
        check_output_dir(one_process_run, args)


def test_errors_before_training(synthetic_corpus, encoders, environment, tmp_path):
    result = subprocess.run(
        train_command(synthetic_corpus, (str(tmp_path / "missing"), encoders[1]), tmp_path / "out"),
        env=environment, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0
    assert "Cannot load the audio model" in result.stderr and str(tmp_path / "missing") in result.stderr
    assert not (tmp_path / "out").exists()


def test_dataset_without_the_required_columns_is_refused(synthetic_iemocap, tmp_path):
    for split, dataset in synthetic_iemocap.items():
        dataset.remove_columns(["text"]).to_parquet(tmp_path / f"{split}.parquet")
    args = Arguments(dataset=str(tmp_path), output_dir=str(tmp_path / "out"))
    with pytest.raises(ValueError, match=r"lacks the columns \['text'\]"):
        load_folds(args)


def test_label_set_that_disagrees_with_the_config_is_refused(synthetic_corpus):
    data = load_folds(Arguments(data_dir=str(synthetic_corpus.path)))
    assert data.label_names == ["neutral", "happy", "angry", "sad"]
    overrides = parse_config_overrides('id2label={"0": "calm", "1": "excited"}')
    with pytest.raises(ValueError, match="does not match the dataset's classes"):
        data.check_labels(overrides)


def test_unknown_config_fields_are_refused():
    with pytest.raises(ValueError, match=r"unknown MERConfig fields \['fusion_layers'\]"):
        parse_config_overrides("fusion_layers=3")
    with pytest.raises(ValueError, match="fusion_direction must be one of"):
        parse_config_overrides("fusion_direction=up")


def test_push_to_hub_sends_model_code_processor_and_card(one_process_run, monkeypatch):
    sent = {}

    def create_repo(self, repo_id, **kwargs):
        sent["repo"] = (repo_id, kwargs.get("repo_type"), kwargs.get("private"))
        return f"https://huggingface.co/{repo_id}"

    def create_commit(self, repo_id, operations, **kwargs):
        sent["files"] = sorted(operation.path_in_repo for operation in operations)
        sent["repo_type"] = kwargs.get("repo_type")
        raise RuntimeError("recorded")  # nothing leaves this machine

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    with pytest.raises(RuntimeError, match="recorded"):
        push_model_to_hub(one_process_run / "session1" / "model", one_process_run / "README.md", "someone/mer", True)

    assert sent["repo"] == ("someone/mer", "model", True)
    assert sent["repo_type"] == "model"
    expected = {"config.json", "model.safetensors", "modeling_mer.py", "configuration_mer.py", "processing_mer.py"}
    assert expected | {"processor_config.json", "tokenizer.json", "README.md"} <= set(sent["files"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"folds": [0, 6]}, r"--folds \[0, 6\] out of range: there are 5 folds"),
        (
            {"push_to_hub": True, "hub_model_id": "a/b", "push_fold": "session9"},
            "--push_fold 'session9' is not a fold",
        ),
    ],
)
def test_fold_choices_are_checked_against_the_corpus(kwargs, message):
    names = [f"session{k}" for k in range(1, 6)]
    with pytest.raises(ValueError, match=message):
        Arguments(data_dir="corpus", **kwargs).selected_folds(names)


def test_push_needs_a_repository_and_a_model_to_push():
    with pytest.raises(ValueError, match="--push_to_hub needs --hub_model_id"):
        Arguments(data_dir="corpus", push_to_hub=True).check()
    with pytest.raises(ValueError, match="--push_fold <fold> or --final_fit"):
        Arguments(data_dir="corpus", push_to_hub=True, hub_model_id="a/b").check()


def test_output_dir_that_is_not_a_run_or_has_nothing_to_resume_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="is not empty and holds no MER run"):
        check_output_dir(tmp_path, Arguments(data_dir="corpus", output_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="holds no run to resume"):
        check_output_dir(tmp_path / "new", Arguments(data_dir="corpus", resume_from_checkpoint=True))


GRADIENT_PROBE = """
import sys, torch
from accelerate import Accelerator
from dataset_scripts.iemocap import load_iemocap
from mer_tools.data import MERCollator, UtteranceDataset
from modeling_mer import MERModel, MERProcessor

corpus, audio_model, text_model, out = sys.argv[1:5]
accelerator = Accelerator()
utterances = UtteranceDataset(load_iemocap(corpus, "4class")["session2"])
items = [utterances[i] for i in range(12)]
torch.manual_seed(0)
model = MERModel.from_audio_text_pretrained(
    audio_model, text_model, fusion_hidden_size=16, fusion_num_heads=2, use_cross_pair_task=False,
    use_consistency_task=False,
)
for module in model.modules():
    if isinstance(module, torch.nn.Dropout):
        module.p = 0.0
model = accelerator.prepare(model).train()
share = len(items) // accelerator.num_processes
mine = items[accelerator.process_index * share : (accelerator.process_index + 1) * share]
batch = MERCollator(MERProcessor.from_audio_text_pretrained(audio_model, text_model))(mine)
accelerator.backward(model(**batch).loss)
if accelerator.is_main_process:
    parameters = accelerator.unwrap_model(model).parameters()
    torch.save(torch.cat([p.grad.flatten() for p in parameters if p.grad is not None]), out)
"""


def test_two_processes_compute_the_gradient_of_the_whole_batch(synthetic_corpus, encoders, environment, tmp_path):
    """Each process takes half of a batch (padded differently); DDP must give the full batch's gradient."""
    script = tmp_path / "probe.py"
    script.write_text(GRADIENT_PROBE)
    arguments = [str(synthetic_corpus.path), *encoders]
    env = {**environment, "PYTHONPATH": str(REPO)}
    run([sys.executable, str(script), *arguments, str(tmp_path / "one.pt")], env, tmp_path)
    run(
        [*two_process_launcher(29518), str(script), *arguments, str(tmp_path / "two.pt")],
        {**env, "ACCELERATE_USE_CPU": "1"},
        tmp_path,
    )

    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert one.shape == two.shape and one.abs().max() > 0
    # Summation order differs between one batch and two halves: equal up to float rounding.
    torch.testing.assert_close(two, one, atol=1e-4 * one.abs().max().item(), rtol=0)
