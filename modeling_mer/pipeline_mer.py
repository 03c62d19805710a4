"""MERPipeline: `pipeline("multimodal-emotion-recognition", model=..., trust_remote_code=True)`.

Every saved MER config names this class under `custom_pipelines`, and this file travels with the model's code, so
the one-liner works on any saved MER model:

    >>> from transformers import pipeline
    >>> classifier = pipeline("multimodal-emotion-recognition", model="path/or/hub-id", trust_remote_code=True)
    >>> classifier("speech.wav", text="I can't believe you did that")
    {'labels': [{'label': 'angry', 'score': 0.81}, ...], 'transcript': "I can't believe you did that",
     'transcribed_by': None}

A missing transcript is transcribed (`SpeechRecognizer`: faster-whisper where installed, else transformers' speech
recognition pipeline; `asr_model=` or `MER_ASR_MODEL` names the model).
"""

from __future__ import annotations

import logging
import math
import subprocess
from collections.abc import Mapping, Sequence, Sized
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import Pipeline
from transformers.pipelines.pt_utils import PipelineDataset, PipelineIterator

from .asr_mer import SpeechRecognizer
from .processing_mer import resample, to_mono_float32

__all__ = ["MERPipeline", "PIPELINE_TASK", "SILENCE_DBFS", "audio_problem", "pipeline_registration"]

logger = logging.getLogger(__name__)

PIPELINE_TASK = "multimodal-emotion-recognition"
# Longest audio one prediction reads when the audio encoder has no window of its own (wav2vec2's self-attention
# grows with the square of the length): longer inputs are cropped, with a warning. Long recordings are a timeline's
# job (voice activity detection, then one prediction per segment).
DEFAULT_MAX_SECONDS = 60.0


def pipeline_registration() -> dict:
    """The `custom_pipelines` entry every MER config carries, so that `pipeline(PIPELINE_TASK, model=...)` finds
    this class in the model's own files."""
    return {PIPELINE_TASK: {"impl": "pipeline_mer.MERPipeline", "pt": ("AutoModel",), "type": "multimodal"}}


# A clip whose RMS level is below this holds nothing to classify: quiet speech sits around -40 dBFS, a quiet room's
# noise floor around -60 to -70 dBFS, and digital silence or an unplugged microphone gives zeros (-inf dBFS).
SILENCE_DBFS = -60.0


def audio_problem(
    waveform: np.ndarray, sampling_rate: int, min_samples: int, name: str = "The recording"
) -> str | None:
    """Why `waveform` cannot be classified, in the words every entry point (the pipeline, `mer predict`, the Space)
    uses, or None: no samples, fewer than `min_samples` (the audio encoder's receptive field), samples that are not
    numbers (a damaged float file), or silence (an RMS level below `SILENCE_DBFS`). `name` names the clip in the
    message."""
    if len(waveform) == 0:
        return f"{name} is empty: it holds no audio samples."
    if len(waveform) < min_samples:
        return (
            f"{name} is too short ({1000 * len(waveform) / sampling_rate:.0f} ms): the model needs at least "
            f"{1000 * min_samples / sampling_rate:.0f} ms of audio."
        )
    samples = waveform.double() if isinstance(waveform, torch.Tensor) else np.asarray(waveform, dtype=np.float64)
    finite = np.isfinite(np.asarray(samples))
    if not finite.all():
        first = int(np.argmin(finite)) / sampling_rate
        return (
            f"{name} holds {int((~finite).sum())} samples that are not numbers (NaN or infinite), the first at "
            f"{first:.2f} s: the file is damaged."
        )
    rms = float((samples**2).mean() ** 0.5)
    level = 20 * math.log10(rms) if rms > 0 else -math.inf
    if level < SILENCE_DBFS:
        return f"{name} is silent (level {level:.0f} dBFS, below {SILENCE_DBFS:.0f} dBFS): there is no speech in it."
    return None


