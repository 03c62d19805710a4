"""TESS as a `datasets` builder: `load_tess(data_dir)` returns splits fold1 (OAF) and fold2 (YAF)."""

from . import tess as _builder
from .tess import *  # noqa: F403 - the package is its builder module

__all__ = _builder.__all__
