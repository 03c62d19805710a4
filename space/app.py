"""MER's Gradio Space: record or upload speech, optionally type its transcript, see the emotion the model hears and
what its cross-modal fusion looked at; or give a long recording and see the emotion of each of its speech segments
over time (the timeline).

Run `python space/app.py` (or `make space`); the same folder runs unchanged as a Hugging Face Space. Configuration
comes from the environment only (never from the user):

    MER_MODEL         Hub id or local directory of the MER model (default: the model the project publishes)
    MER_MODEL_REVISION  the Hub commit of MER_MODEL to load: its code runs here, and a commit hash pins it
                      (deploy.py sets it to the commit the model was at when the Space was deployed)
    MER_ASR_MODEL     speech-recognition model used when no transcript is typed (default: Whisper small.en)
    MER_MAX_SECONDS   longer utterances are cropped to this many seconds, with a notice (default: 60)
    MER_MAX_TIMELINE_MINUTES  longer recordings are refused by the timeline (default: 30)
    MER_RUNTIME       eager or int8 (default: int8 on a CPU, 1.45x eager with the same answers; eager on a GPU)
    MER_CONCURRENCY   requests the model serves at the same time, both tabs together; others wait in the queue
                      (default: 1)

API: `Client(url).predict(handle_file("speech.wav"), "transcript or empty", api_name="/predict")` returns the label
distribution; `api_name="/analyse"` also returns the transcript used, the attention picture and the details;
`Client(url).predict(handle_file("interview.mp3"), api_name="/timeline")` returns the timeline's picture, table,
CSV file and summary.

The project's shared code (`mer/`, `modeling_mer/`) is imported from beside this file on the Space (deploy.py uploads
it there) and from the installed project in the repository: either way it is on the path of `python app.py`.
"""

from __future__ import annotations

import html
import logging
import os
import shutil
import signal
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from attention_plot import attention_image
from dimension_plot import dimension_image
from example_clips import make_example_clips
from recognizer import (
    DEFAULT_ASR_MODEL,
    DEFAULT_MAX_SECONDS,
    DEFAULT_MAX_TIMELINE_MINUTES,
    MAX_TRANSCRIPT_CHARACTERS,
    Analysis,
    EmotionRecognizer,
    InputError,
    ServiceError,
)

from mer.serving.timeline import Timeline

