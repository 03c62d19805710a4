"""The Space's app served on 127.0.0.1, called through gradio_client and driven in Debian's Chromium."""

from __future__ import annotations

import csv
import threading
import time
from pathlib import Path

import numpy as np
import pandas
import pytest
from space_fixtures import (
    CHROMIUM,
    MAX_SECONDS,
    SCREENSHOT,
    AppError,
    handle_file,
    happy_speech,
    space_app,
    write_audio,
    write_bytes,
)

pytest_plugins = ("space_fixtures",)  # its fixtures: models, recognizer, clips, the served app
# gradio's queue calls a pandas option that pandas 3 deprecates; not ours to fix. (Older pandas lacks the warning
# class, and naming a missing class in a filter stops the whole test session.)
PANDAS_4_WARNING = hasattr(pandas.errors, "Pandas4Warning")
pytestmark = [pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")] if PANDAS_4_WARNING else []


def test_the_api_returns_the_label_distribution(client, recognizer, clips):
    result = client.predict(handle_file(str(clips["angry"])), "i really hate this awful job.", api_name="/predict")

    direct = recognizer.analyse(str(clips["angry"]), "i really hate this awful job.").probabilities
    assert result["label"] == max(direct, key=direct.get)
    assert {c["label"]: c["confidence"] for c in result["confidences"]} == pytest.approx(direct, abs=1e-6)
    # The caller gives audio and a transcript; nothing chooses the model.
    parameters = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/predict"]["parameters"]
    assert [p["parameter_name"] for p in parameters] == ["audio_path", "transcript"]


def test_the_ui_endpoint_returns_distribution_transcript_picture_and_notices(client, models, clips, tmp_path):
    from PIL import Image

    long_clip = write_audio(tmp_path / "long.wav", happy_speech(clips, seconds=MAX_SECONDS + 1), 22050)

    label, transcript, picture, details = client.predict(handle_file(str(long_clip)), "", api_name="/analyse")

    assert {c["label"] for c in label["confidences"]} == {"neutral", "happy", "angry", "sad"}
    assert transcript  # the tiny CTC model's (nonsense) transcript, shown because none was typed
    assert f"transcribed by `{models[1]}`" in details
    assert "only its first 3 s were analysed" in details
    with Image.open(picture) as image:
        assert image.format == "PNG" and image.width == 900 and image.height > 400


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: None, "No audio: record with the microphone or upload a file"),
        (lambda tmp: write_audio(tmp / "zeros.wav", np.zeros(8000, np.int16), 16000), "The recording is silent"),
        (lambda tmp: write_audio(tmp / "click.wav", np.ones(100, np.float32), 16000), "The recording is too short"),
        (lambda tmp: write_bytes(tmp / "x.wav", b"RIFF....WAVEjunk"), "Could not read 'x.wav'"),
    ],
    ids=["no-audio", "silent", "too-short", "unreadable"],
)
def test_bad_input_reaches_the_client_as_a_readable_error_and_the_app_keeps_serving(
    client, clips, tmp_path, make, message
):
    path = make(tmp_path)
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(str(path)) if path else None, "hello", api_name="/predict")
    assert client.predict(handle_file(str(clips["sad"])), "hello", api_name="/predict")["label"]


