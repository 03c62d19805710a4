"""Training and evaluating on corpora (train.py, the benchmarks), one module per concern:

- `arguments`: train.py's arguments and the checks that run before anything is loaded.
- `training_defaults`: the measured defaults per audio tower family.
- `corpora`: the public corpora by name (`--corpus`), mapped to the shared classes, pooled in rounds.
- `folds`: corpora as speakers and folds; `protocol`: the evaluation protocol: folds, the validation split, the
  speaker checks.
- `data`: utterances, decoding, length-grouped and evaluation batches, collation (with modality dropout).
- `transcripts`: the transcripts a run reads (given, or transcribed once and cached); `speech_recognition`: their
  word error rate (the recogniser itself travels with the model: `modeling_mer.asr_mer`).
- `baseline`: the frozen-feature probe beside every run.
- `run_dir`: the output directory: claims, atomic writes, the per-fold state and its checkpoint.
- `reporting`: results tables, the confusion-matrix picture, the model card, the Hub upload.
- `fold_export`: the folds as EmoBox-style JSONL.
"""
