"""MER's Gradio Space: record or upload speech, optionally type its transcript, see the emotion the model hears and
what its cross-modal fusion looked at.

Run `python space/app.py` (or `make space`); the same folder runs unchanged as a Hugging Face Space. Configuration
comes from the environment only (never from the user):

    MER_MODEL         Hub id or local directory of the MER model (default: the model the project publishes)
    MER_ASR_MODEL     speech-recognition model used when no transcript is typed (default: Whisper small.en)
    MER_MAX_SECONDS   longer recordings are cropped to this many seconds, with a notice (default: 60)
    MER_CONCURRENCY   requests the model serves at the same time; others wait in the queue (default: 1)

API: `Client(url).predict(handle_file("speech.wav"), "transcript or empty", api_name="/predict")` returns the label
distribution; `api_name="/analyse"` also returns the transcript used, the attention picture and the details.
"""

from __future__ import annotations

import html
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
from attention_plot import attention_image
from example_clips import make_example_clips
from recognizer import (
    DEFAULT_ASR_MODEL,
    DEFAULT_MAX_SECONDS,
    MAX_TRANSCRIPT_CHARACTERS,
    Analysis,
    EmotionRecognizer,
    InputError,
    ServiceError,
)

__all__ = ["DEFAULT_MODEL", "MAX_QUEUE_SIZE", "MAX_UPLOAD_SIZE", "Settings", "build_demo", "main"]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "mer-project/mer-wav2vec2-bert-iemocap"
MAX_QUEUE_SIZE = 32  # requests waiting beyond this are turned away with "queue full" instead of piling up
MAX_UPLOAD_SIZE = "50mb"  # a few minutes of CD-quality wav; only the first MER_MAX_SECONDS are decoded anyway


@dataclass(frozen=True)
class Settings:
    """The app's configuration, read from the environment by `from_env`."""

    model: str = DEFAULT_MODEL
    asr_model: str = DEFAULT_ASR_MODEL
    max_seconds: float = DEFAULT_MAX_SECONDS
    concurrency_limit: int = 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Reads MER_MODEL, MER_ASR_MODEL, MER_MAX_SECONDS and MER_CONCURRENCY; unset or empty means the default.

        Raises:
            ValueError: naming the variable, when MER_MAX_SECONDS or MER_CONCURRENCY is not a positive number.
        """
        return cls(
            model=environ.get("MER_MODEL") or cls.model,
            asr_model=environ.get("MER_ASR_MODEL") or cls.asr_model,
            max_seconds=_positive(environ, "MER_MAX_SECONDS", float, cls.max_seconds),
            concurrency_limit=_positive(environ, "MER_CONCURRENCY", int, cls.concurrency_limit),
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

    Args:
        recognizer: the model (and lazily the speech recognition) every request shares.
        concurrency_limit: requests the model serves at once (UI and API together); the rest wait in a queue of at
            most `MAX_QUEUE_SIZE`.
        examples_dir: where the example clips are spoken; a new temporary directory by default.
    """

    def analyse(audio_path: str | None, transcript: str | None) -> tuple[dict[str, float], str, np.ndarray, str]:
        """The UI's action: emotion distribution, transcript used, attention picture, details."""
        analysis = _run(recognizer, audio_path, transcript)
        return analysis.probabilities, analysis.transcript, attention_image(analysis), _details(analysis)

    def predict(audio_path: str | None, transcript: str | None) -> dict[str, float]:
        """The API's action: the emotion distribution alone."""
        return _run(recognizer, audio_path, transcript).probabilities

    examples = make_example_clips(examples_dir or tempfile.mkdtemp(prefix="mer-examples-"))
    with gr.Blocks(title="MER: emotion in speech and words") as demo:
        gr.Markdown(_introduction(recognizer))
        with gr.Row():
            with gr.Column():
                audio = gr.Audio(
                    sources=["upload", "microphone"], type="filepath", label="Speech", elem_id="audio-input"
                )
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
                    gr.Examples(
                        examples, inputs=[audio, transcript], cache_examples=False, label="Spoken by espeak-ng"
                    )
            with gr.Column():
                emotions = gr.Label(num_top_classes=len(recognizer.labels), label="Emotion", elem_id="emotion-output")
                used = gr.Textbox(label="Transcript used", interactive=False, elem_id="transcript-output")
                details = gr.Markdown(label="details", elem_id="details-output")
        gr.Markdown("### What the fusion looked at")
        attention = gr.Image(
            label="Cross-modal attention of the last fusion layer",
            show_label=False,  # the picture has its own titles; a floating label would hide them
            type="numpy",
            format="png",
            interactive=False,
            elem_id="attention-output",
        )
        clear.add([audio, transcript, emotions, used, details, attention])

        listener = dict(inputs=[audio, transcript], concurrency_id="model", concurrency_limit=concurrency_limit)
        submit.click(analyse, outputs=[emotions, used, attention, details], api_name="analyse", **listener)
        # The API endpoint has no button of its own: a hidden one carries it, sharing the model's queue.
        gr.Button(visible=False).click(predict, outputs=[emotions], api_name="predict", **listener)
    demo.queue(default_concurrency_limit=concurrency_limit, max_size=MAX_QUEUE_SIZE)
    return demo


