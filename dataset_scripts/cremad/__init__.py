"""CREMA-D as a `datasets` builder: `load_cremad(data_dir)` returns splits fold1 ... fold5."""

from . import cremad as _builder
from .cremad import *  # noqa: F403 - the package is its builder module

__all__ = _builder.__all__