__all__ = [
    "DEFAULT_MODEL",
    "MAX_QUEUE_SIZE",
    "MAX_UPLOAD_SIZE",
    "TIMELINE_COLUMNS",
    "timeline_columns",
    "Settings",
    "build_demo",
    "main",
    "timeline_table",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "mer-project/mer-wav2vec2-bert-iemocap"
MAX_QUEUE_SIZE = 32  # requests waiting beyond this are turned away with "queue full" instead of piling up
# 30 minutes of 16-bit 48 kHz mono wav (or hours of mp3); a single utterance is cropped to MER_MAX_SECONDS anyway.
MAX_UPLOAD_SIZE = "200mb"
# Uploads and results older than an hour leave gradio's cache (checked hourly): long recordings add up.
CACHE_LIFETIME_SECONDS = 3600
TIMELINE_COLUMNS = ["start", "end", "transcript", "label", "score"]


@dataclass(frozen=True)
class Settings:
    """The app's configuration, read from the environment by `from_env`."""

    model: str = DEFAULT_MODEL
    asr_model: str = DEFAULT_ASR_MODEL
    max_seconds: float = DEFAULT_MAX_SECONDS
    concurrency_limit: int = 1
    max_timeline_minutes: float = DEFAULT_MAX_TIMELINE_MINUTES
    runtime: str | None = None  # None: int8 on a CPU, eager on a GPU (`EmotionRecognizer`)
    revision: str | None = None  # None: the latest

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Reads MER_MODEL, MER_MODEL_REVISION, MER_ASR_MODEL, MER_MAX_SECONDS, MER_CONCURRENCY,
        MER_MAX_TIMELINE_MINUTES and MER_RUNTIME; unset or empty means the default.

        Raises:
            ValueError: naming the variable, when MER_MAX_SECONDS, MER_CONCURRENCY or MER_MAX_TIMELINE_MINUTES is
                not a positive number.
        """
        return cls(
            model=environ.get("MER_MODEL") or cls.model,
            asr_model=environ.get("MER_ASR_MODEL") or cls.asr_model,
            max_seconds=_positive(environ, "MER_MAX_SECONDS", float, cls.max_seconds),
            concurrency_limit=_positive(environ, "MER_CONCURRENCY", int, cls.concurrency_limit),
            max_timeline_minutes=_positive(environ, "MER_MAX_TIMELINE_MINUTES", float, cls.max_timeline_minutes),
            runtime=environ.get("MER_RUNTIME") or cls.runtime,
            revision=environ.get("MER_MODEL_REVISION") or cls.revision,
        )


def _positive(environ: Mapping[str, str], name: str, kind: type, default: float) -> float:
    text = environ.get(name)
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not value > 0:
        raise ValueError(f"{name} must be a positive {kind.__name__}, got {text!r}.")
    return value


def build_demo(
    recognizer: EmotionRecognizer, concurrency_limit: int = 1, examples_dir: str | Path | None = None
) -> gr.Blocks:
    """Declares the app around a loaded `recognizer`; returns the Blocks with its queue set, ready to `launch()`.

    Two tabs: one utterance (emotion distribution, transcript, attention picture; the arousal-valence plane for a
    model that predicts dimensions) and a long recording (the emotion timeline of its speech segments: picture, table,
    CSV, summary).

    Args:
        recognizer: the model and the speech recognition every request shares.
        concurrency_limit: requests the model serves at once (both tabs, UI and API together); the rest wait in a
            queue of at most `MAX_QUEUE_SIZE`.
        examples_dir: where the example clips are spoken; a folder of the app's own by default.

    What the app writes (timelines, example clips) goes into one temporary folder, removed when the app stops
    (`main` turns the SIGTERM a Space gets into a clean stop) or when the Blocks are garbage-collected.
    """
    workspace = Path(tempfile.mkdtemp(prefix="mer-space-"))
    timelines_dir = workspace / "timelines"
    timelines_dir.mkdir()

    def analyse(audio_path: str | None, transcript: str | None) -> tuple:
        """The UI's action: emotion distribution, transcript used, attention picture, details, and for a model that
        predicts dimensions of emotion, their picture (the arousal-valence plane)."""
        analysis = _run(recognizer, audio_path, transcript)
        classes = (analysis.probabilities,) if recognizer.labels else ()  # none from a dimensions-only model
        shown = (*classes, analysis.transcript, attention_image(analysis), _details(analysis))
        return (*shown, dimension_image(analysis.dimensions)) if recognizer.dimensions else shown

    def predict(audio_path: str | None, transcript: str | None) -> dict[str, float]:
        """The API's action: the emotion distribution alone (a dimensions-only model's dimensions)."""
        analysis = _run(recognizer, audio_path, transcript)
        return analysis.probabilities if recognizer.labels else analysis.dimensions

    def timeline(
        audio_path: str | None,
        progress: gr.Progress = gr.Progress(track_tqdm=True),  # noqa: B008 (gradio reads the tracker from here)
    ) -> tuple[str | None, list[list], str | None, str]:
        """The long-recording tab's action (and the API's): timeline picture, table, CSV file, summary. A recording
        without speech gives no picture and no file, an empty table and a warning."""
        progress(0, desc="Reading the recording")
        out_dir = _timeline_dir(timelines_dir)
        with _readable_errors(audio_path):
            result = recognizer.timeline(audio_path, out_dir, progress=True)  # gradio follows its tqdm bar
        summary = result.summary()
        if not result.segments:
            gr.Warning(html.escape(summary, quote=False))
            return None, timeline_table(result), None, summary
        return str(out_dir / "timeline.png"), timeline_table(result), str(out_dir / "timeline.csv"), summary

    examples = make_example_clips(examples_dir or workspace / "examples")
    with gr.Blocks(
        title="MER: emotion in speech and words", delete_cache=(CACHE_LIFETIME_SECONDS, CACHE_LIFETIME_SECONDS)
    ) as demo:
        gr.Markdown(_introduction(recognizer))
        listener = dict(concurrency_id="model", concurrency_limit=concurrency_limit)  # one queue for the model
        with gr.Tabs():
            with gr.Tab("One utterance", elem_id="utterance-tab"):
                _utterance_tab(recognizer, examples, analyse, predict, listener)
            with gr.Tab("Long recording", elem_id="timeline-tab"):
                _timeline_tab(recognizer, timeline, listener)
    demo.queue(default_concurrency_limit=concurrency_limit, max_size=MAX_QUEUE_SIZE)
    weakref.finalize(demo, shutil.rmtree, workspace, ignore_errors=True)  # also at the interpreter's exit
    return demo


def _utterance_tab(
    recognizer: EmotionRecognizer, examples: list, analyse: Callable, predict: Callable, listener: dict
) -> None:
    """Declares the single-utterance tab: `analyse` serves its button and `/analyse`, `predict` serves `/predict`."""
    with gr.Row():
        with gr.Column():
            audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Speech", elem_id="audio-input")
            transcript = gr.Textbox(
                value="",
                label="Transcript (optional)",
                placeholder=f"Leave empty to transcribe the speech with {recognizer.asr_model}",
                lines=2,
                max_length=MAX_TRANSCRIPT_CHARACTERS,
                elem_id="transcript-input",
            )
            with gr.Row():
                clear = gr.ClearButton(elem_id="clear")
                submit = gr.Button("Recognise the emotion", variant="primary", elem_id="submit")
            if examples:
                gr.Examples(examples, inputs=[audio, transcript], cache_examples=False, label="Spoken by espeak-ng")
        with gr.Column():
            emotions = (
                gr.Label(num_top_classes=len(recognizer.labels), label="Emotion", elem_id="emotion-output")
                if recognizer.labels
                else None  # a dimensions-only model: its plane below says it all
            )
            used = gr.Textbox(label="Transcript used", interactive=False, elem_id="transcript-output")
            details = gr.Markdown(label="details", elem_id="details-output")
            plane = None
            if recognizer.dimensions:
                plane = gr.Image(
                    label="Dimensions of emotion (0-1)",
                    type="numpy",
                    format="png",
                    interactive=False,
                    elem_id="dimensions-output",
                )
    gr.Markdown("### What the fusion looked at")
    attention = gr.Image(
        label="Cross-modal attention of the last fusion layer",
        show_label=False,  # the picture has its own titles; a floating label would hide them
        type="numpy",
        format="png",
        interactive=False,
        elem_id="attention-output",
    )
    outputs = [component for component in (emotions, used, attention, details, plane) if component is not None]
    clear.add([audio, transcript, *outputs])

    inputs = [audio, transcript]
    submit.click(analyse, inputs, outputs, api_name="analyse", **listener)
    # The API endpoint has no button of its own: a hidden one carries it, sharing the model's queue. A
    # dimensions-only model answers it with its dimensions, through a hidden JSON output.
    answer = emotions if emotions is not None else gr.JSON(visible=False, elem_id="dimensions-json")
    gr.Button(visible=False).click(predict, inputs, [answer], api_name="predict", **listener)


def _timeline_tab(recognizer: EmotionRecognizer, timeline: Callable, listener: dict) -> None:
    """Declares the long-recording tab: `timeline` serves its button and `/timeline`."""
    gr.Markdown(
        f"Record or upload a conversation, an interview or a talk of up to {recognizer.max_timeline_minutes:g} "
        "minutes. Voice activity detection (Silero VAD) cuts it into speech segments of the lengths the model was "
        f"trained on; each segment is transcribed with `{recognizer.asr_model}` and classified. Pauses stay empty."
    )
    with gr.Row():
        with gr.Column(scale=1):
            recording = gr.Audio(
                sources=["upload", "microphone"], type="filepath", label="Recording", elem_id="timeline-audio-input"
            )
            with gr.Row():
                clear = gr.ClearButton(elem_id="timeline-clear")
                submit = gr.Button("Draw the emotion timeline", variant="primary", elem_id="timeline-submit")
        with gr.Column(scale=2):
            summary = gr.Markdown(elem_id="timeline-summary")
            csv_file = gr.File(label="The table as CSV", interactive=False, elem_id="timeline-csv")
    picture = gr.Image(
        label="Emotion over time",
        show_label=False,  # the picture has its own title
        type="filepath",
        format="png",
        interactive=False,
        elem_id="timeline-picture",
    )
    columns = timeline_columns(recognizer.labels, recognizer.dimensions)
    judged = len(columns) - 3  # what follows start, end and the words
    table = gr.Dataframe(
        headers=columns,
        datatype=["number", "number", "str", *(["str", "number"] if recognizer.labels else ["number"] * judged)],
        label="Speech segments (seconds from the start)",
        interactive=False,
        wrap=True,
        column_widths=["10%", "10%", f"{80 - 12 * judged}%", *["12%"] * judged],
        elem_id="timeline-table",
    )
    clear.add([recording, picture, table, csv_file, summary])
    submit.click(timeline, [recording], [picture, table, csv_file, summary], api_name="timeline", **listener)


def timeline_columns(labels: list[str], dimensions: list[str]) -> list[str]:
    """The long-recording table's columns: `TIMELINE_COLUMNS` for a model with classes; for a dimensions-only model
    the dimensions in place of the label and its score."""
    return TIMELINE_COLUMNS if labels else [*TIMELINE_COLUMNS[:3], *dimensions]


def timeline_table(timeline: Timeline) -> list[list]:
    """The rows the app shows for `timeline`, one per speech segment in time order, as `timeline_columns`."""
    if not timeline.labels:
        return [
            [s.start, s.end, s.transcript, *(round(s.dimensions[name], 3) for name in timeline.dimensions)]
            for s in timeline.segments
        ]
    return [
        [segment.start, segment.end, segment.transcript, segment.label, round(segment.score, 3)]
        for segment in timeline.segments
    ]


def _timeline_dir(root: Path, keep_seconds: float = CACHE_LIFETIME_SECONDS) -> Path:
    """A new folder under `root` for one request's timeline files. Folders untouched for `keep_seconds` are removed
    on the way: gradio copied the files it serves into its own cache when their request was answered."""
    now = time.time()
    for folder in root.iterdir():
        try:
            touched = max([folder.stat().st_mtime] + [path.stat().st_mtime for path in folder.iterdir()])
        except OSError:  # another request removed it meanwhile
            continue
        if now - touched > keep_seconds:
            shutil.rmtree(folder, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=root))


def _run(recognizer: EmotionRecognizer, audio_path: str | None, transcript: str | None) -> Analysis:
    """Runs one request; problems the user can act on become a readable `gr.Error`, notices a `gr.Warning`."""
    with _readable_errors(audio_path):
        analysis = recognizer.analyse(audio_path, transcript)
    for notice in analysis.notices:
        gr.Warning(notice)
    return analysis


@contextmanager
def _readable_errors(audio_path: str | None) -> Iterator[None]:
    """Turns what the block raises into a `gr.Error` the user can read: the message of an `InputError` or
    `ServiceError`, a general apology (and the stack trace in the log) for anything else."""
    try:
        yield
    except (InputError, ServiceError) as error:
        # gr.Error renders HTML; the message may quote a file name the user chose.
        raise gr.Error(html.escape(str(error), quote=False), print_exception=False) from None
    except Exception as error:  # never a stack trace for the user; the log keeps it
        logger.exception("Analysing %s failed", audio_path)
        message = "Something went wrong while analysing this recording; please try another one."
        raise gr.Error(message, print_exception=False) from error


def _introduction(recognizer: EmotionRecognizer) -> str:
    return (
        "# MER: the emotion in speech and its words\n"
        "Record or upload an utterance (any common audio format; its first "
        f"{recognizer.max_seconds:g} s are analysed), type what is said or leave the box empty to have it "
        "transcribed, and submit; or follow the emotion through a long recording in the *Long recording* tab. "
        f"The model hears the speech with {_tower(recognizer.model.config.audio_config)}, reads the words with "
        f"{_tower(recognizer.model.config.text_config)} and joins them with cross-modal attention; "
        + (
            f"it tells apart **{', '.join(recognizer.labels)}**.\n\n"
            if recognizer.labels
            else f"it places what it hears on **{', '.join(recognizer.dimensions)}**, each from 0 to 1.\n\n"
        )
        + f"Model: `{recognizer.model_name_or_path}` · speech recognition: `{recognizer.asr_model}`"
        + _provenance(getattr(recognizer.model.config, "evaluation", None) or {})
    )


def _tower(config) -> str:
    """An encoder by the checkpoint it came from, else its kind (e.g. `whisper-tiny.en`, a wav2vec2 encoder)."""
    name = Path(getattr(config, "_name_or_path", "") or "").name
    return f"`{name}`" if name else f"a {config.model_type} encoder"


def _provenance(evaluation: dict) -> str:
    """What the served model was trained on and what it scored on speakers it never heard, as train.py recorded
    them in its config; nothing for a model without that record."""
    lines = []
    if evaluation.get("trained_on"):
        lines.append(f"Trained on {evaluation['trained_on']}.")
    test = evaluation.get("test", {})
    scores = []
    if "ua" in test:
        scores = [f"UA {100 * test['ua']:.0f}% overall"]
        scores += [
            f"{name} {100 * outcome['test']['ua']:.0f}%"
            for name, outcome in evaluation.get("corpora", {}).items()
            if "ua" in outcome.get("test", {})
        ]
    scores += [f"{name} CCC {value['ccc']:.2f}" for name, value in test.get("dimensions", {}).items()]
    if scores:
        lines.append(f"On held-out speakers ({evaluation.get('evaluated_on', 'its test fold')}): {', '.join(scores)}.")
    return "".join(f"\n\n{line}" for line in lines)


def _details(analysis: Analysis) -> str:
    source = f"transcribed by `{analysis.transcribed_by}`" if analysis.transcribed_by else "typed"
    lines = [f"Audio analysed: {analysis.seconds:.1f} s · transcript {source} · {len(analysis.tokens)} tokens"]
    if analysis.dimensions:
        lines.append(
            " · ".join(f"{name.capitalize()} {value:.2f}" for name, value in analysis.dimensions.items()) + " (0-1)"
        )
    lines += [f"**Note:** {notice}" for notice in analysis.notices]
    return "\n\n".join(lines)


def main() -> None:
    """Loads the configured model, builds the app and serves it (on 127.0.0.1:7860 unless GRADIO_SERVER_NAME /
    GRADIO_SERVER_PORT say otherwise, as on Spaces)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    settings = Settings.from_env()
    started = time.perf_counter()
    recognizer = EmotionRecognizer(
        settings.model,
        asr_model=settings.asr_model,
        max_seconds=settings.max_seconds,
        max_timeline_minutes=settings.max_timeline_minutes,
        runtime=settings.runtime,
        revision=settings.revision,
    )
    demo = build_demo(recognizer, concurrency_limit=settings.concurrency_limit)
    logger.info("Loaded %s and built the app in %.1f s", settings.model, time.perf_counter() - started)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a stop: gradio closes, the workspace is removed
    demo.launch(max_file_size=MAX_UPLOAD_SIZE)


if __name__ == "__main__":
    main()
