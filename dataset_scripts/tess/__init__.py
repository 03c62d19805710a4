"""TESS as a `datasets` builder: `load_tess(data_dir)` returns splits fold1 (OAF) and fold2 (YAF)."""

from .tess import CARRIER, DOCUMENTED_PER_CELL, EMOTIONS, SPEAKER_FOLDS, SPEAKERS, Tess, load_tess, scan_tess

__all__ = ["CARRIER", "DOCUMENTED_PER_CELL", "EMOTIONS", "SPEAKERS", "SPEAKER_FOLDS", "Tess", "load_tess", "scan_tess"]
