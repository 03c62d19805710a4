"""CPU runtimes for MER inference: the model as it is (eager PyTorch), its linear layers quantised to int8, or its ONNX
export run by onnxruntime. Each is used as the model is:

    model = prepare_for_inference(MERModel.from_pretrained(path), DEFAULT_CPU_RUNTIME, processor)
    logits = model(**processor(audio=waves, text=transcripts, sampling_rate=rate)).logits  # (B, num_labels)

`DEFAULT_CPU_RUNTIME` is the fastest of them at batch 1 whose predictions agree with fp32 eager on at least 99% of
the demo corpus, as `bench.cpu_inference` measures it (bench/README.md, section 10). The ONNX runtime needs the
`export` extra (onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mer.serving.export import input_names, noise_inputs, output_names, sample_inputs, write_onnx
from modeling_mer import MERModel, MEROutput, MERProcessor
from modeling_mer.pipeline_mer import RUNTIMES

__all__ = [
    "DEFAULT_CPU_RUNTIME",
    "RUNTIMES",
    "OnnxRuntimeModel",
    "onnxruntime_session",
    "prepare_for_inference",
]

logger = logging.getLogger(__name__)

# `.venv/bin/python -m bench.cpu_inference` (bench/results/cpu_inference.json; AMD EPYC, 2 vCPUs, AVX2, 2 threads),
# wav2vec2-base + bert-base, utterances/s at batch 1 / in length-sorted batches of 8, argmax agreement with fp32
# eager over the demo corpus's 1260 utterances, time to prepare:
#   eager 1.61 / 1.49, 100%;  int8 2.33 / 1.99 (1.45x / 1.34x), 100%, 1.8 s;  onnx 2.10 / 2.11 (1.30x / 1.42x), 100%,
#   55 s (the export).
# int8 is the fastest at batch 1, which is how the Space answers. onnx is 6% faster in batches, but `mer predict`
# prepares its runtime on every call, and what onnx saves over int8 pays for its export only after ~2000 utterances.
DEFAULT_CPU_RUNTIME = "int8"

# ONNX element types of the graph's inputs -> the numpy dtype onnxruntime wants for them.
_ONNX_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": bool,
}
# Trace batch of the export when no processor is given: (audio frames, tokens) of two utterances, both padded.
_TRACE_FRAMES, _TRACE_TOKENS = (64, 39), (9, 5)


def onnxruntime_session(path: str | Path, threads: int | None = None):
    """An onnxruntime `InferenceSession` on the graph at `path`: CPU provider, all graph optimisations, `threads`
    intra-op threads (default: as many as torch uses, `torch.get_num_threads()`).

    Raises:
        ImportError: onnxruntime is not installed.
    """
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError("The onnx runtime needs onnxruntime: pip install 'mer[export]'.") from error

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads() if threads is None else threads
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxRuntimeModel(nn.Module):
    """A MER model's ONNX graph run by onnxruntime, called as the model is: keyword inputs named as the processor
    names them, a `MEROutput` whose only fields are `logits` (a float32 CPU tensor `(batch_size, num_labels)`; none
    for a dimensions-only model) and, for a model that predicts them, `dimensions`.

    Args:
        session: an onnxruntime `InferenceSession` on a graph written by `mer.serving.export.write_onnx`.
        config: the exported model's config (`.config`, as the model has it).
        validate_inputs: checks a batch as `MERModel.validate_inputs` does (the graph has no checks of its own);
            None checks nothing.
    """

    def __init__(self, session, config, validate_inputs: Callable[..., None] | None = None):
        super().__init__()
        self.session = session
        self.config = config
        self.input_names = [entry.name for entry in session.get_inputs()]
        self._input_dtypes = {entry.name: _ONNX_DTYPES.get(entry.type) for entry in session.get_inputs()}
        self._validate_inputs = validate_inputs

    @property
    def device(self) -> torch.device:
        """Where inputs go: the CPU (onnxruntime's CPU provider)."""
        return torch.device("cpu")

    def forward(
        self,
        input_values: torch.Tensor | np.ndarray | None = None,
        input_features: torch.Tensor | np.ndarray | None = None,
        audio_attention_mask: torch.Tensor | np.ndarray | None = None,
        input_ids: torch.Tensor | np.ndarray | None = None,
        text_attention_mask: torch.Tensor | np.ndarray | None = None,
        token_type_ids: torch.Tensor | np.ndarray | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        **ignored,
    ) -> MEROutput:
        """Runs the graph on the inputs it declares (tensors or numpy arrays, on the CPU); other keyword arguments
        are ignored. A mask or `token_type_ids` the graph takes but the caller leaves out is filled as the model
        fills it (every position real; segment 0).

        Raises:
            ValueError: `output_attentions` or `output_hidden_states` asked for (the graph returns logits only),
                an input the graph needs is missing, or what `validate_inputs` refuses.
        """
        if output_attentions or output_hidden_states:
            raise ValueError(
                "The onnx runtime returns logits only: for attentions or hidden states use the eager or int8 runtime."
            )
        given = {
            "input_values": input_values,
            "input_features": input_features,
            "audio_attention_mask": audio_attention_mask,
            "input_ids": input_ids,
            "text_attention_mask": text_attention_mask,
            "token_type_ids": token_type_ids,
        }
        given = {name: None if value is None else torch.as_tensor(value) for name, value in given.items()}
        if self._validate_inputs is not None:
            self._validate_inputs(**{name: value for name, value in given.items() if name != "token_type_ids"})
        feed = {name: self._as_input(name, self._given_or_default(name, given)) for name in self.input_names}
        outputs = output_names(self.config)
        predicted = dict(zip(outputs, self.session.run(outputs, feed), strict=True))
        return MEROutput(**{name: torch.from_numpy(value) for name, value in predicted.items()})

    @staticmethod
    def _given_or_default(name: str, given: Mapping[str, torch.Tensor | None]) -> torch.Tensor:
        """`given[name]`, or what the model uses in its place: every audio position or token real, segment 0."""
        if given.get(name) is not None:
            return given[name]
        audio = given["input_values"] if given["input_values"] is not None else given["input_features"]
        if name == "audio_attention_mask" and audio is not None:
            return torch.ones(audio.shape[0], audio.shape[-1], dtype=torch.long)
        if name == "text_attention_mask" and given["input_ids"] is not None:
            return torch.ones_like(given["input_ids"])
        if name == "token_type_ids" and given["input_ids"] is not None:
            return torch.zeros_like(given["input_ids"])
        raise ValueError(f"The ONNX graph needs {name}, which was not given (it takes {', '.join(given)}).")

    def _as_input(self, name: str, value: torch.Tensor) -> np.ndarray:
        """`value` as the numpy array of the element type the graph declares for `name`."""
        array = value.detach().cpu().numpy()
        dtype = self._input_dtypes[name]
        return array if dtype is None else array.astype(dtype, copy=False)


def prepare_for_inference(
    model: MERModel,
    runtime: str,
    processor: MERProcessor | None = None,
    export_dir: str | Path | None = None,
) -> nn.Module:
    """`model` made ready for inference on `runtime`, to be called as the model is (the processor's outputs as keyword
    arguments; the result's `.logits` is `(batch_size, num_labels)`) and carrying its `.config`.

    Args:
        model: a MER model (fp32 on the CPU for the runtimes other than eager).
        runtime: one of `RUNTIMES`:
            - "eager": `model` itself, switched to evaluation mode.
            - "int8": a copy of `model` whose `nn.Linear` layers are dynamically quantised to int8 (weights int8,
              activations quantised per batch); `model` is left as it was.
            - "onnx": `model`'s logits exported with `mer.serving.export.write_onnx` (dynamic batch, audio and text
              lengths) and run by onnxruntime on the CPU (`onnxruntime_session`: all graph optimisations, as many
              threads as torch uses now), as an `OnnxRuntimeModel`. It checks inputs as the model does, returns
              logits only, and leaves `model` as it was. The export takes from half a minute (tiny encoders) to a
              minute or more (base-size ones).
        processor: the model's processor: the export is traced on a batch it makes. Without it, on noise waveforms
            and random token ids (wav2vec2-style audio encoders only). Only "onnx" uses it.
        export_dir: where "onnx" writes `model.onnx` (kept); default a temporary directory, removed once the graph
            is loaded.

    Raises:
        ValueError: an unknown runtime; a runtime other than eager for a model that is not fp32 on the CPU; "onnx"
            for a Whisper tower without its processor, or for a model whose code predates
            `MERModel.validate_inputs` (a model saved with older code and loaded with `trust_remote_code`: load it
            with `modeling_mer.MERModel.from_pretrained` instead).
        ImportError: "onnx" without onnxscript or onnxruntime installed.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"Unknown runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}.")
    if runtime == "eager":
        return model.eval()
    parameter = next(model.parameters())
    if parameter.device.type != "cpu" or parameter.dtype != torch.float32:
        raise ValueError(
            f"The {runtime} runtime is for fp32 models on the CPU, but the model is {parameter.dtype} on "
            f"{parameter.device}: use the eager runtime there, or model.float().to('cpu')."
        )
    start = time.perf_counter()
    prepared = _quantized_int8(model) if runtime == "int8" else _onnx_model(model, processor, export_dir)
    logger.info("Prepared the %s runtime in %.1f s", runtime, time.perf_counter() - start)
    return prepared


def _quantized_int8(model: MERModel) -> MERModel:
    """A copy of `model` in evaluation mode with int8 dynamically quantised `nn.Linear` layers."""
    # torch.ao.quantization is deprecated in favour of torchao (its `quantize_` with
    # `Int8DynamicActivationInt8WeightConfig` is the successor); torchao is not a dependency, and quantize_dynamic
    # still works, so its deprecation warnings are silenced for this call only.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.ao.quantization is deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="torch.quantize_per_tensor", category=UserWarning)
        # inplace=False: quantises a deep copy, which it switches to evaluation mode.
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=False)


def _onnx_model(model: MERModel, processor: MERProcessor | None, export_dir: str | Path | None) -> OnnxRuntimeModel:
    if not callable(getattr(model, "validate_inputs", None)):
        raise ValueError(
            f"The onnx runtime needs a model with validate_inputs, which this {type(model).__module__} code lacks "
            "(saved with an older MER): load it with modeling_mer.MERModel.from_pretrained, or save it again."
        )
    inputs = _trace_inputs(model, processor)
    was_training = model.training
    model.eval()
    try:
        with contextlib.ExitStack() as stack:
            directory = export_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="mer-onnx-"))
            path = Path(directory) / "model.onnx"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_onnx(model, inputs, path)
            session = onnxruntime_session(path)  # the graph is read into memory: the file may go
    finally:
        model.train(was_training)
    return OnnxRuntimeModel(session, model.config, _weightless_copy(model).validate_inputs)


def _trace_inputs(model: MERModel, processor: MERProcessor | None) -> dict[str, torch.Tensor]:
    """A padded batch of two utterances to trace the export on: the processor's, or noise and random token ids."""
    if processor is not None:
        return sample_inputs(processor, [1.3, 0.8], ["a short transcript to trace with", "two words"], seed=0)
    if model.config.audio_family == "whisper":
        raise ValueError("The onnx runtime needs the processor of a model with a Whisper tower: pass processor=.")
    config = model.config
    samples = [config.audio_receptive_field + frames * config.audio_frame_stride for frames in _TRACE_FRAMES]
    inputs = noise_inputs(config, samples, _TRACE_TOKENS, torch.Generator().manual_seed(0))
    return {name: inputs[name] for name in input_names(inputs)}


def _weightless_copy(model: MERModel) -> MERModel:
    """`model`'s architecture on the meta device (no weights, no memory): its `validate_inputs` checks a batch as
    `model`'s does, which reads only the config, without keeping `model`'s weights alive beside the graph's."""
    with torch.device("meta"):
        return type(model)(copy.deepcopy(model.config))