class MERPipeline(Pipeline):
    """Emotion of speech and its transcript: audio in (any of the forms below), the model's classes with scores out.

    Inputs, one or a list of:
        - a path to an audio (or video) file in any format ffmpeg reads, or its raw bytes;
        - a numpy array or torch tensor of samples (mono, or `(channels, samples)`), with `sampling_rate=`;
        - a dict with `"audio"` (or `"array"` / `"raw"`: any of the above), `"sampling_rate"` (for arrays) and an
          optional `"text"`, the transcript; `datasets`' decoded audio (`{"array", "sampling_rate"}`) works as is.
        `text=` gives the transcript of a single input, or a list of transcripts for a list of inputs.

    Call parameters (also accepted by `pipeline(...)`):
        top_k: how many classes to return, most likely first (default: all).
        sampling_rate: the rate of array inputs without their own.
        asr_model: the speech-recognition model for missing transcripts (default `MER_ASR_MODEL`, else Whisper
            small.en); `asr_backend`: "auto", "faster-whisper" or "transformers".
        max_seconds: longer audio is cropped to its first `max_seconds`, with a warning (default: the audio
            encoder's window, e.g. Whisper's 30 s, else 60 s).
        batch_size: utterances per forward pass (inputs of a batch are padded to the longest).

    Output per input: `{"labels": [{"label", "score"}, ...], "transcript": str, "transcribed_by": str | None}`,
    where `transcribed_by` names the speech-recognition model when the transcript was not given.

    Raises:
        ValueError: naming the input: an unreadable or empty file, an array without its sampling rate, audio
            shorter than the encoder's receptive field, a transcript that is not a string, or an unknown parameter.
    """

    _load_processor = True
    _load_tokenizer = False
    _load_feature_extractor = False
    _load_image_processor = False
    _load_video_processor = False

    def __init__(self, *args, asr_model: str | None = None, asr_backend: str = "auto", **kwargs):
        self.asr_model, self.asr_backend = asr_model, asr_backend
        self._speech_recognizers: dict[tuple[str | None, str], SpeechRecognizer] = {}
        super().__init__(*args, **kwargs)
        self.speech_recognizer()  # checks the speech-recognition settings now; the model loads on first use

    def _sanitize_parameters(
        self,
        top_k: int | None = None,
        sampling_rate: int | None = None,
        asr_model: str | None = None,
        asr_backend: str | None = None,
        max_seconds: float | None = None,
        text=None,
        **unknown,
    ):
        if unknown:
            raise ValueError(f"Unknown parameters for {PIPELINE_TASK}: {', '.join(sorted(unknown))}.")
        if text is not None:
            raise ValueError("text= belongs to the call: classifier(audio, text=...).")
        preprocess, postprocess = {}, {}
        if sampling_rate is not None:
            preprocess["sampling_rate"] = _positive(sampling_rate, "sampling_rate", int)
        if max_seconds is not None:
            preprocess["max_seconds"] = _positive(max_seconds, "max_seconds", float)
        if asr_model is not None or asr_backend is not None:
            preprocess["speech_recognizer"] = self.speech_recognizer(asr_model, asr_backend)
        if top_k is not None:
            postprocess["top_k"] = _positive(top_k, "top_k", int)
        return preprocess, {}, postprocess

    def __call__(self, inputs, text: str | Sequence[str] | None = None, **kwargs):
        """Classifies one input or a list (see the class docstring); `text` pairs transcripts with the inputs."""
        if text is not None:
            if isinstance(inputs, list):
                if isinstance(text, str) or len(text) != len(inputs):
                    raise ValueError(f"text= must be a list of {len(inputs)} transcripts, one per input.")
                inputs = [_with_text(item, words) for item, words in zip(inputs, text, strict=True)]
            else:
                inputs = _with_text(inputs, text)
        return super().__call__(inputs, **kwargs)

    def speech_recognizer(self, model: str | None = None, backend: str | None = None) -> SpeechRecognizer:
        """The speech recognizer for `model` with `backend` (default: the pipeline's `asr_model` and `asr_backend`;
        without an `asr_model`, `MER_ASR_MODEL`, else Whisper small.en) on this pipeline's device, made once."""
        key = (model or self.asr_model, backend or self.asr_backend)
        if key not in self._speech_recognizers:
            self._speech_recognizers[key] = SpeechRecognizer(key[0], backend=key[1], device=self.device)
        return self._speech_recognizers[key]

    @property
    def max_seconds(self) -> float:
        """The longest audio a prediction reads by default: the audio encoder's window, else 60 s."""
        return getattr(self.model.config, "audio_max_seconds", None) or DEFAULT_MAX_SECONDS

    def preprocess(self, inputs, sampling_rate=None, max_seconds=None, speech_recognizer=None) -> dict:
        limit = max_seconds or self.max_seconds
        waveform, text, name = _read_input(inputs, sampling_rate, self.processor.sampling_rate, limit)
        max_samples = int(limit * self.processor.sampling_rate)
        if len(waveform) > max_samples:  # a file is decoded up to just past the limit, so its length is unknown
            lasts = "more than" if _is_encoded(inputs) else f"{len(waveform) / self.processor.sampling_rate:.1f} s,"
            logger.warning(
                "%s lasts %s %g s: only its first %g s are classified (for long recordings, segment them first).",
                name, lasts, limit, limit,
            )  # fmt: skip
            waveform = waveform[:max_samples]
        problem = audio_problem(waveform, self.processor.sampling_rate, self.model.config.audio_receptive_field, name)
        if problem is not None:
            raise ValueError(problem)
        transcribed_by = None
        if text is None or not text.strip():
            recognizer = speech_recognizer or self.speech_recognizer()
            speech = resample(waveform, self.processor.sampling_rate, recognizer.sampling_rate)
            text, transcribed_by = recognizer.transcribe(speech), recognizer.model
        return {"waveform": waveform, "text": text.strip(), "transcribed_by": transcribed_by}

    def get_iterator(self, inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params):
        # Items are padded together by the model's own processor (the default collation pads tensors only). A list
        # is a dataset; a generator (or a `datasets` stream) is read as it comes.
        if isinstance(inputs, Sized):
            dataset = PipelineDataset(inputs, self.preprocess, preprocess_params)
        else:
            dataset = PipelineIterator(inputs, self.preprocess, preprocess_params)
            num_workers = min(num_workers, 1)
        loader = DataLoader(dataset, num_workers=num_workers, batch_size=batch_size, collate_fn=self._collate)
        forwarded = PipelineIterator(loader, self.forward, forward_params, loader_batch_size=batch_size)
        return PipelineIterator(forwarded, self.postprocess, postprocess_params)

    def run_single(self, inputs, preprocess_params, forward_params, postprocess_params):
        batch = self._collate([self.preprocess(inputs, **preprocess_params)])
        outputs = self.forward(batch, **forward_params)
        return self.postprocess(outputs, **postprocess_params)

    def _collate(self, items: list[dict]) -> dict:
        model_inputs = self.processor(
            audio=[item["waveform"] for item in items],
            text=[item["text"] for item in items],
            sampling_rate=self.processor.sampling_rate,
            max_text_length=self.max_text_tokens,
        )
        return {
            "model_inputs": dict(model_inputs),
            "transcript": [item["text"] for item in items],
            "transcribed_by": [item["transcribed_by"] for item in items],
        }

    @property
    def max_text_tokens(self) -> int:
        """The most transcript tokens the text encoder reads (its tokenizer may not know its own limit): longer
        transcripts are cut to this."""
        positions = getattr(self.model.config.text_config, "max_position_embeddings", None) or math.inf
        return int(min(self.processor.tokenizer.model_max_length, positions))

    @property
    def labels(self) -> list[str]:
        """The model's class names, in its `id2label` order."""
        return [self.model.config.id2label[index] for index in range(len(self.model.config.id2label))]

    def _forward(self, batch: dict) -> dict:
        logits = self.model(**batch["model_inputs"]).logits  # (B, num_labels)
        return {
            "probabilities": logits.float().softmax(dim=-1),
            "transcript": batch["transcript"],
            "transcribed_by": batch["transcribed_by"],
        }

    def postprocess(self, outputs: dict, top_k: int | None = None) -> dict:
        """One item's `{"probabilities": (1, C), "transcript", "transcribed_by"}` (the last two still in a list of one
        when the batch size is 1: the pipeline's iterator only unbatches larger batches)."""
        probabilities = outputs["probabilities"].reshape(-1).tolist()
        id2label = self.model.config.id2label
        ranked = sorted(range(len(probabilities)), key=lambda index: -probabilities[index])[:top_k]
        return {
            "labels": [{"label": id2label[index], "score": probabilities[index]} for index in ranked],
            "transcript": _unbatched(outputs["transcript"]),
            "transcribed_by": _unbatched(outputs["transcribed_by"]),
        }


