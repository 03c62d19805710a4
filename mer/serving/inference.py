"""Loading a saved MER model for predictions on people's recordings, as `mer predict`, `mer timeline` and the Space
do: the model's pipeline (transcribing what has no transcript) on the fastest CPU runtime that keeps its answers.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from transformers import AutoModel, AutoProcessor

from mer.serving.runtime import DEFAULT_CPU_RUNTIME, prepare_for_inference
from modeling_mer.pipeline_mer import PIPELINE_TASK, RUNTIMES, MERPipeline

__all__ = [
    "REVISION_VARIABLE",
    "ModelLoadError",
    "check_model_location",
    "load_pipeline",
    "resolve_device",
    "resolve_revision",
]

logger = logging.getLogger(__name__)

# The environment variable that pins the model the commands and the Space load (as --revision does).
REVISION_VARIABLE = "MER_MODEL_REVISION"


def resolve_device(device: str | None) -> torch.device:
    """`device`, or CUDA when there is one, else the CPU.

    Raises:
        ValueError: a device torch does not know, or CUDA asked for where there is none.
    """
    try:
        chosen = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError as error:
        raise ValueError(f"Unknown device {device!r}: use cpu, cuda or cuda:N.") from error
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"Device {device!r} asked for, but this machine has no CUDA GPU: use --device cpu.")
    return chosen


def load_pipeline(
    model: str,
    asr_model: str | None = None,
    asr_backend: str = "auto",
    runtime: str | None = None,
    device: str | None = None,
    revision: str | None = None,
) -> MERPipeline:
    """The emotion pipeline of the saved MER model `model` (Hub id or directory, loaded with its own code).

    Args:
        model: the MER model (`trust_remote_code=True`: its saved code runs).
        revision: the Hub commit (or tag, or branch) to load `model` at; default `MER_MODEL_REVISION`, else the
            latest. A commit hash pins both the code that runs and the weights (see `resolve_revision`).
        asr_model, asr_backend: speech recognition for missing transcripts (see `modeling_mer.asr_mer`); default
            `MER_ASR_MODEL`, else Whisper small.en, loaded on first use.
        runtime: on CPU, one of `mer.serving.runtime.RUNTIMES` (default `DEFAULT_CPU_RUNTIME`); on a GPU only "eager".
        device: "cpu", "cuda", "cuda:N"; default CUDA when available.

    Raises:
        ValueError: `model` is not a MER model, or an unknown runtime / device / speech-recognition backend.
        FileNotFoundError: `model` is written as a local path that does not exist.
        ModelLoadError: `model` was found but cannot be loaded (naming it and why).
    """
    device = resolve_device(device)
    runtime = runtime or (DEFAULT_CPU_RUNTIME if device.type == "cpu" else "eager")
    if runtime not in RUNTIMES:
        raise ValueError(f"Unknown runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}.")
    if runtime != "eager" and device.type != "cpu":
        raise ValueError(f"The {runtime} runtime runs on the CPU only; on {device} use --runtime eager.")
    check_model_location(model)
    revision = resolve_revision(model, revision)
    try:
        network = AutoModel.from_pretrained(model, trust_remote_code=True, revision=revision)
        processor = AutoProcessor.from_pretrained(model, trust_remote_code=True, revision=revision)
    except Exception as error:  # noqa: BLE001 - its own code, its files, the Hub: whatever fails, the model is named
        at = f" at revision {revision}" if revision else ""
        raise ModelLoadError(f"The model {model}{at} cannot be loaded: {type(error).__name__}: {error}") from error
    if getattr(network.config, "model_type", None) != "mer":
        raise ValueError(f"{model} holds a {network.config.model_type!r} model, not a MER model.")
    # The installed pipeline class rather than the model's copy: it also serves models saved before their configs
    # named a pipeline, and the commands and the Space always run the code they were tested with.
    pipe = MERPipeline(
        model=network.eval(),
        processor=processor,
        task=PIPELINE_TASK,
        device=device,
        runtime=runtime,
        prepare_runtime=prepare_for_inference,
        model_name=model,
        asr_model=asr_model,
        asr_backend=asr_backend,
    )
    logger.info("Loaded %s (%s) on %s with the %s runtime", model, pipe.fingerprint, device, runtime)
    return pipe


def resolve_revision(model: str, revision: str | None = None) -> str | None:
    """The revision to load `model` at: `revision`, else `MER_MODEL_REVISION`, else None (the Hub's latest).

    A model is loaded with `trust_remote_code=True`: the code saved beside its weights runs here. A full commit hash
    pins that code and the weights, so that what runs is what was reviewed (transformers loads the code from the
    same revision as the weights); a branch or a tag still moves with the repository.

    Raises:
        ValueError: a revision for a local directory, which has none (naming both, and where the revision came
            from).
    """
    given = revision or os.environ.get(REVISION_VARIABLE) or None
    if given is None:
        if not Path(model).expanduser().is_dir():
            logger.info(
                "Loading %s at its latest revision; pin a commit with --revision or %s", model, REVISION_VARIABLE
            )
        return None
    if Path(model).expanduser().is_dir():
        source = "--revision" if revision else REVISION_VARIABLE
        raise ValueError(
            f"{source} {given} pins a commit of a Hub model, but {model} is a local directory, which has no "
            f"revisions: give a Hub id, or drop {source}."
        )
    return given


class ModelLoadError(RuntimeError):
    """A model that was found cannot be loaded (its code fails to import, its weights do not fit, ...)."""


def check_model_location(model: str) -> None:
    """A `model` written as a local path (with a folder separator, ``.``, ``~``, or more than one ``/``) must be a
    directory: otherwise transformers would take it for a malformed Hub id and say so.

    Raises:
        FileNotFoundError: naming the path, when it is written as one and is not a directory.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return
    if path.exists():
        raise FileNotFoundError(f"--model {model} is a file; give the directory the model was saved to.")
    if model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model:
        raise FileNotFoundError(
            f"--model {model}: no such directory (a Hub id is written name or namespace/name). Has the model been "
            "trained and saved there?"
        )
