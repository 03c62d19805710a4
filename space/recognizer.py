"""What the Space does to one recording, without any UI: decode, check, transcribe when needed, classify, and keep
the last fusion layer's cross-modal attention.

`EmotionRecognizer(model)` loads a MER model and its processor once (a Hub id or a local directory, with
`trust_remote_code=True`); the speech-recognition pipeline is loaded on the first request without a transcript.
`EmotionRecognizer.analyse(audio_path, transcript)` returns an `Analysis` or raises `InputError` (the user's input
cannot be analysed) or `ServiceError` (speech recognition is unavailable); both messages are written for the user.
"""

from __future__ import annotations

import logging
import math
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoProcessor, pipeline

__all__ = [
    "DEFAULT_ASR_MODEL",
    "DEFAULT_MAX_SECONDS",
    "SILENCE_DBFS",
    "Analysis",
    "EmotionRecognizer",
    "InputError",
    "ServiceError",
    "decode_audio",
]

logger = logging.getLogger(__name__)

DEFAULT_ASR_MODEL = "openai/whisper-small.en"
DEFAULT_MAX_SECONDS = 60.0
# A recording whose RMS level is below this is refused as silent. Quiet speech sits around -40 dBFS and a quiet
# room's noise floor around -60 to -70 dBFS; an unplugged microphone gives digital zeros (-inf).
SILENCE_DBFS = -60.0
MAX_TRANSCRIPT_CHARACTERS = 2000
# Whisper reads 30 s windows; longer clips (up to the limit) are transcribed window by window.
_ASR_CHUNK_SECONDS = 30


class InputError(ValueError):
    """The recording or transcript cannot be analysed; the message says why, in words meant for the user."""


class ServiceError(RuntimeError):
    """Speech recognition is unavailable; the message says so, in words meant for the user."""