def _unbatched(value):
    return value[0] if isinstance(value, list) else value


def _positive(value, name: str, kind: type):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}.")
    return kind(value)


def _with_text(item, text):
    if text is not None and not isinstance(text, str):
        raise ValueError(f"A transcript must be a string, got {type(text).__name__}.")
    if isinstance(item, Mapping):
        return {**item, "text": text}
    return {"audio": item, "text": text}


def _is_encoded(item) -> bool:
    """Whether `item` (or its dict's audio) is a file path or encoded bytes, which are decoded only up to the crop."""
    if isinstance(item, Mapping):
        item = next((item[key] for key in ("audio", "array", "raw") if key in item), None)
    return isinstance(item, (str, Path, bytes, bytearray))


def _read_input(
    item, sampling_rate: int | None, model_rate: int, max_seconds: float
) -> tuple[torch.Tensor, str | None, str]:
    """`(waveform, text, name)`: mono float32 samples at `model_rate`, the transcript given (or None), and how
    errors name the input. Files and bytes are decoded up to just past `max_seconds` (so that the caller can tell
    that they were longer), never whole: memory is bounded by the crop, not by the file."""
    text = None
    if isinstance(item, Mapping):
        audio_keys = [key for key in ("audio", "array", "raw") if key in item]
        if len(audio_keys) != 1:
            raise ValueError(
                f"An input dict needs exactly one of 'audio', 'array' or 'raw', got the keys {sorted(item)}."
            )
        text = item.get("text")
        if text is not None and not isinstance(text, str):
            raise ValueError(f"'text' must be a string, got {type(text).__name__}.")
        sampling_rate = item.get("sampling_rate", sampling_rate)
        name = str(item.get("path") or "the input")
        item = item[audio_keys[0]]
    else:
        name = "the input"
    decode_seconds = max_seconds + 1 / model_rate  # one sample more than the crop says "it was longer"
    if isinstance(item, (str, Path)):
        name = f"'{item}'"
        item = _decode(Path(item), model_rate, decode_seconds, name)
        sampling_rate = model_rate
    elif isinstance(item, (bytes, bytearray)):
        item = _decode(bytes(item), model_rate, decode_seconds, "the audio bytes")
        sampling_rate = model_rate
    elif hasattr(item, "get_all_samples"):  # a torchcodec AudioDecoder, as `datasets` 4+ returns audio
        samples = item.get_all_samples()
        item, sampling_rate = samples.data, samples.sample_rate
    elif isinstance(item, (np.ndarray, torch.Tensor)):
        if sampling_rate is None:
            raise ValueError(f"{name} is an array: give its sampling_rate (in the dict, or sampling_rate=).")
    else:
        raise ValueError(
            f"{name} is a {type(item).__name__}: give a file path, bytes, an array with its sampling_rate, or a dict."
        )
    waveform = to_mono_float32(item, name)
    return resample(waveform, int(sampling_rate), model_rate), text, name


