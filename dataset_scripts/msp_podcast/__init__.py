"""MSP-Podcast as a `datasets` builder: `load_msp_podcast(data_dir)` returns splits train, validation, test1, test2."""

from . import msp_podcast as _builder
from .msp_podcast import *  # noqa: F403 - the package is its builder module

__all__ = _builder.__all__
