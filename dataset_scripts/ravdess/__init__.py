"""RAVDESS speech as a `datasets` builder: `load_ravdess(data_dir)` returns splits fold1 ... fold6."""

from . import ravdess as _builder
from .ravdess import *  # noqa: F403 - the package is its builder module

__all__ = _builder.__all__
