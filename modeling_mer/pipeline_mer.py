"""MERPipeline: `pipeline("multimodal-emotion-recognition", model=..., trust_remote_code=True)`, the one door through
which a saved MER model answers: the one-liner, the command line and the demo all classify through it.

The class registers itself with transformers' `PIPELINE_REGISTRY`; a model saved through it (`pipe.save_pretrained`,
`pipe.push_to_hub`, or `save_with_pipeline`, as every MER model is saved after training) carries this file beside its
code and names the class under `custom_pipelines` in its config, so the one-liner works on any saved MER model:

    >>> from transformers import pipeline
    >>> classifier = pipeline("multimodal-emotion-recognition", model="path/or/hub-id", trust_remote_code=True)
    >>> classifier("speech.wav", text="I can't believe you did that")
    {'labels': [{'label': 'angry', 'score': 0.81}, ...], 'transcript': "I can't believe you did that",
     'transcribed_by': None}

A missing transcript is transcribed (`SpeechRecognizer`: faster-whisper where installed, else transformers' speech
recognition pipeline; `asr_model=` or `MER_ASR_MODEL` names the model).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence, Sized
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import AutoModel, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.pt_utils import PipelineDataset, PipelineIterator

from .asr_mer import SpeechRecognizer
from .processing_mer import resample, to_mono_float32

__all__ = [
    "DEFAULT_MAX_SECONDS",
    "PIPELINE_TASK",
    "RUNTIMES",
    "SILENCE_DBFS",
    "AudioError",
    "FFmpegMissingError",
    "MERPipeline",
    "PreparedAudio",
    "audio_problem",
    "check_audio_file",
    "decode_audio",
    "ffmpeg_decoder",
    "model_fingerprint",
    "save_with_pipeline",
]

logger = logging.getLogger(__name__)

PIPELINE_TASK = "multimodal-emotion-recognition"
# Longest audio one prediction reads when the audio encoder has no window of its own (wav2vec2's self-attention
# grows with the square of the length): longer inputs are cropped, with a warning. Long recordings are a timeline's
# job (voice activity detection, then one prediction per segment).
DEFAULT_MAX_SECONDS = 60.0
# How the model runs: as it is (eager PyTorch), with int8 dynamically quantised linear layers, or as its ONNX export
# in onnxruntime (the two last on the CPU, prepared by the serving package, outside the model's files).
RUNTIMES = ("eager", "int8", "onnx")


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


class AudioError(ValueError):
    """Audio that cannot be read: the message names the file (or the bytes) and gives ffmpeg's reason."""


class FFmpegMissingError(RuntimeError):
    """ffmpeg (or ffprobe) is not installed."""


def ffmpeg_executable(name: str = "ffmpeg") -> str:
    """The path of `name` (ffmpeg or ffprobe).

    Raises:
        FFmpegMissingError: it is not installed.
    """
    found = shutil.which(name)
    if found is None:
        raise FFmpegMissingError(
            f"{name} is not installed: MER decodes audio files with ffmpeg (apt install ffmpeg, brew install ffmpeg, "
            "conda install ffmpeg), or give the audio as an array with its sampling_rate."
        )
    return found


def ffmpeg_decoder(location: str, sampling_rate: int, max_seconds: float | None = None) -> list[str]:
    """The ffmpeg command that writes `location` (``file:<path>``, or ``pipe:0`` for bytes on its standard input) to
    its standard output as mono float32 at `sampling_rate` (channels averaged), stopping after `max_seconds` of
    output when given (the rest is never decoded)."""
    limit = [] if max_seconds is None else ["-t", f"{max_seconds:.6f}"]
    stdin = [] if location == "pipe:0" else ["-nostdin"]
    return [
        ffmpeg_executable(), "-hide_banner", "-loglevel", "error", *stdin, "-i", location, *limit,
        "-vn", "-ac", "1", "-ar", str(sampling_rate), "-f", "f32le", "-acodec", "pcm_f32le", "pipe:1",
    ]  # fmt: skip


