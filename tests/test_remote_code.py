"""The saved model loads with trust_remote_code in a process where this repository cannot be imported."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import speech_like
from transformers import dynamic_module_utils

from modeling_mer import MERModel, MERProcessor
from modeling_mer.pipeline_mer import save_with_pipeline

MODEL_PACKAGE = Path(__file__).resolve().parents[1] / "modeling_mer"

# Runs with `python -S`: site-packages is added by hand, so .pth files (the editable install of this repository
# among them) are not processed, and the working directory is a temporary one.
CLEAN_LOADER = """
import importlib.util, json, sys
sys.path.append({site_packages!r})
assert importlib.util.find_spec("modeling_mer") is None, "the repository is importable"
import numpy as np, torch
from transformers import AutoConfig, AutoModel, AutoProcessor

model_dir, inputs_dir = sys.argv[1], sys.argv[2]
audio = [np.load(f"{{inputs_dir}}/audio{{i}}.npy") for i in range(2)]
text = json.load(open(f"{{inputs_dir}}/text.json"))
config = AutoConfig.from_pretrained(model_dir, trust_remote_code=True)
processor = AutoProcessor.from_pretrained(model_dir, trust_remote_code=True)
inputs = processor(audio=audio, text=text, sampling_rate=44100)
report = {{"config": type(config).__name__, "processor": type(processor).__name__}}
report["fusion_num_layers"] = config.fusion_num_layers
model = AutoModel.from_pretrained(model_dir, trust_remote_code=True).eval()
with torch.no_grad():
    report["class"] = type(model).__name__
    report["logits"] = model(**inputs).logits.tolist()
    report["tuple_logits"] = model(**inputs, return_dict=False)[0].tolist()
