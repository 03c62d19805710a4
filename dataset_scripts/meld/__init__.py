"""MELD (raw release) as a `datasets` builder: `load_meld(data_dir)` returns splits train, validation and test."""

from . import meld as _builder
from .meld import *  # noqa: F403 - the package is its builder module

__all__ = _builder.__all__
