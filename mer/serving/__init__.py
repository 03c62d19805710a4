"""Answering people's recordings with a saved model (the `mer` command, the Space), one module per concern; every
prediction goes through the model's pipeline (`modeling_mer.pipeline_mer.MERPipeline`):

- `inference`: a saved model's pipeline, loaded at a pinned revision on the fastest CPU runtime that keeps its
  answers; `runtime`: the eager, int8 and ONNX Runtime runtimes; `export`: the ONNX export.
- `audio`: recordings decoded by ffmpeg, whole or in bounded chunks; `vad`: speech segments (Silero VAD).
- `predict`: files and folders into a results file; `timeline`: the emotion timeline of a long recording;
  `tables`: text made safe for spreadsheets.
- `cli`: the `mer` command (`mer predict`, `mer timeline`).
"""
