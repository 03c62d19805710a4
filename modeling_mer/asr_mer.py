"""SpeechRecognizer: the transcripts MER reads when none is given, from faster-whisper (CTranslate2) where it is
installed, else from transformers' automatic-speech-recognition pipeline.

faster-whisper runs Whisper several times faster than eager PyTorch on a CPU (int8 CTranslate2 kernels); it is an
optional dependency, imported only when present. The model is a setting: a Hub id, a faster-whisper size name
("tiny.en", "small.en", ...) or a local directory in either format; `MER_ASR_MODEL` in the environment names the
default.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import torch
from transformers import WhisperTokenizer
from transformers import pipeline as transformers_pipeline

try:  # optional: the faster backend; without it, transformers' pipeline transcribes
    import faster_whisper
except ImportError:
    faster_whisper = None

__all__ = ["ASR_BACKENDS", "DEFAULT_ASR_MODEL", "SpeechRecognizer", "default_asr_model"]

logger = logging.getLogger(__name__)

DEFAULT_ASR_MODEL = "openai/whisper-small.en"
ASR_BACKENDS = ("auto", "faster-whisper", "transformers")
ASR_SAMPLING_RATE = 16000  # every Whisper (and most speech recognisers) reads 16 kHz
_CHUNK_SECONDS = 30  # Whisper's window
# Whisper's temperature fallback, with transformers' thresholds for its token-level compression ratio.
_FALLBACK = {
    "temperature": (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
    "compression_ratio_threshold": 1.35,
    "logprob_threshold": -1.0,
}
_TOKENS_PER_SECOND = 8  # fast speech is about 4 words, 5-6 tokens a second
_MAX_LENGTH = 448  # Whisper's decoder positions, the prompt's few tokens included
_OPENAI_WHISPER = "openai/whisper-"
# Whisper's sizes as faster-whisper names them (used to map OpenAI ids when faster-whisper cannot be asked).
_ALL_WHISPER_SIZES = {
    "tiny", "tiny.en", "base", "base.en", "small", "small.en", "medium", "medium.en",
    "large-v1", "large-v2", "large-v3", "large", "large-v3-turbo", "turbo",
}  # fmt: skip


def default_asr_model() -> str:
    """`MER_ASR_MODEL` from the environment when set, else `DEFAULT_ASR_MODEL`."""
    return os.environ.get("MER_ASR_MODEL") or DEFAULT_ASR_MODEL


def _faster_whisper_sizes() -> set[str]:
    return set(faster_whisper.available_models()) if faster_whisper is not None else set()


def resolve_backend(model: str, backend: str = "auto") -> tuple[str, str]:
    """Which backend transcribes with `model`, and the name that backend loads it by.

    With `backend="auto"`: a local directory holding a CTranslate2 `model.bin` is faster-whisper's, one holding a
    `config.json` is transformers'; an OpenAI Whisper Hub id (`openai/whisper-small.en`) or a size name
    (`small.en`) goes to faster-whisper when it is installed (as the same model converted by Systran), else to
    transformers; any other Hub id goes to faster-whisper when its name says it is a CTranslate2 conversion
    ("faster-whisper" or "ct2" in it), else to transformers.

    Raises:
        ValueError: an unknown `backend`, or a model the chosen backend cannot read, naming both.
    """
    if backend not in ASR_BACKENDS:
        raise ValueError(f"Unknown speech-recognition backend {backend!r}: choose one of {', '.join(ASR_BACKENDS)}.")
    path = Path(model).expanduser()
    sizes = _faster_whisper_sizes()
    size = model.removeprefix(_OPENAI_WHISPER) if model.startswith(_OPENAI_WHISPER) else model
    if path.is_dir():
        local = "faster-whisper" if (path / "model.bin").is_file() else "transformers"
        if backend not in ("auto", local):
            raise ValueError(f"The speech-recognition model {model} is in {local} format, not {backend}'s.")
        chosen, name = local, str(path)
    elif backend == "transformers" or (backend == "auto" and faster_whisper is None):
        chosen, name = "transformers", (_OPENAI_WHISPER + model if model in _ALL_WHISPER_SIZES else model)
    elif size in (sizes or _ALL_WHISPER_SIZES):
        chosen, name = "faster-whisper", size
    elif backend == "faster-whisper" or "faster-whisper" in model or "ct2" in model.lower():
        chosen, name = "faster-whisper", model
    else:
        chosen, name = "transformers", model
    if chosen == "faster-whisper" and faster_whisper is None:
        raise ValueError(
            f"The speech-recognition model {model} needs faster-whisper, which is not installed: "
            "pip install faster-whisper (or give a transformers model)."
        )
    return chosen, name


class SpeechRecognizer:
    """Transcribes 16 kHz mono speech with one model, loaded on first use and shared by threads.

    Args:
        model: Hub id, faster-whisper size name or local directory (either format); defaults to
            `default_asr_model()` (`MER_ASR_MODEL`, else Whisper small.en).
        backend: `"auto"` (faster-whisper where installed and the model is one it reads, see `resolve_backend`),
            `"faster-whisper"` or `"transformers"`.
        device: where it runs; defaults to CUDA when available, else the CPU.
        language: the language spoken, or None to let the model detect it (English-only models need none).

    Raises:
        ValueError: an unknown backend or a model the backend cannot read (at construction).
        OSError: the model cannot be loaded (on `load` or the first transcription), naming it.
    """

    sampling_rate = ASR_SAMPLING_RATE

    def __init__(
        self,
        model: str | None = None,
        backend: str = "auto",
        device: str | torch.device | None = None,
        language: str | None = None,
    ):
        self.model = str(model or default_asr_model())
        self.backend, self._name = resolve_backend(self.model, backend)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.language = language
        self._loaded = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, backend={self.backend!r}, device={str(self.device)!r})"

    def load(self):
        """Loads the model now (it is otherwise loaded by the first transcription) and returns it."""
        with self._lock:
            if self._loaded is None:
                logger.info("Loading speech recognition %s with %s on %s", self._name, self.backend, self.device)
                try:
                    self._loaded = self._load()
                except Exception as error:  # network, disk, format: each means the same to the caller
                    raise OSError(
                        f"Could not load the speech-recognition model {self.model} with {self.backend}: {error}"
                    ) from error
            return self._loaded

    def _load(self):
        if self.backend == "faster-whisper":
            on_gpu = self.device.type == "cuda"
            return faster_whisper.WhisperModel(
                self._name,
                device="cuda" if on_gpu else "cpu",
                device_index=self.device.index or 0,
                compute_type="default" if on_gpu else "int8",  # int8 kernels are CTranslate2's fastest on a CPU
                cpu_threads=torch.get_num_threads(),
            )
        asr = transformers_pipeline("automatic-speech-recognition", model=self._name, device=self.device)
        if asr.type == "seq2seq_whisper" and not hasattr(asr.tokenizer, "_decode_asr"):
            # A checkpoint whose tokenizer files name a generic class: Whisper's decoding needs Whisper's tokenizer.
            asr.tokenizer = WhisperTokenizer.from_pretrained(self._name)
        return asr

    def transcribe(self, waveform) -> str:
        """The words spoken in `waveform` (1-D float32 samples at 16 kHz), stripped; "" when none are heard."""
        return self.transcribe_batch([waveform])[0]

    def transcribe_batch(self, waveforms: list) -> list[str]:
        """`transcribe` for several waveforms, in order."""
        model = self.load()
        waveforms = [torch.as_tensor(wave, dtype=torch.float32).reshape(-1).numpy() for wave in waveforms]
        if self.backend == "faster-whisper":
            texts = []
            for wave in waveforms:
                # Segments are a lazy generator: joining them runs the decoding.
                segments, _ = model.transcribe(wave, language=self.language, vad_filter=False, without_timestamps=True)
                texts.append(" ".join(segment.text.strip() for segment in segments))
        else:
            texts = [self._transformers_transcribe(model, wave) for wave in waveforms]
        return [" ".join(text.split()) for text in texts]

    def _transformers_transcribe(self, asr, wave) -> str:
        inputs = {"raw": wave, "sampling_rate": self.sampling_rate}
        if asr.type != "seq2seq_whisper":  # CTC models read long audio in overlapping 30 s chunks
            return asr(inputs, chunk_length_s=_CHUNK_SECONDS)["text"]
        generate = {"language": self.language} if self.language else {}
        # Whisper transcribes audio beyond its 30 s window with its own long-form decoding, which needs timestamps.
        long_form = len(wave) > _CHUNK_SECONDS * self.sampling_rate
        if not long_form:
            # Greedy decoding of one utterance can fall into a loop ("no, no, no, ..." to the end of the window),
            # most often on speech unlike Whisper's training data. As faster-whisper and OpenAI's Whisper do, a text
            # that compresses too well (repetition) or whose tokens are too unlikely is decoded again at rising
            # temperatures; and no one says more than a few tokens a second, so a loop left stops there. (Long
            # recordings may repeat themselves for real: their decoding is left as it is.)
            seconds = len(wave) / self.sampling_rate
            generate.update(_FALLBACK, max_length=min(_MAX_LENGTH, round(_TOKENS_PER_SECOND * seconds) + 14))
        return asr(inputs, return_timestamps=long_form, generate_kwargs=generate)["text"]
