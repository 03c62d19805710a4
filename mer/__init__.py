"""What train.py, the commands, the Space and the benchmarks share (the model itself is `modeling_mer`), in two
sub-packages, one per side of the architecture:

- `mer.training`: what train.py and the benchmarks use to train and evaluate on corpora.
- `mer.serving`: what answers people's recordings: the `mer` command, its runtimes and its outputs, and the Space.
- `mer.tiny`: tiny encoders built from configs, for tests and the demo (both sides use them).

The two sides share nothing but the model package: neither imports the other.
"""
