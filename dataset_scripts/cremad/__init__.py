"""CREMA-D as a `datasets` builder: `load_cremad(data_dir)` returns splits fold1 ... fold5."""

from .cremad import (
    ACTORS,
    DOCUMENTED_FILES,
    EMOTIONS,
    LEVELS,
    RELEASE_LACKS,
    RELEASE_NAMES,
    SENTENCES,
    SPEAKER_FOLDS,
    Cremad,
    load_cremad,
    scan_cremad,
)

__all__ = [
    "ACTORS", "DOCUMENTED_FILES", "EMOTIONS", "LEVELS", "RELEASE_LACKS", "RELEASE_NAMES", "SENTENCES",
    "SPEAKER_FOLDS", "Cremad", "load_cremad", "scan_cremad",
]  # fmt: skip