def _decode(source: Path | bytes, sampling_rate: int, max_seconds: float, name: str) -> np.ndarray:
    """The first `max_seconds` of `source` (a file, or encoded bytes) as mono float32 at `sampling_rate`, decoded
    by ffmpeg, which stops there (transformers' `ffmpeg_read` decodes the whole input and takes bytes only).

    Written here, not shared with the commands' audio decoding: this file travels alone with every saved model.
    """
    if isinstance(source, Path):
        if not source.is_file():
            raise ValueError(f"{name} is not a file.")
        if source.stat().st_size == 0:
            raise ValueError(f"{name} is empty (0 bytes).")
        # "file:" keeps a name with a colon or a leading dash from being read as a protocol or an option
        location, payload = f"file:{source.resolve()}", None
    else:
        if not source:
            raise ValueError(f"{name} are empty (0 bytes).")
        location, payload = "pipe:0", source
    command = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", *(["-nostdin"] if payload is None else []), "-i", location,
        "-t", f"{max_seconds:.6f}", "-vn", "-ac", "1", "-ar", str(sampling_rate), "-f", "f32le", "pipe:1",
    ]  # fmt: skip
    try:
        result = subprocess.run(command, input=payload, capture_output=True, check=False)
    except FileNotFoundError:
        raise ValueError(
            f"Could not read {name}: ffmpeg is not installed (apt install ffmpeg, brew install ffmpeg or conda "
            "install ffmpeg), or give the audio as an array with its sampling_rate."
        ) from None
    if result.returncode != 0:
        lines = result.stderr.decode("utf-8", errors="replace").strip().splitlines()
        raise ValueError(f"Could not read {name} as audio ({lines[-1] if lines else 'ffmpeg failed'}).")
    waveform = np.frombuffer(result.stdout, dtype=np.float32).copy()  # writable
    if waveform.size == 0:
        raise ValueError(f"{name} holds no audio samples.")
    return waveform
