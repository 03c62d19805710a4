"""What train.py, the Space and the benchmarks share, one module per concern (the model itself is `modeling_mer`):

- `mer.data`: utterances, decoding, length-grouped and evaluation batches, collation (with modality dropout).
- `mer.arguments`: train.py's arguments and the checks that run before anything is loaded.
- `mer.protocol`: the evaluation protocol: corpus folds, the validation split, the speaker checks.
- `mer.run_dir`: the output directory: claims, atomic writes, the per-fold state and its checkpoint.
- `mer.reporting`: results tables, the confusion-matrix picture, the model card, the Hub upload.
- `mer.tiny`: tiny encoders built from configs, for tests and the demo.
"""
