"""Export a saved MER model for deployment: `torch.export` with dynamic shapes, ONNX, and a check with onnxruntime.

    python -m mer.serving.export --model runs/demo/model --out exported/

writes `exported/model.onnx` (inputs: the processor's outputs, named as it names them; output: `logits`), the
processor and the config (class names in `id2label`), and `exported/export_report.json` (what was checked). A
deployer then needs only onnxruntime, transformers and the saved processor:

    processor = AutoProcessor.from_pretrained("exported", trust_remote_code=True)
    session = onnxruntime.InferenceSession("exported/model.onnx")
    logits = session.run(["logits"], dict(processor(audio=wave, text=words, sampling_rate=rate, return_tensors="np")))

Batch size, audio length and transcript length are dynamic. The graph has no checks of its own: validate inputs as
`MERModel.validate_inputs` does (at least `config.audio_receptive_field` samples per clip, at most the text
encoder's positions per transcript) before running it. Needs the `export` extra (onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.export import Dim, ExportedProgram

from modeling_mer import MERModel, MERProcessor

__all__ = [
    "check_with_onnxruntime",
    "dynamic_shapes",
    "export_onnx",
    "export_program",
    "main",
    "noise_inputs",
    "sample_inputs",
    "write_onnx",
]

logger = logging.getLogger("export")

ONNX_TOLERANCE = 1e-4  # max |onnxruntime logits - eager logits| accepted on the check batch
INPUT_ORDER = (
    "input_values",
    "input_features",
    "audio_attention_mask",
    "input_ids",
    "text_attention_mask",
    "token_type_ids",
)


def output_names(config) -> list[str]:
    """What a graph of a model with `config` returns: the logits when it has classes, and the dimensions when it
    predicts them (a dimensions-only model: those alone)."""
    classes = ["logits"] if getattr(config, "id2label", None) else []
    return [*classes, *(["dimensions"] if getattr(config, "dimensions", None) else [])]


class Predictions(nn.Module):
    """The model's predictions (`output_names`: logits and dimensions, those it has) from the processor's
    inputs, as a tuple of tensors: what an ONNX graph can return."""

    def __init__(self, model: MERModel):
        super().__init__()
        self.model = model

    def forward(
        self,
        input_values: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        audio_attention_mask: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        text_attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        output = self.model(
            input_values=input_values,
            input_features=input_features,
            audio_attention_mask=audio_attention_mask,
            input_ids=input_ids,
            text_attention_mask=text_attention_mask,
            token_type_ids=token_type_ids,
        )
        return tuple(output[name] for name in output_names(self.model.config))


def input_names(inputs: Mapping[str, torch.Tensor]) -> list[str]:
    """The processor outputs present in `inputs`, in the order the graphs take them."""
    return [name for name in INPUT_ORDER if name in inputs]


def smallest_exportable_audio(model: MERModel) -> int:
    """Samples for two audio frames: `torch.export` specialises a dimension that is 1, so a graph whose frame count
    varies must start at 2 frames. (The ONNX graph, which has no such checks, still runs one-frame clips.)"""
    return model.config.audio_receptive_field + model.config.audio_frame_stride


# Whisper towers read log-mel frames: two encoder frames take 3 of them, and the 30 s window holds 3000.
WHISPER_MEL_FRAMES = (3, 3000)


def dynamic_shapes(
    model: MERModel, input_names: list[str], min_audio_samples: int | None = None, max_audio_samples: int | None = None
) -> dict[str, dict[int, Dim]]:
    """Dynamic batch, audio length and transcript length for the named inputs (the processor's output names).

    Raises:
        ValueError: `min_audio_samples` below the audio encoder's receptive field (no frame at all) or below the
            two frames an exported graph can vary from; `max_audio_samples` below `min_audio_samples`.
    """
    smallest = smallest_exportable_audio(model)
    min_audio_samples = smallest if min_audio_samples is None else min_audio_samples
    if min_audio_samples < model.config.audio_receptive_field:
        raise ValueError(
            f"min_audio_samples={min_audio_samples} is below the audio encoder's receptive field "
            f"({model.config.audio_receptive_field} samples): shorter audio has no frame at all."
        )
    if min_audio_samples < smallest:
        raise ValueError(
            f"min_audio_samples={min_audio_samples} is below {smallest} samples (two audio frames), the shortest "
            "length a torch.export graph can vary from (it specialises a frame count of 1). Pad shorter clips with "
            "zeros (mask 0) to that length, or use the ONNX graph, which runs them as they are."
        )
    if max_audio_samples is not None and max_audio_samples < min_audio_samples:
        raise ValueError(f"max_audio_samples={max_audio_samples} is below min_audio_samples={min_audio_samples}.")
    batch = Dim("batch", min=1)
    # Two tokens at least ([CLS] and [SEP] of an empty transcript), at most the text encoder's positions.
    tokens = Dim("tokens", min=2, max=getattr(model.config.text_config, "max_position_embeddings", None))
    if model.config.audio_family == "whisper":
        frames = Dim.DYNAMIC(min=WHISPER_MEL_FRAMES[0], max=WHISPER_MEL_FRAMES[1])
        by_name = {"input_features": {0: batch, 2: frames}, "audio_attention_mask": {0: batch, 1: frames}}
    else:
        samples = Dim("samples", min=min_audio_samples, max=max_audio_samples)
        by_name = {"input_values": {0: batch, 1: samples}, "audio_attention_mask": {0: batch, 1: samples}}
    return {name: by_name.get(name, {0: batch, 1: tokens}) for name in input_names}


def export_program(
    model: MERModel,
    inputs: Mapping[str, torch.Tensor],
    min_audio_samples: int | None = None,
    max_audio_samples: int | None = None,
    predictions_only: bool = False,
) -> ExportedProgram:
    """`torch.export.export` of `model` (or of its predictions alone, `Predictions`) with a dynamic batch and dynamic
    audio and text lengths, traced on `inputs` (a processor batch; keyword inputs named as the processor names them).

    Raises:
        ValueError: a model in training mode (dropout and the auxiliary tasks would be traced), or the shape
            limits of `dynamic_shapes`.
    """
    if model.training:
        raise ValueError("export_program needs a model in evaluation mode: call model.eval() first.")
    model.validate_inputs(
        inputs.get("input_values"),
        inputs["input_ids"],
        inputs.get("audio_attention_mask"),
        inputs.get("text_attention_mask"),
        inputs.get("input_features"),
    )
    names = input_names(inputs)
    shapes = dynamic_shapes(model, names, min_audio_samples, max_audio_samples)
    module = Predictions(model) if predictions_only else model
    return torch.export.export(
        module, args=(), kwargs={name: inputs[name] for name in names}, dynamic_shapes=shapes, strict=False
    )


def write_onnx(
    model: MERModel,
    inputs: Mapping[str, torch.Tensor],
    path: str | Path,
    max_audio_samples: int | None = None,
    opset: int | None = None,
) -> ExportedProgram:
    """Writes the model's predictions (`output_names`) as an ONNX graph to `path` (one file, torch's dynamo
    exporter), traced on `inputs` with the dynamic shapes of `dynamic_shapes`; returns the `torch.export` program it
    was made from.

    Raises:
        ImportError: onnxscript (torch's ONNX exporter needs it) is not installed.
    """
    if importlib.util.find_spec("onnxscript") is None:
        raise ImportError("ONNX export needs onnx and onnxscript: pip install 'mer[export]' (or onnxscript alone).")
    program = export_program(model, inputs, max_audio_samples=max_audio_samples, predictions_only=True)
    torch.onnx.export(
        program,
        f=str(path),
        input_names=input_names(inputs),
        output_names=output_names(model.config),
        opset_version=opset,
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    return program


def sample_inputs(processor: MERProcessor, durations: list[float], texts: list[str], seed: int = 0) -> dict:
    """A padded processor batch of noise clips of the given durations (seconds) and the given transcripts."""
    rng = np.random.default_rng(seed)
    rate = processor.sampling_rate
    audio = [(0.1 * rng.standard_normal(int(seconds * rate))).astype(np.float32) for seconds in durations]
    return dict(processor(audio=audio, text=texts, sampling_rate=rate))


def noise_inputs(
    config, samples: Sequence[int], token_counts: Sequence[int], generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """A wav2vec2-style model batch as `MERProcessor` makes it, without a processor: unit-variance noise waveforms of
    `samples` samples, zero-padded on the right with their sample mask; random token ids (above the first five,
    BERT's special tokens) of `token_counts` tokens, padded, with their mask and `token_type_ids`."""
    input_values = torch.zeros(len(samples), max(samples))
    audio_mask = torch.zeros(len(samples), max(samples), dtype=torch.long)
    for row, length in enumerate(samples):
        input_values[row, :length] = torch.randn(length, generator=generator)
        audio_mask[row, :length] = 1
    input_ids = torch.zeros(len(token_counts), max(token_counts), dtype=torch.long)
    text_mask = torch.zeros_like(input_ids)
    for row, length in enumerate(token_counts):
        input_ids[row, :length] = torch.randint(5, config.text_config.vocab_size, (length,), generator=generator)
        text_mask[row, :length] = 1
    return {
        "input_values": input_values,
        "audio_attention_mask": audio_mask,
        "input_ids": input_ids,
        "text_attention_mask": text_mask,
        "token_type_ids": torch.zeros_like(input_ids),
    }


def check_with_onnxruntime(onnx_path: Path, model: MERModel, inputs: Mapping[str, torch.Tensor]) -> float:
    """Max |difference| between onnxruntime on `onnx_path` and the model in eager mode on `inputs`, over its logits
    and (when it has them) its dimensions."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [entry.name for entry in session.get_inputs()]
    feed = {name: inputs[name].numpy() for name in names}
    outputs = output_names(model.config)
    with torch.no_grad():
        expected = model(**inputs)
    got = dict(zip(outputs, session.run(outputs, feed), strict=True))
    return max(float(np.abs(value - expected[name].float().numpy()).max()) for name, value in got.items())


def export_onnx(
    model_dir: str | Path,
    out_dir: str | Path,
    max_seconds: float | None = None,
    opset: int | None = None,
    check: bool = True,
    pt2: bool = False,
) -> dict:
    """Exports the MER model saved in `model_dir` (a directory or Hub id) to `out_dir/model.onnx`, saves the
    processor and config beside it, checks the graph with onnxruntime on a padded batch of three lengths other than
    the traced ones, and writes `out_dir/export_report.json`. `pt2` also saves the `torch.export` program
    (`model.pt2`, for AOTInductor / ExecuTorch). Returns the report.

    Raises:
        ValueError: as `dynamic_shapes`.
        RuntimeError: onnxruntime's logits (or dimensions) further than `ONNX_TOLERANCE` from eager.
    """
    out_dir = Path(out_dir)
    model = MERModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    processor = MERProcessor.from_pretrained(model_dir)
    max_audio_samples = None if max_seconds is None else int(max_seconds * processor.sampling_rate)
    traced = sample_inputs(processor, [1.3, 0.8], ["a short transcript to trace with", "two words"], seed=0)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / "model.onnx"
    program = write_onnx(model, traced, onnx_path, max_audio_samples, opset)
    names = input_names(traced)
    if pt2:
        torch.export.save(program, out_dir / "model.pt2")
    processor.save_pretrained(out_dir)
    config = copy.deepcopy(model.config)  # no AutoModel entry: the weights are in the graph, not beside it
    config.auto_map = {key: value for key, value in (config.auto_map or {}).items() if key != "AutoModel"}
    config.save_pretrained(out_dir)
    report = {
        "model": str(model_dir),
        "onnx": onnx_path.name,
        "inputs": names,
        "outputs": output_names(model.config),
        "labels": [model.config.id2label[index] for index in range(model.config.num_labels)],
        **({"dimensions": list(model.config.dimensions)} if model.config.dimensions else {}),
        "torch": torch.__version__,
    }
    if check:
        batch = sample_inputs(
            processor, [2.1, 0.45, 1.05], ["what a day", "", "a longer transcript than the others"], 1
        )
        difference = check_with_onnxruntime(onnx_path, model, batch)
        report["check"] = {"batch_seconds": [2.1, 0.45, 1.05], "max_abs_logit_difference": difference}
        if difference > ONNX_TOLERANCE:
            raise RuntimeError(
                f"onnxruntime's {' and '.join(report['outputs'])} differ from eager by {difference:.2e} "
                f"(> {ONNX_TOLERANCE}) on {onnx_path}."
            )
    (out_dir / "export_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m mer.serving.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a saved MER model: directory or Hub id")
    parser.add_argument("--out", required=True, help="directory for model.onnx, the processor and the report")
    parser.add_argument("--max-seconds", type=float, default=None, help="longest clip the graph must take")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    parser.add_argument("--no-check", action="store_true", help="skip the onnxruntime check")
    parser.add_argument("--pt2", action="store_true", help="also save the torch.export program as model.pt2")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logger.setLevel(logging.INFO)  # this command's lines, not every library's
    if args.max_seconds is not None and args.max_seconds <= 0:
        parser.error(f"--max-seconds must be positive, got {args.max_seconds}")
    report = export_onnx(args.model, args.out, args.max_seconds, args.opset, check=not args.no_check, pt2=args.pt2)
    check = report.get("check")
    outputs = [f"logits over {', '.join(report['labels'])}"] if report["labels"] else []
    outputs += [f"dimensions {', '.join(report['dimensions'])}"] if report.get("dimensions") else []
    logger.info(
        f"Wrote {Path(args.out) / report['onnx']} (inputs {', '.join(report['inputs'])}; output {', '.join(outputs)})."
        + (f" onnxruntime vs eager: max |difference| {check['max_abs_logit_difference']:.2e}." if check else "")
    )
    return report


if __name__ == "__main__":
    main()
