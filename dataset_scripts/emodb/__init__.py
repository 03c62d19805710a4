"""EmoDB as a `datasets` builder: `load_emodb(data_dir)` returns splits fold1 ... fold5."""

from .emodb import EMOTIONS, FOLDS, SENTENCES, SPEAKERS, Emodb, load_emodb, scan_emodb

__all__ = ["FOLDS", "EMOTIONS", "SENTENCES", "SPEAKERS", "Emodb", "load_emodb", "scan_emodb"]