def _run(recognizer: EmotionRecognizer, audio_path: str | None, transcript: str | None) -> Analysis:
    """Runs one request; problems the user can act on become a readable `gr.Error`, notices a `gr.Warning`."""
    try:
        analysis = recognizer.analyse(audio_path, transcript)
    except (InputError, ServiceError) as error:
        # gr.Error renders HTML; the message may quote a file name the user chose.
        raise gr.Error(html.escape(str(error), quote=False), print_exception=False) from None
    except Exception as error:  # never a stack trace for the user; the log keeps it
        logger.exception("Analysing %s failed", audio_path)
        message = "Something went wrong while analysing this recording; please try another one."
        raise gr.Error(message, print_exception=False) from error
    for notice in analysis.notices:
        gr.Warning(notice)
    return analysis


def _introduction(recognizer: EmotionRecognizer) -> str:
    return (
        "# MER: the emotion in speech and its words\n"
        "Record or upload an utterance (any common audio format; its first "
        f"{recognizer.max_seconds:g} s are analysed), type what is said or leave the box empty to have it "
        f"transcribed, and submit. The model hears the speech with wav2vec 2.0, reads the words with BERT and joins "
        f"them with cross-modal attention; it tells apart **{', '.join(recognizer.labels)}**.\n\n"
        f"Model: `{recognizer.model_name_or_path}` · speech recognition: `{recognizer.asr_model}`"
    )


def _details(analysis: Analysis) -> str:
    source = f"transcribed by `{analysis.transcribed_by}`" if analysis.transcribed_by else "typed"
    lines = [f"Audio analysed: {analysis.seconds:.1f} s · transcript {source} · {len(analysis.tokens)} tokens"]
    lines += [f"**Note:** {notice}" for notice in analysis.notices]
    return "\n\n".join(lines)


def main() -> None:
    """Loads the configured model, builds the app and serves it (on 127.0.0.1:7860 unless GRADIO_SERVER_NAME /
    GRADIO_SERVER_PORT say otherwise, as on Spaces)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    settings = Settings.from_env()
    started = time.perf_counter()
    recognizer = EmotionRecognizer(settings.model, asr_model=settings.asr_model, max_seconds=settings.max_seconds)
    demo = build_demo(recognizer, concurrency_limit=settings.concurrency_limit)
    logger.info("Loaded %s and built the app in %.1f s", settings.model, time.perf_counter() - started)
    demo.launch(max_file_size=MAX_UPLOAD_SIZE)


if __name__ == "__main__":
    main()
