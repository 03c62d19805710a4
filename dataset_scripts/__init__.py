"""A builder per released corpus (`dataset_scripts.<corpus>`), the shared label space (`labels`), the synthetic
corpus (`synthetic`), and one command for all of them: ``python -m dataset_scripts <corpus> ...``."""

from __future__ import annotations

import importlib

__all__ = ["CORPORA", "release_of"]

# The corpora with a builder, by the name commands and train.py's --corpus use.
CORPORA = ("iemocap", "ravdess", "cremad", "tess", "emodb", "meld", "msp_podcast")


def release_of(name: str):
    """The `dataset_scripts.release.Release` of corpus `name` (every corpus but IEMOCAP, whose builder is its own).

    Raises:
        ValueError: an unknown name, or IEMOCAP.
    """
    if name not in CORPORA or name == "iemocap":
        raise ValueError(f"no release declaration for {name!r}; the corpora with one are {list(CORPORA[1:])}")
    return importlib.import_module(f"dataset_scripts.{name}").RELEASE
