"""What train.py, the commands, the Space and the benchmarks share, one module per concern (the model itself is
`modeling_mer`):

- `mer.data`: utterances, decoding, length-grouped and evaluation batches, collation (with modality dropout).
- `mer.arguments`: train.py's arguments and the checks that run before anything is loaded.
- `mer.protocol`: the evaluation protocol: corpus folds, the validation split, the speaker checks.
- `mer.corpora`: the public corpora by name (`--corpus`), mapped to the shared classes, pooled in rounds.
- `mer.run_dir`: the output directory: claims, atomic writes, the per-fold state and its checkpoint.
- `mer.reporting`: results tables, the confusion-matrix picture, the model card, the Hub upload.
- `mer.tiny`: tiny encoders built from configs, for tests and the demo.
- `mer.export`: the ONNX export; `mer.runtime`: eager, int8 and ONNX Runtime inference on CPU.
- `mer.audio`: people's recordings decoded by ffmpeg, whole or in bounded chunks.
- `mer.vad`: speech segments of long recordings (Silero VAD); `mer.timeline`: their emotion timeline.
- `mer.speech_recognition`: word error rate (the recogniser itself travels with the model: `modeling_mer.asr_mer`).
- `mer.inference`: a saved model's pipeline on the CPU runtime; `mer.predict`: files and folders into a results file.
- `mer.cli`: the `mer` command (`mer predict`, `mer timeline`).
"""
