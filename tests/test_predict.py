"""`mer predict`: files and folders of any audio format classified into an appended CSV / JSON Lines file, bad files
listed without stopping the others, transcripts from a CSV or from real speech recognition, and a killed run that
the same command continues."""

from __future__ import annotations

import csv
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import save_tiny_mer, spread_between
from transformers import pipeline

from dataset_scripts.iemocap.iemocap import scan_corpus
from dataset_scripts.long_recording import build_long_recording
from mer.serving import inference
from mer.serving.cli import main
from modeling_mer.pipeline_mer import PIPELINE_TASK

MER = Path(sys.executable).with_name("mer")  # the console script pyproject.toml declares


@pytest.fixture(scope="module")
def models(saved_mer, tiny_encoders, tmp_path_factory) -> tuple[Path, Path]:
    """Two different tiny MER models saved as train.py saves them."""
    return saved_mer, save_tiny_mer(tiny_encoders, tmp_path_factory.mktemp("another-mer"), seed=1)


@pytest.fixture(scope="module")
def recordings(synthetic_corpus, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A folder of recordings as people have them: wav, stereo 44.1 kHz mp3 and 48 kHz flac in a subfolder, plus an
    unreadable wav, a text file and an empty file. Returns the folder and the transcript of each good file."""
    examples, _ = scan_corpus(synthetic_corpus.path)
    chosen = examples[2][:6]
    folder = tmp_path_factory.mktemp("recordings")
    (folder / "calls").mkdir()
    transcripts = {}
    for index, example in enumerate(chosen):
        if index < 3:
            target = folder / f"clip{index}.wav"
            shutil.copy(example["audio"], target)
        else:
            suffix, options = [(".mp3", ["-ac", "2", "-ar", "44100"]), (".flac", ["-ar", "48000"])][index % 2]
            target = folder / "calls" / f"call{index}{suffix}"
            subprocess.run(["ffmpeg", "-v", "error", "-i", example["audio"], *options, str(target)], check=True)
        transcripts[target.name] = example["text"]
    (folder / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(40)))
    (folder / "notes.txt").write_text("meeting notes, not audio\n")
    (folder / "calls" / "empty.m4a").write_bytes(b"")
    return folder, transcripts


def _rows(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _transcripts_csv(path: Path, folder: Path, transcripts: dict[str, str], keep) -> Path:
    """The transcripts of the files `keep` accepts (by name), each row naming its file relative to `folder`."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "transcript"])
        for name, text in transcripts.items():
            if keep(name):
                writer.writerow((next(folder.rglob(name)).relative_to(folder).as_posix(), text))
    return path


def test_a_folder_is_classified_and_bad_files_are_listed_with_their_reason(
    models, recordings, real_asr, tmp_path, capsys
):
    folder, transcripts = recordings
    table = _transcripts_csv(
        tmp_path / "transcripts.csv", folder, transcripts, keep=lambda name: name.startswith("clip")
    )
    output = tmp_path / "emotions.csv"

    status = main(
        ["predict", str(folder), "--model", str(models[0]), "--transcripts", str(table), "--output", str(output),
         "--asr_model", real_asr, "--runtime", "eager", "--batch_size", "2", "--quiet"]
    )  # fmt: skip
    captured = capsys.readouterr()

    assert status == 1  # some files failed
    rows = {Path(row["path"]).name: row for row in _rows(output)}
    assert set(rows) == set(transcripts) | {"broken.wav", "notes.txt", "empty.m4a"}
    for name, text in transcripts.items():
        row = rows[name]
        assert row["error"] == "" and row["label"] in ("neutral", "happy", "angry", "sad")
        scores = [float(row[f"score_{label}"]) for label in ("neutral", "happy", "angry", "sad")]
        assert abs(sum(scores) - 1) < 1e-4 and float(row["score"]) == max(scores)
        if name.startswith("clip"):  # the transcript came from the CSV
            assert (row["transcript"], row["transcript_source"], row["asr_model"]) == (text, "given", "")
        else:  # the CSV misses it: transcribed, and the output says so
            assert (row["transcript_source"], row["asr_model"]) == ("asr", real_asr) and row["transcript"]
    assert "empty" in rows["empty.m4a"]["error"] and "notes.txt" in rows["notes.txt"]["error"]
    assert rows["broken.wav"]["error"]
    assert "3 files could not be classified" in captured.err
    for name in ("broken.wav", "notes.txt", "empty.m4a"):
        assert name in captured.err
    assert "Classified 6 files" in captured.out and "3 transcribed by speech recognition" in captured.out


def test_a_run_continues_where_it_stopped_and_a_cut_record_is_repaired(models, recordings, tmp_path, capsys):
    folder, transcripts = recordings
    table = _transcripts_csv(tmp_path / "transcripts.csv", folder, transcripts, keep=lambda name: True)
    output = tmp_path / "emotions.jsonl"
    arguments = ["predict", str(folder), "--model", str(models[0]), "--transcripts", str(table),
                 "--output", str(output), "--runtime", "eager", "--quiet"]  # fmt: skip
    main(arguments)
    complete = _rows(output)
    good = [row for row in complete if not row["error"]]
    # As a killed run leaves it: the first four records, the fifth cut in the middle of its line.
    lines = output.read_text().splitlines(keepends=True)
    kept = [line for line in lines if not json.loads(line)["error"]][:4]
    output.write_text("".join(kept) + lines[-1][:30])
    capsys.readouterr()

    main(arguments)

    rows = _rows(output)
    assert "4 were already in" in capsys.readouterr().out
    assert sorted(row["path"] for row in rows if not row["error"]) == sorted(row["path"] for row in good)
    assert len({row["path"] for row in rows if not row["error"]}) == len(good)  # nothing classified twice
    # The same answers (batched with other files this time), next to how far apart different files' answers are.
    again = {row["path"]: row["scores"] for row in rows if not row["error"]}
    first = {row["path"]: row["scores"] for row in good}
    spread = spread_between(torch.tensor([list(scores.values()) for scores in first.values()]))
    for path, scores in first.items():
        assert max(abs(again[path][label] - score) for label, score in scores.items()) < 1e-4 * spread, path


def test_an_output_of_another_model_is_refused_unless_overwritten(models, recordings, tmp_path, capsys):
    folder, transcripts = recordings
    table = _transcripts_csv(tmp_path / "transcripts.csv", folder, transcripts, keep=lambda name: True)
    output = tmp_path / "emotions.csv"
    common = [str(folder / "clip0.wav"), "--transcripts", str(table), "--output", str(output), "--quiet",
              "--runtime", "eager"]  # fmt: skip
    assert main(["predict", *common, "--model", str(models[0])]) == 0
    before = output.read_text()

    assert main(["predict", *common, "--model", str(models[1])]) == 2
    error = capsys.readouterr().err
    assert f"{output} holds predictions of another model" in error and "--overwrite" in error
    assert output.read_text() == before  # nothing lost

    assert main(["predict", *common, "--model", str(models[1]), "--overwrite"]) == 0
    assert [row["model"] for row in _rows(output)] == [str(models[1])]


def test_a_speech_recognizer_that_cannot_load_stops_the_run_with_its_name_keeping_what_was_done(
    models, recordings, tmp_path, capsys
):
    folder, transcripts = recordings
    table = _transcripts_csv(tmp_path / "transcripts.csv", folder, transcripts, keep=lambda name: name != "clip2.wav")
    output = tmp_path / "emotions.csv"
    status = main(
        ["predict", str(folder), "--model", str(models[0]), "--transcripts", str(table), "--output", str(output),
         "--asr_model", str(tmp_path / "no-asr-here"), "--asr_backend", "transformers", "--batch_size", "1",
         "--runtime", "eager", "--quiet"]
    )  # fmt: skip
    assert status == 2
    assert "Could not load the speech-recognition model" in capsys.readouterr().err
    classified = [Path(row["path"]).name for row in _rows(output) if not row["error"]]
    assert classified and "clip2.wav" not in classified  # files before the one that needed it are kept


def test_a_missing_path_is_a_usage_error_that_names_it(models, tmp_path, capsys):
    status = main(["predict", str(tmp_path / "no-such-folder"), "--model", str(models[0]), "--quiet"])
    assert status == 2
    assert f"No such file or folder: {tmp_path / 'no-such-folder'}" in capsys.readouterr().err


def test_the_console_command_killed_mid_run_continues_with_the_same_command(models, recordings, real_asr, tmp_path):
    folder, _ = recordings
    output = tmp_path / "emotions.csv"
    # Speech recognition of every file makes the run slow enough to be killed half-way.
    command = [str(MER), "predict", str(folder), "--model", str(models[0]), "--output", str(output),
               "--asr_model", real_asr, "--batch_size", "1", "--runtime", "eager", "--quiet"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if output.exists() and sum(not row["error"] for row in _rows(output)) >= 2:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = {row["path"] for row in _rows(output) if not row["error"]}
    assert 2 <= len(done_before) < 6, "the run was not killed half-way"

    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)

    assert finished.returncode == 1, finished.stderr  # the three bad files
    rows = [row for row in _rows(output) if not row["error"]]
    assert len(rows) == 6 and len({row["path"] for row in rows}) == 6
    assert f"{len(done_before)} were already in" in finished.stdout


# --- What a kill, a rerun or a spreadsheet can do to the output, and transcripts matched by path ------------------

LABELS = ["neutral", "happy", "angry", "sad"]


def _log(path: Path, **kwargs):
    from mer.serving.predict import PredictionLog

    return PredictionLog(path, LABELS, "model-a", "fingerprint-a", **kwargs)


def _result(transcript: str) -> dict:
    scores = [0.1, 0.2, 0.3, 0.4]
    return {"labels": [{"label": label, "score": score} for label, score in zip(LABELS, scores, strict=True)],
            "transcript": transcript, "transcribed_by": None}  # fmt: skip


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_torn_last_record_of_any_shape_is_dropped_and_redone_and_nothing_else_is_lost(tmp_path, suffix, caplog):
    output = tmp_path / f"out{suffix}"
    log = _log(output)
    log.append([log.record(Path("/a.wav"), _result("one line")), log.record(Path("/b.wav"), _result("two\nlines"))])
    whole = output.read_bytes()
    # CSV: cut just after the newline inside the quoted transcript; JSON Lines: inside the record.
    cut_inside = whole[: whole.rindex(b"two\n") + 4] if suffix == ".csv" else whole[: whole.rindex(b"lines")]
    for torn in (cut_inside, whole[:-7], whole + b"\x00" * 16):
        output.write_bytes(torn)
        resumed = _log(output)
        expected = {"/a.wav", "/b.wav"} if torn.startswith(whole) else {"/a.wav"}
        assert resumed.done == expected, torn[-30:]
        assert "cut short by a killed run" in caplog.text
        assert not output.read_bytes().endswith(b"\x00") and output.read_bytes().startswith(whole[:20])
        caplog.clear()


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json\n", "bad.jsonl:1 is not JSON: Expecting value"),
        ('{"some": "record"}\n', "bad.jsonl:1 is not a mer predict record"),
        ("notes without a newline", "bad.jsonl:1 is not JSON"),  # not begun as a record: not a kill's leftover
    ],
)
def test_a_jsonl_output_that_is_not_ours_is_refused_and_left_alone(
    models, recordings, tmp_path, capsys, content, message
):
    output = tmp_path / "bad.jsonl"
    output.write_text(content)
    clip = str(recordings[0] / "clip0.wav")
    assert main(["predict", clip, "--model", str(models[0]), "--output", str(output), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert message in error and "Choose another --output, or pass --overwrite" in error
    assert output.read_text() == content


def test_failed_files_are_retried_on_a_rerun_and_each_file_keeps_one_record(tmp_path):
    output = tmp_path / "out.csv"
    log = _log(output)
    log.append([log.record(Path("/good.wav"), _result("fine")), log.record(Path("/bad.wav"), error="unreadable")])
    for _ in range(3):  # every rerun retries the failure and writes its new record in place of the old one
        rerun = _log(output)
        assert rerun.done == {"/good.wav"}
        rerun.append([rerun.record(Path("/bad.wav"), error="unreadable")])
        assert [row["path"] for row in _rows(output)] == ["/good.wav", "/bad.wav"]


def test_text_a_spreadsheet_would_run_is_neutralised_in_csv_and_kept_exactly_in_json(tmp_path):
    for suffix in (".csv", ".jsonl"):
        log = _log(tmp_path / f"out{suffix}")
        texts = ['=HYPERLINK("http://x")', "- I said no", "+1", "@SUM(A1)", "plain words"]
        log.append([log.record(Path(f"/{n}.wav"), _result(text)) for n, text in enumerate(texts)])
        written = [row["transcript"] for row in _rows(tmp_path / f"out{suffix}")]
        if suffix == ".csv":
            assert written == ['\'=HYPERLINK("http://x")', "'- I said no", "'+1", "'@SUM(A1)", "plain words"]
        else:
            assert written == texts


def test_transcripts_are_matched_by_path_never_by_name_alone(tmp_path):
    from mer.serving.predict import TranscriptTable

    for speaker in ("spkA", "spkB"):
        (tmp_path / speaker).mkdir()
        (tmp_path / speaker / "utt1.wav").write_bytes(b"RIFF")
    table = tmp_path / "t.csv"
    table.write_text("file,transcript\nspkA/utt1.wav,words of A\n")
    transcripts = TranscriptTable(table, roots=[tmp_path / "spkA", tmp_path / "spkB"])
    assert transcripts.get(tmp_path / "spkA" / "utt1.wav") == "words of A"
    assert transcripts.get(tmp_path / "spkB" / "utt1.wav") is None  # the same name, another file
    table.write_text("file,transcript\nutt1.wav,words of whom?\n")
    with pytest.raises(ValueError, match=r"t\.csv: 'utt1\.wav' fits both .*spkA/utt1\.wav and .*spkB/utt1\.wav"):
        TranscriptTable(table, roots=[tmp_path / "spkA", tmp_path / "spkB"])
    table.write_bytes("file,transcript\nspkA/utt1.wav,caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"t\.csv is not UTF-8 text .*save it as UTF-8"):
        TranscriptTable(table, roots=[tmp_path])


def test_a_model_that_is_not_there_or_cannot_load_and_a_bad_output_are_named(models, recordings, tmp_path, capsys):
    folder, _ = recordings
    clip = str(folder / "clip0.wav")
    # A local path that does not exist is named as a missing directory, not as a malformed Hub id.
    status = main(["predict", clip, "--model", "runs/demo/run/session1/model", "--quiet"])
    assert status == 2
    error = capsys.readouterr().err
    assert "--model runs/demo/run/session1/model: no such directory" in error and "Repo id" not in error
    # A model whose code fails to import: its own exit status, naming the model and the reason.
    broken = tmp_path / "broken-model"
    shutil.copytree(models[0], broken)
    (broken / "modeling_mer.py").write_text("raise ImportError('a broken install')\n")
    assert main(["predict", clip, "--model", str(broken), "--output", str(tmp_path / "o.csv"), "--quiet"]) == 3
    error = capsys.readouterr().err
    assert f"The model {broken} cannot be loaded" in error and "a broken install" in error
    # A bad --output is refused before the model loads (the broken model above would otherwise fail first).
    for output, message in ((tmp_path / "out.txt", "must end in .csv or .jsonl"), (tmp_path, "is a folder")):
        assert main(["predict", clip, "--model", str(broken), "--output", str(output), "--quiet"]) == 2
        assert message in capsys.readouterr().err


def test_a_revision_pins_a_hub_model_and_is_refused_for_a_local_one(models, recordings, tmp_path, capsys, monkeypatch):
    clip, output = str(recordings[0] / "clip0.wav"), str(tmp_path / "o.csv")
    # A Hub model: the revision reaches transformers for the code and the weights alike, and failures name it.
    asked = []

    def from_pretrained(name, **kwargs):
        asked.append((name, kwargs["revision"], kwargs["trust_remote_code"]))
        raise OSError(f"{kwargs['revision']} is not a valid git identifier for {name}")

    monkeypatch.setattr(inference.AutoModel, "from_pretrained", from_pretrained)
    assert main(["predict", clip, "--model", "someone/mer", "--revision", "0a1b2c3", "--output", output]) == 3
    assert asked == [("someone/mer", "0a1b2c3", True)]
    assert "The model someone/mer at revision 0a1b2c3 cannot be loaded" in capsys.readouterr().err
    monkeypatch.setenv("MER_MODEL_REVISION", "v2")
    assert main(["timeline", clip, "--model", "someone/mer", "--out", str(tmp_path / "t"), "--quiet"]) == 3
    assert asked[-1] == ("someone/mer", "v2", True)
    # A local directory has no revisions: saying one is a usage error naming where it came from, before loading.
    assert main(["predict", clip, "--model", str(models[0]), "--output", output, "--quiet"]) == 2
    assert f"MER_MODEL_REVISION v2 pins a commit of a Hub model, but {models[0]} is a local directory" in (
        capsys.readouterr().err
    )
    monkeypatch.delenv("MER_MODEL_REVISION")
    assert main(["predict", clip, "--model", str(models[0]), "--revision", "v2", "--output", output]) == 2
    assert "--revision v2 pins a commit of a Hub model" in capsys.readouterr().err
    assert len(asked) == 2 and not Path(output).exists()


def test_silence_a_click_noise_and_a_syllable_are_not_scored_as_speech(models, recordings, tmp_path, capsys):
    import numpy as np
    import soundfile as sf

    folder = tmp_path / "not-speech"
    folder.mkdir()
    sf.write(folder / "silence.wav", np.zeros(32000, np.float32), 16000)  # what `ffmpeg -f lavfi anullsrc` makes
    sf.write(folder / "click.wav", np.full(800, 0.5, np.float32), 16000)  # 0.05 s
    sf.write(folder / "blip.wav", np.full(4, 0.5, np.float32), 16000)  # shorter than the audio encoder's window
    noise = np.random.default_rng(0).normal(0, 0.05, 48000).astype(np.float32)  # -26 dBFS of hiss, no voice
    sf.write(folder / "hiss.wav", noise, 16000)
    speech = str(recordings[0] / "clip0.wav")  # 0.05 s from the middle of a spoken utterance
    subprocess.run(
        ["ffmpeg", "-v", "error", "-ss", "0.6", "-t", "0.05", "-i", speech, str(folder / "cut.wav")], check=True
    )
    output = tmp_path / "out.csv"
    status = main(["predict", str(folder), "--model", str(models[0]), "--output", str(output), "--quiet"])
    assert status == 1
    errors = {Path(row["path"]).name: row["error"] for row in _rows(output)}
    assert "is silent (level -inf dBFS, below -60 dBFS)" in errors["silence.wav"]
    assert "is too short (0 ms): the model needs at least" in errors["blip.wav"]
    for name in ("click.wav", "hiss.wav"):  # long enough for the tiny test model, but no voice in them
        assert "holds no speech: the voice-activity detector (Silero VAD) found none" in errors[name]
    message = (
        r"holds only 0\.0\d s of speech by the voice-activity detector \(Silero VAD\): at least 0\.25 s is needed"
    )
    assert re.search(message, errors["cut.wav"]), errors["cut.wav"]
    assert all(row["label"] == "" and row["transcript"] == "" for row in _rows(output))  # nothing invented
    assert "5 files could not be classified" in capsys.readouterr().err


def test_a_damaged_file_is_an_error_naming_it_and_a_cropped_one_is_said_on_the_console(
    models, synthetic_corpus, tmp_path, capsys
):
    import numpy as np
    import soundfile as sf

    folder = tmp_path / "clips"
    folder.mkdir()
    speech = build_long_recording(synthetic_corpus, folder / "long.wav", count=30, seed=4)
    assert speech.duration > 62  # longer than the tiny model's 60 s
    samples = (0.1 * np.sin(np.arange(32000) / 8)).astype(np.float32)
    samples[24000:24003] = np.nan
    sf.write(folder / "damaged.wav", samples, 16000, subtype="FLOAT")
    transcripts = tmp_path / "t.csv"
    transcripts.write_text("file,transcript\nlong.wav,hello there\n")
    output = tmp_path / "out.csv"
    status = main(["predict", str(folder), "--model", str(models[0]), "--output", str(output), "--quiet",
                   "--transcripts", str(transcripts)])  # fmt: skip

    assert status == 1
    rows = {Path(row["path"]).name: row for row in _rows(output)}
    assert rows["damaged.wav"]["error"] == (
        f"'{folder / 'damaged.wav'}' holds 3 samples that are not numbers (NaN or infinite), the first at 1.50 s: "
        "the file is damaged."
    )
    assert rows["long.wav"]["cropped"] == "True" and float(rows["long.wav"]["seconds"]) == pytest.approx(60)
    err = capsys.readouterr().err
    assert "1 files were longer than the model reads: only their first 60 s were classified" in err
    assert str(folder / "long.wav") in err


def test_a_model_with_dimensions_writes_a_column_per_dimension_on_every_runtime(
    saved_mer_with_dimensions, recordings, tmp_path, capsys
):
    saved = saved_mer_with_dimensions
    folder, transcripts = recordings
    table = _transcripts_csv(tmp_path / "transcripts.csv", folder, transcripts, keep=lambda name: True)
    common = [str(folder), "--model", str(saved), "--transcripts", str(table), "--batch_size", "2", "--quiet"]
    assert main(["predict", *common, "--output", str(tmp_path / "eager.csv"), "--runtime", "eager"]) == 1
    assert main(["predict", *common, "--output", str(tmp_path / "int8.jsonl"), "--runtime", "int8"]) == 1
    capsys.readouterr()

    pipe = pipeline(PIPELINE_TASK, model=str(saved), trust_remote_code=True, device="cpu")
    eager = {Path(row["path"]).name: row for row in _rows(tmp_path / "eager.csv")}
    int8 = {Path(row["path"]).name: row for row in _rows(tmp_path / "int8.jsonl")}
    assert list(eager["clip0.wav"])[:9] == [*("path", "label", "score"), *(f"score_{x}" for x in LABELS), "valence",
                                            "arousal"]  # fmt: skip
    for name, text in transcripts.items():
        expected = pipe(str(next(folder.rglob(name))), text=text)["dimensions"]
        written = {dimension: float(eager[name][dimension]) for dimension in ("valence", "arousal")}
        assert written == pytest.approx(expected, abs=1e-5)
        assert set(int8[name]["dimensions"]) == {"valence", "arousal"}
        assert all(0.0 <= value <= 1.0 for value in int8[name]["dimensions"].values())
    assert eager["broken.wav"]["arousal"] == "" and int8["broken.wav"]["dimensions"] is None
    # Different files get different values (spread_logits), so the 1e-5 agreement above cannot hold by chance.
    for dimension in ("valence", "arousal"):
        values = [float(eager[name][dimension]) for name in transcripts]
        assert max(values) - min(values) > 1e-2, (dimension, values)


def test_a_dimensions_only_model_writes_its_dimensions_without_class_columns(
    saved_dimensions_only_mer, recordings, tmp_path, capsys
):
    folder, transcripts = recordings
    table = _transcripts_csv(tmp_path / "transcripts.csv", folder, transcripts, keep=lambda name: True)
    common = [str(folder), "--model", str(saved_dimensions_only_mer), "--transcripts", str(table), "--quiet"]
    assert main(["predict", *common, "--output", str(tmp_path / "out.csv"), "--runtime", "eager"]) == 1  # broken.wav
    assert main(["predict", *common, "--output", str(tmp_path / "out.jsonl"), "--runtime", "int8"]) == 1
    capsys.readouterr()
    rows = {Path(row["path"]).name: row for row in _rows(tmp_path / "out.csv")}
    assert list(rows["clip0.wav"])[:4] == ["path", "arousal", "valence", "transcript"]
    records = {Path(record["path"]).name: record for record in _rows(tmp_path / "out.jsonl")}
    assert not {"label", "score", "scores"} & set(records["clip0.wav"])
    pipe = pipeline(PIPELINE_TASK, model=str(saved_dimensions_only_mer), trust_remote_code=True, device="cpu")
    for name, text in transcripts.items():
        expected = pipe(str(next(folder.rglob(name))), text=text)["dimensions"]
        assert {key: float(rows[name][key]) for key in expected} == pytest.approx(expected, abs=1e-5)
        assert records[name]["dimensions"] == pytest.approx(expected, abs=0.05)  # int8
    # A rerun finds every file done (the columns it expects are the ones it wrote).
    assert main(["predict", *common, "--output", str(tmp_path / "out.csv"), "--runtime", "eager"]) == 1
    assert "6 were already in" in capsys.readouterr().out