def test_an_unexpected_failure_reaches_the_client_as_a_readable_error(client, recognizer, clips, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory at 0x7f...")

    monkeypatch.setattr(recognizer.pipeline, "_forward", broken)
    with pytest.raises(AppError, match="Something went wrong while analysing this recording") as error:
        client.predict(handle_file(str(clips["happy"])), "hello", api_name="/predict")
    assert "CUDA" not in str(error.value)


def test_simultaneous_requests_wait_in_the_queue_instead_of_running_together(client, recognizer, clips, monkeypatch):
    running, most, lock = [0], [0], threading.Lock()
    analyse = recognizer.analyse

    def slow_analyse(*args, **kwargs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.3)
        try:
            return analyse(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(recognizer, "analyse", slow_analyse)
    jobs = [
        client.submit(handle_file(str(clips["happy"])), "hi", api_name=name) for name in ("/predict", "/analyse") * 2
    ]
    results = [job.result(timeout=60) for job in jobs]

    assert len(results) == 4 and most[0] == 1  # UI and API share one model slot (MER_CONCURRENCY=1)


def test_the_timeline_endpoint_returns_picture_table_csv_and_summary(client, long_recording, long_timeline):
    from PIL import Image

    expected, _ = long_timeline
    picture, table, csv_file, summary = client.predict(handle_file(str(long_recording.wav_path)), api_name="/timeline")

    assert table["headers"] == space_app.TIMELINE_COLUMNS
    assert len(table["data"]) == len(expected.segments)
    assert [row[:4] for row in table["data"]] == [row[:4] for row in space_app.timeline_table(expected)]
    assert [row[4] for row in table["data"]] == pytest.approx([s.score for s in expected.segments], abs=1e-3)
    with Image.open(picture) as image:
        assert image.format == "PNG"
    with open(csv_file, newline="", encoding="utf-8") as handle:
        assert [row["label"] for row in csv.DictReader(handle)] == [s.label for s in expected.segments]
    assert summary.startswith(f"{len(expected.segments)} speech segments ")
    parameters = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/timeline"]["parameters"]
    assert [p["parameter_name"] for p in parameters] == ["audio_path"]  # the progress tracker is no parameter


def test_the_timeline_endpoint_answers_silence_with_an_empty_table_and_refuses_a_long_recording(client, tmp_path):
    silence = write_audio(tmp_path / "silence.wav", np.zeros(5 * 16000, np.int16), 16000)
    picture, table, csv_file, summary = client.predict(handle_file(str(silence)), api_name="/timeline")
    assert (picture, table["data"], csv_file) == (None, [], None)
    assert summary == "No speech was found in silence.wav (5.0 s): the timeline is empty."

    too_long = write_audio(tmp_path / "long.wav", np.zeros(8000 * 75, np.int16), 8000)
    with pytest.raises(AppError, match="The recording lasts 1.2 minutes; the timeline takes at most 1 minute"):
        client.predict(handle_file(str(too_long)), api_name="/timeline")


# --- the app in a real browser (Debian's Chromium, headless) ------------------------------------------------------
@pytest.fixture(scope="module")
def page(served):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: install the Debian package chromium (make setup)")
    from playwright.sync_api import sync_playwright

    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        page = browser.new_page(viewport={"width": 1280, "height": 1200})
        page.set_default_timeout(30_000)
        yield page
        browser.close()


def test_in_the_browser_upload_type_submit_and_read_the_emotion_and_the_attention_picture(
    page, served, recognizer, clips
):
    text = "i really hate this awful job."
    page.goto(served[0])
    page.locator("#audio-input input[type=file]").set_input_files(str(clips["angry"]))
    page.locator('#audio-input [data-testid="download-link"][href$="angry.wav"]').wait_for()  # uploaded
    page.locator("#transcript-input textarea").fill(text)
    page.locator("#submit").click()

    shown = page.locator('#emotion-output [data-testid="label-output-value"]')
    shown.wait_for()
    expected = recognizer.analyse(str(clips["angry"]), text).probabilities
    assert shown.inner_text() == max(expected, key=expected.get)
    names = page.locator("#emotion-output dt").all_inner_texts()
    percents = page.locator("#emotion-output dd").all_inner_texts()
    assert dict(zip(names, percents, strict=True)) == {name: f"{round(100 * p)}%" for name, p in expected.items()}
    assert page.locator("#transcript-output textarea").input_value() == text
    assert "transcript typed" in page.locator("#details-output").inner_text()

    picture = page.locator("#attention-output img")
    picture.scroll_into_view_if_needed()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=picture.element_handle())
    assert picture.evaluate("img => [img.naturalWidth, img.naturalHeight]")[0] == 900
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)


def test_in_the_browser_submitting_without_audio_shows_a_readable_error(page, served):
    page.goto(served[0])
    page.locator("#transcript-input textarea").fill("hello")
    page.locator("#submit").click()

    toast = page.locator('[data-testid="toast-body"].error [data-testid="toast-text"]')
    assert toast.inner_text() == "No audio: record with the microphone or upload a file, then submit."
    assert "Traceback" not in page.content()


def test_in_the_browser_a_long_recording_becomes_a_timeline_picture_and_table(
    page, served, long_recording, long_timeline
):
    expected, _ = long_timeline
    page.goto(served[0])
    page.get_by_role("tab", name="Long recording").click()
    page.locator("#timeline-audio-input input[type=file]").set_input_files(str(long_recording.wav_path))
    page.locator('#timeline-audio-input [data-testid="download-link"][href$="meeting.wav"]').wait_for()  # uploaded
    page.locator("#timeline-submit").click()

    picture = page.locator("#timeline-picture img")
    picture.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=picture.element_handle())
    assert picture.evaluate("img => img.naturalWidth") > 800
    grid = page.locator('#timeline-table [role="grid"]')
    assert grid.get_attribute("aria-rowcount") == str(len(expected.segments) + 1)  # the header and one per segment
    first = page.locator('#timeline-table [role="row"][aria-rowindex="2"] [role="gridcell"]').all_inner_texts()
    assert [cell.strip() for cell in first[:4]] == [
        f"{expected.segments[0].start:g}",
        f"{expected.segments[0].end:g}",
        expected.segments[0].transcript,
        expected.segments[0].label,
    ]
    assert page.locator("#timeline-summary").inner_text().startswith(f"{len(expected.segments)} speech segments ")
    assert page.locator('#timeline-csv [data-testid="download-link"]').get_attribute("download") == "timeline.csv"
    page.screenshot(path=str(SCREENSHOT.with_name("space-timeline-screenshot.png")), full_page=True)
