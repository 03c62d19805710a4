"""EmoDB as a `datasets` builder: `load_emodb(data_dir)` returns splits fold1 ... fold5."""

from . import emodb as _builder
from .emodb import *  # noqa: F403 - the package is its builder module

__all__ = _builder.__all__