def file_location(path: str | Path) -> str:
    """ffmpeg's name for a local file, whatever the file's name looks like: ``file:`` keeps a name with a colon or
    a leading dash from being read as a protocol or an option."""
    return f"file:{Path(path).resolve()}"


def ffmpeg_failure(name: str, location: str, stderr: bytes) -> AudioError:
    """The error for an ffmpeg run that failed on `location`: `name` and ffmpeg's last line, without the path."""
    lines = stderr.decode("utf-8", errors="replace").strip().splitlines() or ["unknown format"]
    reason = lines[-1].replace(location, "").strip(" :") or "unknown format"
    return AudioError(f"Could not read {name} as audio ({reason}).")


def check_audio_file(path: str | Path) -> None:
    """What can be said of a file before decoding it.

    Raises:
        AudioError: naming `path`: it is missing, a directory, or empty.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"Could not read '{path}' as audio (no such file).")
    if path.is_dir():
        raise AudioError(f"Could not read '{path}' as audio (it is a directory).")
    if path.stat().st_size == 0:
        raise AudioError(f"Could not read '{path}' as audio (the file is empty: 0 bytes).")


def decode_audio(
    source: str | Path | bytes, sampling_rate: int, max_seconds: float | None = None
) -> tuple[np.ndarray, bool]:
    """A file (any format ffmpeg reads, at any rate and channel count) or its encoded bytes as mono float32 at
    `sampling_rate`, decoded by ffmpeg, which stops after `max_seconds` when given: memory is bounded by the crop,
    not by the file (transformers' `ffmpeg_read` decodes everything, and takes bytes only).

    Returns:
        `(waveform, cropped)`: at most `max_seconds` of samples, and whether the source holds more.

    Raises:
        AudioError: naming the file: missing, empty, or not audio.
        FFmpegMissingError: ffmpeg is not installed.
    """
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise AudioError("Could not read the audio bytes as audio (they are empty: 0 bytes).")
        name, location, payload = "the audio bytes", "pipe:0", bytes(source)
    else:
        check_audio_file(source)
        name, location, payload = f"'{source}'", file_location(source), None
    # One sample more than the crop tells that the source was longer.
    decoded = None if max_seconds is None else max_seconds + 1 / sampling_rate
    result = subprocess.run(
        ffmpeg_decoder(location, sampling_rate, decoded), input=payload, capture_output=True, check=False
    )
    if result.returncode != 0:
        raise ffmpeg_failure(name, location, result.stderr)
    waveform = np.frombuffer(result.stdout, dtype="<f4").astype(np.float32)  # a writable copy
    if waveform.size == 0:
        raise AudioError(f"Could not read {name} as audio (it holds no audio samples).")
    if max_seconds is None:
        return waveform, False
    max_samples = int(max_seconds * sampling_rate)
    return waveform[:max_samples], len(waveform) > max_samples


def model_fingerprint(model: torch.nn.Module) -> str:
    """12 hex digits that identify a model's classes and weights (wherever it was loaded from, whatever version of
    its code saved it): its config without paths, versions and code pointers, and every parameter's sum. Two
    different models share it only by accident."""
    config = model.config.to_dict()
    for volatile in ("_name_or_path", "name_or_path", "transformers_version", "auto_map", "custom_pipelines"):
        config.pop(volatile, None)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, parameter in model.state_dict().items():
            digest.update(f"{name}:{float(parameter.double().sum()):.6e}".encode())
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class PreparedAudio:
    """One clip as the model reads it (`MERPipeline.prepare_audio`).

    Attributes:
        waveform: mono float32 samples at the model's rate, at most the crop long.
        cropped: whether the input was longer than the crop.
        name: how messages name the clip.
        sampling_rate: the model's audio rate in Hz.
    """

    waveform: np.ndarray
    cropped: bool
    name: str
    sampling_rate: int

    @property
    def seconds(self) -> float:
        return len(self.waveform) / self.sampling_rate


class MERPipeline(Pipeline):
    """Emotion of speech and its transcript: audio in (any of the forms below), the model's classes with scores out.

    Inputs, one or a list of:
        - a path to an audio (or video) file in any format ffmpeg reads, or its raw bytes;
        - a numpy array or torch tensor of samples (mono, or `(channels, samples)`), with `sampling_rate=`;
        - a `PreparedAudio` from `prepare_audio` (taken as it is: decoded, resampled and checked once);
        - a dict with `"audio"` (or `"array"` / `"raw"`: any of the above), `"sampling_rate"` (for arrays) and an
          optional `"text"`, the transcript; `datasets`' decoded audio (`{"array", "sampling_rate"}`) works as is.
        `text=` gives the transcript of a single input, or a list of transcripts for a list of inputs.

    Constructor arguments (beside transformers' `model`, `processor`, `device`, ...; `pipeline(...)` passes them on):
        runtime: how the model runs, one of `RUNTIMES`: "eager" (the model as it is), or on the CPU "int8" or
            "onnx", which `prepare_runtime(model, runtime, processor=...)` makes ready (the model's files hold
            only the eager runtime; the package that serves it brings the others).
        model_name: what the model is called in outputs and messages (default: where it was loaded from).
        asr_model, asr_backend: the speech recognition for missing transcripts (see `speech_recognizer`).
    The pipeline keeps `runtime`, `model_name` and `fingerprint` (`model_fingerprint` of the weights it runs).

    Call parameters (also accepted by `pipeline(...)`):
        top_k: how many classes to return, most likely first (default: all).
        sampling_rate: the rate of array inputs without their own.
        asr_model: the speech-recognition model for missing transcripts (default `MER_ASR_MODEL`, else Whisper
            small.en); `asr_backend`: "auto", "faster-whisper" or "transformers".
        max_seconds: longer audio is cropped to its first `max_seconds`, with a warning (default: the audio
            encoder's window, e.g. Whisper's 30 s, else 60 s).
        output_attentions: also return what the model read and where it looked (eager and int8 runtimes):
            `"tokens"` (the transcript's tokens as the text encoder saw them, special tokens included),
            `"frame_seconds"` (seconds between two audio frames) and `"attentions"`: the last fusion layer's
            cross-modal attention averaged over heads, each `(tokens, frames)`: `"words → audio"` (each row, one
            word's attention over time, sums to 1) and/or `"audio → words"` (each column, one moment's attention
            over the words, sums to 1), as the model's fusion direction has them.
        batch_size: utterances per forward pass (inputs of a batch are padded to the longest).

    Output per input: `{"labels": [{"label", "score"}, ...], "transcript": str, "transcribed_by": str | None}`,
    where `transcribed_by` names the speech-recognition model when the transcript was not given; a model that
    predicts dimensions of emotion (`config.dimensions`) adds `"dimensions": {"arousal": float, ...}`, each on
    [0, 1] (0 the lowest rating of its training corpus's scale, 1 the highest). A dimensions-only model (no classes)
    gives no `"labels"`, and refuses `top_k`.

    Raises:
        ValueError: naming the input: an unreadable or empty file (`AudioError`), an array without its sampling
            rate, audio shorter than the encoder's receptive field, silent or not numbers, a transcript that is not
            a string, an unknown parameter or runtime.
        FFmpegMissingError: a file or bytes to decode, and no ffmpeg.
    """

    _load_processor = True
    _load_tokenizer = False
    _load_feature_extractor = False
    _load_image_processor = False
    _load_video_processor = False

    def __init__(
        self,
        *args,
        runtime: str = "eager",
        prepare_runtime: Callable[..., torch.nn.Module] | None = None,
        model_name: str | None = None,
        asr_model: str | None = None,
        asr_backend: str = "auto",
        **kwargs,
    ):
        if runtime not in RUNTIMES:
            raise ValueError(f"Unknown runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}.")
        if runtime != "eager" and prepare_runtime is None:
            raise ValueError(
                f"runtime={runtime!r} needs prepare_runtime=, the function that makes the model ready for it "
                "(called as prepare_runtime(model, runtime, processor=processor))."
            )
        self.asr_model, self.asr_backend = asr_model, asr_backend
        self._speech_recognizers: dict[tuple[str | None, str], SpeechRecognizer] = {}
        super().__init__(*args, **kwargs)
        self.model_name = model_name or str(
            getattr(self.model.config, "name_or_path", "") or type(self.model).__name__
        )
        self.fingerprint = model_fingerprint(self.model)
        self.runtime = runtime
        if runtime != "eager":
            self.model = prepare_runtime(self.model.eval(), runtime, processor=self.processor)
        self.speech_recognizer()  # checks the speech-recognition settings now; the model loads on first use

    def save_pretrained(self, save_directory, **kwargs):
        """The model with its code, this pipeline's code (named under `custom_pipelines` in its config) and the
        processor, into `save_directory` (as transformers' custom pipelines are shared); `kwargs` go to the model's
        `save_pretrained` (e.g. `state_dict`).

        Raises:
            ValueError: the pipeline runs another runtime than eager (save the model it was made from).
        """
        if self.runtime != "eager":
            raise ValueError(f"A pipeline on the {self.runtime} runtime cannot be saved: save the eager model's.")
        super().save_pretrained(save_directory, **kwargs)
        self.processor.save_pretrained(save_directory)

    def _sanitize_parameters(
        self,
        top_k: int | None = None,
        sampling_rate: int | None = None,
        asr_model: str | None = None,
        asr_backend: str | None = None,
        max_seconds: float | None = None,
        output_attentions: bool | None = None,
        text=None,
        **unknown,
    ):
        if unknown:
            raise ValueError(f"Unknown parameters for {PIPELINE_TASK}: {', '.join(sorted(unknown))}.")
        if text is not None:
            raise ValueError("text= belongs to the call: classifier(audio, text=...).")
        preprocess, forward, postprocess = {}, {}, {}
        if sampling_rate is not None:
            preprocess["sampling_rate"] = _positive(sampling_rate, "sampling_rate", int)
        if max_seconds is not None:
            preprocess["max_seconds"] = _positive(max_seconds, "max_seconds", float)
        if asr_model is not None or asr_backend is not None:
            preprocess["speech_recognizer"] = self.speech_recognizer(asr_model, asr_backend)
        if output_attentions:
            forward["output_attentions"] = True
        if top_k is not None:
            if not self.labels:
                raise ValueError(f"top_k={top_k}: this model predicts no classes, only {', '.join(self.dimensions)}.")
            postprocess["top_k"] = _positive(top_k, "top_k", int)
        return preprocess, forward, postprocess

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

    @property
    def sampling_rate(self) -> int:
        """The model's audio rate in Hz."""
        return self.processor.sampling_rate

    @property
    def min_samples(self) -> int:
        """The fewest samples (at `sampling_rate`) the audio encoder turns into one frame."""
        return self.model.config.audio_receptive_field

    def prepare_audio(
        self,
        audio,
        sampling_rate: int | None = None,
        max_seconds: float | None = None,
        name: str | None = None,
    ) -> PreparedAudio:
        """The length policy, in one place for every entry point (this pipeline's calls, and the command line and
        the demo that classify through it): `audio` (a path, encoded bytes, an array or tensor with its
        `sampling_rate`, a torchcodec decoder) decoded and resampled once to mono float32 at the model's rate,
        cropped to its first `max_seconds` (default `self.max_seconds`; files and bytes are decoded no further), and
        refused when there is nothing to classify.

        Args:
            name: how problems name the clip (default: the file, "the audio bytes" or "the input"); decoding errors
                always name the file.

        Raises:
            ValueError: in `audio_problem`'s words (empty, shorter than `min_samples`, not numbers, silent), or an
                array without its rate, or an input of another type; `AudioError` for a file or bytes that cannot
                be decoded.
            FFmpegMissingError: a file or bytes to decode, and no ffmpeg.
        """
        limit = self.max_seconds if max_seconds is None else _positive(max_seconds, "max_seconds", float)
        rate = self.sampling_rate
        if isinstance(audio, PreparedAudio) and audio.sampling_rate == rate and audio.seconds <= limit:
            return audio  # prepared by this policy already (the commands and the Space prepare, then classify)
        cropped = False
        if isinstance(audio, (str, Path)):
            name = name or f"'{audio}'"
            audio, cropped = decode_audio(audio, rate, limit)
            sampling_rate = rate
        elif isinstance(audio, (bytes, bytearray)):
            name = name or "the audio bytes"
            audio, cropped = decode_audio(bytes(audio), rate, limit)
            sampling_rate = rate
        elif hasattr(audio, "get_all_samples"):  # a torchcodec AudioDecoder, as `datasets` 4+ returns audio
            samples = audio.get_all_samples()
            audio, sampling_rate = samples.data, samples.sample_rate
        elif isinstance(audio, (np.ndarray, torch.Tensor)):
            if sampling_rate is None:
                raise ValueError(
                    f"{name or 'The input'} is an array: give its sampling_rate (in the dict, or sampling_rate=)."
                )
        else:
            raise ValueError(
                f"{name or 'The input'} is a {type(audio).__name__}: give a file path, bytes, an array with its "
                "sampling_rate, or a dict."
            )
        name = name or "the input"
        waveform = resample(to_mono_float32(audio, name, int(sampling_rate)), int(sampling_rate), rate).numpy()
        max_samples = int(limit * rate)
        if len(waveform) > max_samples:
            waveform, cropped = waveform[:max_samples], True
        problem = audio_problem(waveform, rate, self.min_samples, name)
        if problem is not None:
            raise ValueError(problem)
        return PreparedAudio(waveform=waveform, cropped=cropped, name=name, sampling_rate=rate)

    def preprocess(self, inputs, sampling_rate=None, max_seconds=None, speech_recognizer=None) -> dict:
        audio, text, sampling_rate, name = _unpacked(inputs, sampling_rate)
        clip = self.prepare_audio(audio, sampling_rate, max_seconds, name)
        if clip.cropped and clip is not audio:  # a caller that prepared the clip itself says so its own way
            logger.warning(
                "%s lasts more than %g s: only its first %g s are classified (for long recordings, segment them "
                "first).", clip.name, clip.seconds, clip.seconds,
            )  # fmt: skip
        transcribed_by = None
        if text is None or not text.strip():
            recognizer = speech_recognizer or self.speech_recognizer()
            speech = resample(torch.from_numpy(clip.waveform), self.sampling_rate, recognizer.sampling_rate)
            text, transcribed_by = recognizer.transcribe(speech), recognizer.model
        return {"waveform": clip.waveform, "text": text.strip(), "transcribed_by": transcribed_by}

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
            sampling_rate=self.sampling_rate,
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
        """The model's class names, in its `id2label` order; empty for a dimensions-only model."""
        return [self.model.config.id2label[index] for index in range(len(self.model.config.id2label))]

    @property
    def dimensions(self) -> list[str]:
        """The dimensions of emotion the model predicts (each on [0, 1]), in its order; empty for none."""
        return list(getattr(self.model.config, "dimensions", None) or [])

    def _forward(self, batch: dict, output_attentions: bool = False) -> dict:
        inputs = batch["model_inputs"]
        outputs = self.model(**inputs, **({"output_attentions": True} if output_attentions else {}))
        forwarded = {"transcript": batch["transcript"], "transcribed_by": batch["transcribed_by"]}
        if getattr(outputs, "logits", None) is not None:  # none from a dimensions-only model
            forwarded["probabilities"] = outputs.logits.float().softmax(dim=-1)  # (B, num_labels)
        if getattr(outputs, "dimensions", None) is not None:
            forwarded["dimensions"] = outputs.dimensions.float()  # (B, len(config.dimensions)), on [0, 1]
        if output_attentions:
            forwarded["looked_at"] = self._attention_maps(inputs, outputs)
        return forwarded

    def _attention_maps(self, inputs: dict, outputs) -> list[dict]:
        """Per item: its tokens, the seconds between frames, and the last fusion layer's attention over the real
        tokens and frames, averaged over heads (see `output_attentions` in the class docstring)."""
        config = self.model.config
        frames = outputs.audio_frame_mask  # the model's own count of each item's real frames
        maps = []
        for item in range(len(inputs["input_ids"])):
            num_frames, num_tokens = int(frames[item].sum()), int(inputs["text_attention_mask"][item].sum())
            looked = {}
            if outputs.text_attentions:
                looked["words → audio"] = outputs.text_attentions[-1][item].mean(dim=0)[:num_tokens, :num_frames]
            if outputs.audio_attentions:
                looked["audio → words"] = outputs.audio_attentions[-1][item].mean(dim=0)[:num_frames, :num_tokens].T
            ids = inputs["input_ids"][item][:num_tokens].tolist()
            maps.append(
                {
                    "tokens": self.processor.tokenizer.convert_ids_to_tokens(ids),
                    "frame_seconds": config.audio_frame_stride / self.sampling_rate,
                    "attentions": {key: value.float().cpu().numpy() for key, value in looked.items()},
                }
            )
        return maps

    def postprocess(self, outputs: dict, top_k: int | None = None) -> dict:
        """One item's `{["probabilities": (1, C),] "transcript", "transcribed_by"[, "dimensions": (1, D),
        "looked_at"]}` (the transcript, model and maps still in a list of one when the batch size is 1: the pipeline's
        iterator only unbatches larger batches)."""
        result = {}
        if "probabilities" in outputs:
            probabilities = outputs["probabilities"].reshape(-1).tolist()
            id2label = self.model.config.id2label
            ranked = sorted(range(len(probabilities)), key=lambda index: -probabilities[index])[:top_k]
            result["labels"] = [{"label": id2label[index], "score": probabilities[index]} for index in ranked]
        result["transcript"] = _unbatched(outputs["transcript"])
        result["transcribed_by"] = _unbatched(outputs["transcribed_by"])
        if "dimensions" in outputs:
            values = outputs["dimensions"].reshape(-1).tolist()
            result["dimensions"] = dict(zip(self.dimensions, values, strict=True))
        if "looked_at" in outputs:
            result.update(_unbatched(outputs["looked_at"]))
        return result


PIPELINE_REGISTRY.register_pipeline(PIPELINE_TASK, pipeline_class=MERPipeline, pt_model=AutoModel, type="multimodal")


def save_with_pipeline(model: torch.nn.Module, processor, save_directory: str | Path, **kwargs) -> Path:
    """Saves `model` with its code, this pipeline's code and `processor` into `save_directory` (see
    `MERPipeline.save_pretrained`; `kwargs` go to the model's `save_pretrained`), so that `AutoModel`,
    `AutoProcessor` and `pipeline(PIPELINE_TASK, ...)` all load it. Returns the directory."""
    pipe = MERPipeline(model=model, processor=processor, task=PIPELINE_TASK, device=next(model.parameters()).device)
    pipe.save_pretrained(save_directory, **kwargs)
    return Path(save_directory)


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


def _unpacked(item, sampling_rate: int | None) -> tuple[object, str | None, int | None, str | None]:
    """`(audio, text, sampling_rate, name)` of one input: a dict's parts (its own rate before the call's), or the
    input itself with no transcript."""
    if not isinstance(item, Mapping):
        return item, None, sampling_rate, None
    audio_keys = [key for key in ("audio", "array", "raw") if key in item]
    if len(audio_keys) != 1:
        raise ValueError(f"An input dict needs exactly one of 'audio', 'array' or 'raw', got the keys {sorted(item)}.")
    text = item.get("text")
    if text is not None and not isinstance(text, str):
        raise ValueError(f"'text' must be a string, got {type(text).__name__}.")
    name = f"'{item['path']}'" if item.get("path") else None
    return item[audio_keys[0]], text, item.get("sampling_rate", sampling_rate), name
