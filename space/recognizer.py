"""What the Space does to a recording, without any UI: for one utterance, decode, check, transcribe when needed,
classify, and keep the last fusion layer's cross-modal attention; for a long recording, the emotion timeline of its
speech segments (`mer.serving.timeline`).

`EmotionRecognizer(model)` loads a MER model once (a Hub id or a local directory, with `trust_remote_code=True`) into
its pipeline (`MERPipeline`, by `mer.serving.inference.load_pipeline`, as `mer predict` and `mer timeline` load it).
Both actions go through that pipeline: its length policy (`prepare_audio`), its speech recognizer (loaded on the first
request that needs a transcript) and its classification, so that the Space and the commands give the same answer
on the same clip.

`EmotionRecognizer.analyse(audio_path, transcript)` returns an `Analysis`, `EmotionRecognizer.timeline(audio_path,
out_dir)` a `mer.serving.timeline.Timeline`; both raise `InputError` (the user's input cannot be analysed) or
`ServiceError` (speech recognition or audio decoding is unavailable), with messages written for the user.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mer.serving.audio import AudioError, FFmpegMissingError, audio_duration, check_audio_file
from mer.serving.inference import load_pipeline, resolve_device
from mer.serving.runtime import DEFAULT_CPU_RUNTIME
from mer.serving.timeline import RecordingTooLong, Timeline, write_timeline
from mer.serving.vad import speech_problem
from modeling_mer.asr_mer import DEFAULT_ASR_MODEL, SpeechRecognizer
from modeling_mer.pipeline_mer import DEFAULT_MAX_SECONDS, SILENCE_DBFS, MERPipeline

__all__ = [
    "ATTENTION_RUNTIMES",
    "DEFAULT_ASR_MODEL",
    "DEFAULT_MAX_SECONDS",
    "DEFAULT_MAX_TIMELINE_MINUTES",
    "MAX_TRANSCRIPT_CHARACTERS",
    "SILENCE_DBFS",
    "Analysis",
    "EmotionRecognizer",
    "InputError",
    "ServiceError",
]

logger = logging.getLogger(__name__)

# The runtimes that give the fusion's attention weights (an ONNX graph gives logits only).
ATTENTION_RUNTIMES = ("eager", "int8")
# A long recording costs about its length in compute: a 30-minute interview holds the model for a few minutes.
DEFAULT_MAX_TIMELINE_MINUTES = 30.0
MAX_TRANSCRIPT_CHARACTERS = 2000


class InputError(ValueError):
    """The recording or transcript cannot be analysed; the message says why, in words meant for the user."""


class ServiceError(RuntimeError):
    """Speech recognition (or audio decoding) is unavailable; the message says so, in words meant for the user."""


@dataclass(frozen=True)
class Analysis:
    """The result of one request.

    Attributes:
        probabilities: class name -> probability, every class of the model in `id2label` order, summing to 1 (empty
            for a dimensions-only model).
        transcript: the transcript the model read (typed, or transcribed when none was typed).
        transcribed_by: the speech-recognition model that made `transcript`, or None when it was typed.
        waveform: the analysed audio, mono float32 at `sampling_rate` (cropped to the limit).
        sampling_rate: the model's audio rate in Hz.
        tokens: the transcript's tokens as the text encoder saw them, special tokens included.
        frame_seconds: seconds between two audio frames of the encoder.
        attentions: the last fusion layer's cross-modal attention, averaged over heads, each `(tokens, frames)`:
            `"words → audio"` (each row, one word's attention over time, sums to 1) and/or `"audio → words"`
            (each column, one moment's attention over the words, sums to 1), as the model's fusion direction has.
        notices: things the user should know about this result (the clip was cropped, no words were heard).
        dimensions: dimension name -> value on [0, 1] (arousal, valence, dominance), for a model that predicts them;
            empty otherwise.
    """

    probabilities: dict[str, float]
    transcript: str
    transcribed_by: str | None
    waveform: np.ndarray
    sampling_rate: int
    tokens: list[str]
    frame_seconds: float
    attentions: dict[str, np.ndarray]
    notices: list[str] = field(default_factory=list)
    dimensions: dict[str, float] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        """Duration of the analysed audio."""
        return len(self.waveform) / self.sampling_rate


class EmotionRecognizer:
    """A MER model's pipeline (with one speech recognizer, loaded on first use), loaded once and shared by
    requests.

    Args:
        model_name_or_path: Hub id or local directory of a saved MER model and processor.
        revision: the Hub commit to load it at (its code runs here: a commit hash pins what runs); default
            `MER_MODEL_REVISION`, else the latest (`mer.serving.inference.resolve_revision`).
        asr_model: the speech-recognition model used when no transcript is given (a Hub id, a faster-whisper size
            name or a local directory; see `modeling_mer.asr_mer.SpeechRecognizer`). Loaded on first use.
        max_seconds: longer utterances are cropped to their first `max_seconds` (with a notice); at most the audio
            encoder's window (Whisper: 30 s).
        max_timeline_minutes: longer recordings are refused by `timeline`.
        device: where both models run; defaults to CUDA when available, else the CPU.
        runtime: how the model runs (`mer.serving.runtime`): on the CPU `DEFAULT_CPU_RUNTIME` (int8 dynamic
            quantisation, the fastest at batch 1 with the answers of fp32), on a GPU eager; one of
            `ATTENTION_RUNTIMES`, since the utterance view shows the fusion's attention weights.

    Raises:
        ValueError: `model_name_or_path` is not a MER model, `max_seconds` or `max_timeline_minutes` is not
            positive, or `asr_model` is one no installed speech-recognition backend reads.
    """

    def __init__(
        self,
        model_name_or_path: str,
        asr_model: str = DEFAULT_ASR_MODEL,
        max_seconds: float = DEFAULT_MAX_SECONDS,
        max_timeline_minutes: float = DEFAULT_MAX_TIMELINE_MINUTES,
        device: str | None = None,
        runtime: str | None = None,
        revision: str | None = None,
    ):
        if not max_seconds > 0:
            raise ValueError(f"max_seconds must be positive, got {max_seconds!r}.")
        if not max_timeline_minutes > 0:
            raise ValueError(f"max_timeline_minutes must be positive, got {max_timeline_minutes!r}.")
        self.model_name_or_path = str(model_name_or_path)
        self.asr_model = str(asr_model)
        self.max_seconds = float(max_seconds)
        self.max_timeline_minutes = float(max_timeline_minutes)
        self.device = resolve_device(device)
        self.runtime = runtime or (DEFAULT_CPU_RUNTIME if self.device.type == "cpu" else "eager")
        if self.runtime not in ATTENTION_RUNTIMES:
            raise ValueError(
                f"The Space runs the model on {' or '.join(ATTENTION_RUNTIMES)} (it shows attention weights), "
                f"not {self.runtime!r}."
            )
        self.pipeline: MERPipeline = load_pipeline(
            self.model_name_or_path, self.asr_model, runtime=self.runtime, device=str(self.device), revision=revision
        )
        self.max_seconds = min(self.max_seconds, self.pipeline.max_seconds)  # Whisper towers take 30 s at once

    @property
    def model(self):
        """The model as it runs (on `runtime`)."""
        return self.pipeline.model

    @property
    def labels(self) -> list[str]:
        """The class names, in the model's order."""
        return self.pipeline.labels

    @property
    def dimensions(self) -> list[str]:
        """The dimensions of emotion the model predicts beside its classes, or instead of them (each on [0, 1]);
        empty for none."""
        return self.pipeline.dimensions

    @property
    def sampling_rate(self) -> int:
        return self.pipeline.sampling_rate

    def analyse(self, audio_path: str | Path | None, transcript: str | None = None) -> Analysis:
        """Classifies the emotion of a recording and its transcript (transcribed when `transcript` is blank).

        Raises:
            InputError: no audio, an unreadable file, an empty, too short or silent recording, or a transcript
                longer than `MAX_TRANSCRIPT_CHARACTERS`.
            ServiceError: a transcript is needed and the speech-recognition model cannot be loaded.
        """
        if audio_path is None or not str(audio_path).strip():
            raise InputError("No audio: record with the microphone or upload a file, then submit.")
        transcript = (transcript or "").strip()
        if len(transcript) > MAX_TRANSCRIPT_CHARACTERS:
            raise InputError(
                f"The transcript has {len(transcript)} characters; at most {MAX_TRANSCRIPT_CHARACTERS} are accepted."
            )
        clip = self._prepare(audio_path)
        notices = []
        if clip.cropped:
            notices.append(
                f"The recording is longer than {self.max_seconds:g} s: only its first {self.max_seconds:g} s "
                "were analysed."
            )
        if not transcript:
            self.speech_recognizer()  # a ServiceError now, in words for the user
        result = self.pipeline(
            {"audio": clip, "text": transcript or None},  # prepared once: the pipeline takes it as it is
            output_attentions=True,
        )
        if result["transcribed_by"] and not result["transcript"]:
            notices.append(self.audio_only_notice())
        if len(self.pipeline.processor.tokenizer(result["transcript"])["input_ids"]) > len(result["tokens"]):
            notices.append(
                f"The transcript is longer than the model reads: only its first {len(result['tokens'])} tokens "
                "were used."
            )
        return Analysis(
            probabilities={item["label"]: item["score"] for item in sorted(result.get("labels", []), key=self._order)},
            transcript=result["transcript"],
            transcribed_by=result["transcribed_by"],
            waveform=clip.waveform,
            sampling_rate=clip.sampling_rate,
            tokens=result["tokens"],
            frame_seconds=result["frame_seconds"],
            attentions=result["attentions"],
            notices=notices,
            dimensions=result.get("dimensions") or {},
        )

    def _order(self, item: dict) -> int:
        return self.labels.index(item["label"])

    def _prepare(self, audio_path: str | Path):
        """The pipeline's length policy on the file, and the voice-activity check; errors told to the user."""
        try:
            clip = self.pipeline.prepare_audio(audio_path, max_seconds=self.max_seconds, name="The recording")
        except AudioError as error:
            raise InputError(_unreadable(audio_path, error)) from None
        except FFmpegMissingError:
            raise ServiceError(_NO_FFMPEG) from None
        except ValueError as error:  # the pipeline's words, and mer predict's
            advice = (
                " Check the microphone and record again." if "silent" in str(error) else " Record or upload again."
            )
            raise InputError(f"{error}{advice}") from None
        problem = speech_problem(clip.waveform, clip.sampling_rate)
        if problem is not None:
            raise InputError(f"{problem} Record or upload again.")
        return clip

    def audio_only_notice(self) -> str:
        """What a prediction without words is worth, from the scores train.py recorded in the model's config."""
        evaluation = getattr(self.model.config, "evaluation", None) or {}
        if not self.labels:
            return self._audio_only_dimensions_notice(evaluation)
        chance = 100 / len(self.labels)
        said = "No words were recognised, so the emotion was predicted from the audio alone."
        if "test_audio_only" not in evaluation or "test" not in evaluation:
            return (
                f"{said} How well this model does without words was never measured: treat the result as a guess "
                f"(chance is {chance:.0f}%)."
            )
        audio_only, both = 100 * evaluation["test_audio_only"]["ua"], 100 * evaluation["test"]["ua"]
        return (
            f"{said} Without words, this model's unweighted accuracy on speakers it never heard was "
            f"{audio_only:.0f}%, against {both:.0f}% with words and {chance:.0f}% by chance "
            f"({evaluation.get('evaluated_on', 'test')})."
        )

    def _audio_only_dimensions_notice(self, evaluation: dict) -> str:
        """`audio_only_notice` for a dimensions-only model: the concordance (CCC) it reached without words."""
        said = "No words were recognised, so the dimensions were predicted from the audio alone."
        alone = evaluation.get("test_audio_only", {}).get("dimensions", {})
        both = evaluation.get("test", {}).get("dimensions", {})
        measured = [name for name in self.dimensions if name in alone and name in both]
        if not measured:
            return (
                f"{said} How well this model does without words was never measured: treat the result as a guess "
                "(valence, in particular, is carried largely by the words)."
            )
        scores = ", ".join(
            f"{name} {alone[name]['ccc']:.2f} (with words {both[name]['ccc']:.2f})" for name in measured
        )
        return (
            f"{said} Without words, this model's concordance (CCC, 1 is perfect, 0 no better than a constant) on "
            f"speakers it never heard was {scores} ({evaluation.get('evaluated_on', 'test')})."
        )

    def speech_recognizer(self) -> SpeechRecognizer:
        """The pipeline's speech recognizer, loaded (once; a failed load is tried again by the next request).

        Raises:
            ServiceError: the speech-recognition model cannot be loaded.
        """
        speech_recognizer = self.pipeline.speech_recognizer()
        try:
            speech_recognizer.load()
        except OSError as error:  # any loading failure (network, disk, format) means the same to the user
            logger.exception("Loading the speech-recognition model %s failed", self.asr_model)
            raise ServiceError(
                f"Speech recognition ({self.asr_model}) is unavailable right now: type the transcript instead."
            ) from error
        return speech_recognizer

    def timeline(self, audio_path: str | Path | None, out_dir: str | Path, progress: bool = False) -> Timeline:
        """The emotion timeline of a recording of up to `max_timeline_minutes`: its speech segments (Silero VAD),
        each transcribed and classified, written by `mer.serving.timeline.write_timeline` into `out_dir`
        (`timeline.csv`, `timeline.json`, `timeline.png`). A recording without speech gives an empty timeline, not an
        error.

        `progress` shows a tqdm bar of the audio processed (which `gr.Progress(track_tqdm=True)` follows). The
        returned timeline names the recording by its file name only (as its `summary` shows it to the user).

        Raises:
            InputError: no audio, a file that cannot be read as audio, or a recording longer than
                `max_timeline_minutes`.
            ServiceError: the speech-recognition model cannot be loaded, or ffmpeg is missing.
        """
        if audio_path is None or not str(audio_path).strip():
            raise InputError("No audio: record with the microphone or upload a file, then submit.")
        self._check_timeline_length(audio_path)
        self.speech_recognizer()  # a ServiceError now rather than at the first segment
        limit = 60 * self.max_timeline_minutes
        try:  # the limit holds for the samples the file holds, whatever its header said
            timeline = write_timeline(
                self.pipeline, audio_path, out_dir, progress=progress, max_duration_seconds=limit, overwrite=True
            )
        except RecordingTooLong:
            raise InputError(self._too_long(f"more than {self._allowed}")) from None
        except AudioError as error:
            raise InputError(_unreadable(audio_path, error)) from None
        except FFmpegMissingError:
            raise ServiceError(_NO_FFMPEG) from None
        timeline.recording = Path(audio_path).name
        return timeline

    def _check_timeline_length(self, audio_path: str | Path) -> None:
        """Refuses, before anything is decoded, a recording whose header says it is over the limit (the samples are
        counted against the limit as they are decoded too, for a header that says nothing or lies)."""
        try:
            check_audio_file(audio_path)
        except AudioError as error:
            raise InputError(_unreadable(audio_path, error)) from None
        seconds = audio_duration(audio_path)
        if seconds is not None and seconds > 60 * self.max_timeline_minutes:
            raise InputError(self._too_long(f"{seconds / 60:.1f} minutes"))

    @property
    def _allowed(self) -> str:
        limit = self.max_timeline_minutes
        return f"{limit:g} minute{'' if limit == 1 else 's'}"

    def _too_long(self, lasts: str) -> str:
        return (
            f"The recording lasts {lasts}; the timeline takes at most {self._allowed}. Cut it into parts and give "
            "them one at a time."
        )


_NO_FFMPEG = "The server cannot decode audio: ffmpeg is not installed."


def _unreadable(path: str | Path, error: AudioError) -> str:
    """`error`'s message with the file named as the user named it (no server folders), and what to do."""
    message, name = str(error), Path(path).name
    for shown in {str(path), str(Path(path)), str(Path(path).resolve())}:
        message = message.replace(f"'{shown}'", f"'{name}'")
    return f"{message} Upload a wav, mp3, ogg or flac file."