@dataclass(frozen=True)
class Analysis:
    """The result of one request.

    Attributes:
        probabilities: class name -> probability, every class of the model in `id2label` order, summing to 1.
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

    @property
    def seconds(self) -> float:
        """Duration of the analysed audio."""
        return len(self.waveform) / self.sampling_rate


def decode_audio(path: str | Path, sampling_rate: int, max_seconds: float) -> tuple[np.ndarray, bool]:
    """Decodes any audio (or video) file ffmpeg reads into mono float32 at `sampling_rate` (channels averaged).

    At most `max_seconds` are returned; the rest is not even decoded, so a long upload costs no memory.

    Returns:
        `(waveform, cropped)`: `cropped` is True when the file is longer than `max_seconds`.

    Raises:
        InputError: the file cannot be read as audio.
        ServiceError: ffmpeg is not installed.
    """
    if shutil.which("ffmpeg") is None:
        raise ServiceError("The server cannot decode audio: ffmpeg is not installed.")
    max_samples = int(max_seconds * sampling_rate)
    source = f"file:{Path(path).resolve()}"  # a local file, whatever its name looks like (never a URL or "-")
    command = [
        "ffmpeg", "-nostdin", "-v", "error", "-t", f"{max_seconds + 1:.3f}", "-i", source,
        "-vn", "-ac", "1", "-ar", str(sampling_rate), "-f", "f32le", "-acodec", "pcm_f32le", "-",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        reason = (result.stderr.decode(errors="replace").strip().splitlines() or ["unknown format"])[-1]
        reason = reason.replace(source, "").strip(" :")
        raise InputError(
            f"Could not read '{Path(path).name}' as audio ({reason}). Upload a wav, mp3, ogg or flac file."
        )
    waveform = np.frombuffer(result.stdout, dtype="<f4").astype(np.float32)
    return waveform[:max_samples], len(waveform) > max_samples


class EmotionRecognizer:
    """A MER model, its processor and (lazily) a speech-recognition pipeline, loaded once and shared by requests.

    Args:
        model_name_or_path: Hub id or local directory of a saved MER model and processor.
        asr_model: Hub id or local directory of an automatic-speech-recognition model, used when no transcript is
            given. Loaded on first use.
        max_seconds: longer recordings are cropped to their first `max_seconds` (with a notice); at most the audio
            encoder's window (Whisper: 30 s).
        device: where both models run; defaults to CUDA when available, else the CPU.

    Raises:
        ValueError: `model_name_or_path` is not a MER model, or `max_seconds` is not positive.
    """

    def __init__(
        self,
        model_name_or_path: str,
        asr_model: str = DEFAULT_ASR_MODEL,
        max_seconds: float = DEFAULT_MAX_SECONDS,
        device: str | None = None,
    ):
        if not max_seconds > 0:
            raise ValueError(f"max_seconds must be positive, got {max_seconds!r}.")
        self.model_name_or_path = str(model_name_or_path)
        self.asr_model = str(asr_model)
        self.max_seconds = float(max_seconds)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = AutoModel.from_pretrained(self.model_name_or_path, trust_remote_code=True).to(self.device).eval()
        if getattr(self.model.config, "model_type", None) != "mer":
            raise ValueError(f"{self.model_name_or_path} holds a {self.model.config.model_type!r} model, not MER.")
        self.processor = AutoProcessor.from_pretrained(self.model_name_or_path, trust_remote_code=True)
        window = getattr(self.model.config, "audio_max_seconds", None)  # Whisper towers take 30 s at once
        if window is not None and window < self.max_seconds:
            self.max_seconds = window
        # Transcripts are cut to what the text encoder can read (its tokenizer may not know its own limit).
        positions = getattr(self.model.config.text_config, "max_position_embeddings", None)
        self.max_text_tokens = min(self.processor.tokenizer.model_max_length, positions or math.inf)
        self._asr = None
        self._asr_lock = threading.Lock()

    @property
    def labels(self) -> list[str]:
        """The class names, in the model's order."""
        return [self.model.config.id2label[index] for index in range(len(self.model.config.id2label))]

    @property
    def sampling_rate(self) -> int:
        return self.processor.sampling_rate

    @property
    def min_samples(self) -> int:
        """The fewest samples (at `sampling_rate`) the audio encoder can turn into one frame."""
        return self.model.config.audio_receptive_field

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
        waveform, cropped = decode_audio(audio_path, self.sampling_rate, self.max_seconds)
        self._check_audio(waveform)
        notices = []
        if cropped:
            notices.append(
                f"The recording is longer than {self.max_seconds:g} s: only its first {self.max_seconds:g} s "
                "were analysed."
            )
        transcribed_by = None
        if not transcript:
            transcript, transcribed_by = self.transcribe(audio_path, waveform), self.asr_model
            if not transcript:
                notices.append(self.audio_only_notice())
        return self._classify(waveform, transcript, transcribed_by, notices)

    def audio_only_notice(self) -> str:
        """What a prediction without words is worth, from the scores train.py recorded in the model's config."""
        evaluation = getattr(self.model.config, "evaluation", None) or {}
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

    def _check_audio(self, waveform: np.ndarray) -> None:
        if len(waveform) == 0:
            raise InputError("The recording is empty: it holds no sound. Record or upload again.")
        if len(waveform) < self.min_samples:
            raise InputError(
                f"The recording is too short ({1000 * len(waveform) / self.sampling_rate:.0f} ms): the model needs "
                f"at least {1000 * self.min_samples / self.sampling_rate:.0f} ms of audio."
            )
        rms = float(np.sqrt(np.mean(np.square(waveform, dtype=np.float64))))
        level = 20 * math.log10(rms) if rms > 0 else -math.inf
        if level < SILENCE_DBFS:
            raise InputError(
                f"The recording is silent (level {level:.0f} dBFS, below {SILENCE_DBFS:.0f} dBFS). "
                "Check the microphone and record again."
            )

    def transcribe(self, audio_path: str | Path, waveform: np.ndarray) -> str:
        """Transcribes `waveform` (at `sampling_rate`; decoded again from `audio_path` when the speech-recognition
        model expects another rate). Raises ServiceError when the model cannot be loaded."""
        asr = self._load_asr()
        asr_rate = asr.feature_extractor.sampling_rate
        if asr_rate != self.sampling_rate:
            waveform, _ = decode_audio(audio_path, asr_rate, self.max_seconds)
        result = asr({"raw": waveform, "sampling_rate": asr_rate}, chunk_length_s=_ASR_CHUNK_SECONDS)
        return result["text"].strip()

    def _load_asr(self):
        with self._asr_lock:
            if self._asr is None:
                try:
                    self._asr = pipeline("automatic-speech-recognition", model=self.asr_model, device=self.device)
                except Exception as error:  # any loading failure (network, disk, format) means the same to the user
                    logger.exception("Loading the speech-recognition model %s failed", self.asr_model)
                    raise ServiceError(
                        f"Speech recognition ({self.asr_model}) is unavailable right now: type the transcript instead."
                    ) from error
            return self._asr

    @torch.inference_mode()
    def _classify(
        self, waveform: np.ndarray, transcript: str, transcribed_by: str | None, notices: list[str]
    ) -> Analysis:
        inputs = self.processor(
            audio=waveform, text=transcript, sampling_rate=self.sampling_rate, max_text_length=self.max_text_tokens
        ).to(self.device)
        if len(self.processor.tokenizer(transcript)["input_ids"]) > self.max_text_tokens:
            notices.append(
                f"The transcript is longer than the model reads: only its first {self.max_text_tokens} tokens "
                "were used."
            )
        output = self.model(**inputs, output_attentions=True)
        probabilities = output.logits.float().softmax(dim=-1)[0].tolist()
        num_frames = int(output.audio_frame_mask[0].sum())
        num_tokens = int(inputs["text_attention_mask"][0].sum())
        attentions = {}
        if output.text_attentions:  # (B, heads, tokens, frames): words are the queries
            attentions["words → audio"] = output.text_attentions[-1][0].mean(dim=0)[:num_tokens, :num_frames]
        if output.audio_attentions:  # (B, heads, frames, tokens): audio frames are the queries
            attentions["audio → words"] = output.audio_attentions[-1][0].mean(dim=0)[:num_frames, :num_tokens].T
        return Analysis(
            probabilities=dict(zip(self.labels, probabilities, strict=True)),
            transcript=transcript,
            transcribed_by=transcribed_by,
            waveform=waveform,
            sampling_rate=self.sampling_rate,
            tokens=self.processor.tokenizer.convert_ids_to_tokens(inputs["input_ids"][0][:num_tokens].tolist()),
            frame_seconds=self.model.config.audio_frame_stride / self.sampling_rate,
            attentions={name: weights.float().cpu().numpy() for name, weights in attentions.items()},
            notices=notices,
        )
