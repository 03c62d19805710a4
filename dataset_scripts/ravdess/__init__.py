"""RAVDESS speech as a `datasets` builder: `load_ravdess(data_dir)` returns splits fold1 ... fold6."""

from .ravdess import EMOTIONS, FOLDS, STATEMENTS, Ravdess, load_ravdess, scan_ravdess

__all__ = ["FOLDS", "EMOTIONS", "STATEMENTS", "Ravdess", "load_ravdess", "scan_ravdess"]