print(json.dumps(report))
"""


@pytest.mark.parametrize("tower", ["wav2vec2", "whisper"])
def test_round_trip_in_a_clean_process(make_model, processor, tiny_whisper, tiny_encoders, tmp_path, tower):
    if tower == "whisper":
        torch.manual_seed(0)
        model = MERModel.from_audio_text_pretrained(
            tiny_whisper, tiny_encoders[1], fusion_num_layers=3, fusion_hidden_size=16, fusion_num_heads=2
        ).eval()
        processor = MERProcessor.from_audio_text_pretrained(tiny_whisper, tiny_encoders[1])
    else:
        model = make_model(fusion_num_layers=3).eval()
    model_dir = tmp_path / "mer"
    save_with_pipeline(model, processor, model_dir)
    assert {"modeling_mer.py", "configuration_mer.py", "processing_mer.py", "pipeline_mer.py"} <= {
        p.name for p in model_dir.iterdir()
    }

    # A stereo 44.1 kHz int16 clip and a mono float one: the processor resamples and mixes them the same way there.
    audio = [(speech_like(1.2, seed=8, rate=44100)[None, :].repeat(2, 0) * 20000).astype(np.int16)]
    audio.append(speech_like(0.7, seed=9, rate=44100))
    text = ["i love this wonderful day", ""]
    inputs_dir = tmp_path / "inputs"
    inputs_dir.mkdir()
    for index, wave in enumerate(audio):
        np.save(inputs_dir / f"audio{index}.npy", wave)
    (inputs_dir / "text.json").write_text(json.dumps(text))
    with torch.no_grad():
        expected = model(**processor(audio=audio, text=text, sampling_rate=44100)).logits

    script = CLEAN_LOADER.format(site_packages=sysconfig.get_paths()["purelib"])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    result = subprocess.run(
        [sys.executable, "-S", "-c", script, str(model_dir), str(inputs_dir)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])

    assert report["config"] == "MERConfig" and report["processor"] == "MERProcessor"
    assert report["fusion_num_layers"] == 3
    assert report["class"] == "MERModel"
    difference = (torch.tensor(report["logits"]) - expected).abs().max().item()
    print(f"{tower}: round trip through AutoModel, max |logit difference| = {difference:.2e}")
    assert difference <= 1e-6
    assert report["tuple_logits"] == report["logits"]


def test_saved_config_maps_only_what_works(make_model, tmp_path):
    # A prediction needs the transcript, which pipeline("audio-classification") cannot pass: only AutoModel is mapped.
    make_model().save_pretrained(tmp_path)
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map == {"AutoConfig": "configuration_mer.MERConfig", "AutoModel": "modeling_mer.MERModel"}


def test_the_pipeline_saves_itself_with_the_model_and_a_model_saved_alone_does_not_point_to_it(
    make_model, processor, tmp_path
):
    # As transformers' custom pipelines: the pipeline side writes its file and its config entry.
    model = make_model()
    save_with_pipeline(model, processor, tmp_path / "with")
    config = json.loads((tmp_path / "with" / "config.json").read_text())
    entry = {"impl": "pipeline_mer.MERPipeline", "pt": ["AutoModel"], "type": "multimodal"}
    assert config["custom_pipelines"] == {"multimodal-emotion-recognition": entry}
    assert (tmp_path / "with" / "pipeline_mer.py").is_file()
    # The same model saved alone: no entry naming a file that is not there (pipeline(...) would look for it).
    model.save_pretrained(tmp_path / "alone")
    assert not (tmp_path / "alone" / "pipeline_mer.py").exists()
    assert not json.loads((tmp_path / "alone" / "config.json").read_text()).get("custom_pipelines")
    assert list(model.config.custom_pipelines) == ["multimodal-emotion-recognition"]  # the model's config is kept


def test_training_and_serving_share_only_the_model_package():
    # The layout is the architecture: what answers recordings never needs what trains, and the other way round.
    for side, other in (("training", "serving"), ("serving", "training")):
        for path in sorted((MODEL_PACKAGE.parent / "mer" / side).glob("*.py")):
            tree = ast.parse(path.read_text())
            imported = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
            imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
            assert not [name for name in imported if name.startswith(f"mer.{other}")], f"mer/{side}/{path.name}"


def test_remote_code_refers_to_nothing_outside_itself():
    # The files travel alone with every model: no pointer to documents or modules of this repository.
    for path in sorted(MODEL_PACKAGE.glob("*_mer.py")):
        text = path.read_text()
        for outside in ("DESIGN", "STYLE", "README", r"\bmer\.", "train.py", "tests/", "bench"):
            assert not re.search(outside, text), f"{path.name} mentions {outside!r}"


def test_processor_round_trip_keeps_the_class_and_settings(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    loaded = MERProcessor.from_pretrained(tmp_path)
    assert loaded.sampling_rate == 16000
    assert loaded.tokenizer.get_vocab() == processor.tokenizer.get_vocab()
    assert loaded.feature_extractor.return_attention_mask


def test_processor_loads_beside_a_saved_model_without_asking_to_trust_code(
    make_model, processor, tmp_path, monkeypatch
):
    # The tokenizer's class is in its own files: loading it must not execute (or ask about) the model's config code.
    make_model().save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)

    prompts = []
    monkeypatch.setattr(dynamic_module_utils, "input", lambda *args: prompts.append(args) or "n", raising=False)
    loaded = MERProcessor.from_pretrained(tmp_path)
    assert prompts == []
    assert loaded.tokenizer.get_vocab() == processor.tokenizer.get_vocab()


def test_hub_code_imports_only_torch_transformers_and_the_standard_library():
    # Optional speed-ups are imported inside `try: ... except ImportError`, which transformers' import check skips
    # (and so must a loader without them).
    allowed = {"torch", "transformers", "numpy"} | set(sys.stdlib_module_names)
    for path in sorted(MODEL_PACKAGE.glob("*_mer.py")):
        tree = ast.parse(path.read_text())
        guarded = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.Try)
            and any(getattr(handler.type, "id", None) == "ImportError" for handler in node.handlers)
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in guarded:
                continue
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert roots <= allowed, f"{path.name} imports {roots - allowed}"
        # Sibling files are imported relatively, so they resolve inside the downloaded module folder.
        relative = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 1]
        assert all(module.endswith("_mer") for module in relative)
    assert {path.name for path in MODEL_PACKAGE.glob("*_mer.py")} == {
        "configuration_mer.py", "modeling_mer.py", "processing_mer.py", "pipeline_mer.py", "asr_mer.py",
    }  # fmt: skip
