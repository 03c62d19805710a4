"""Benchmarks of MER (not tests): inference speed, FLOP utilisation, padding, training steps, the data path.

Each module runs with one command, prints a markdown table and writes JSON, e.g.

    .venv/bin/python -m bench.inference [--quick] [--out bench/results/inference.json]

`--quick` runs tiny encoders on a handful of utterances (what `make test` does, so the benchmarks cannot rot);
without it the encoders are wav2vec2-base and bert-base built from their configs. See bench/README.md.
"""
