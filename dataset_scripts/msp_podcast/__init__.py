"""MSP-Podcast as a `datasets` builder: `load_msp_podcast(data_dir)` returns splits train, validation, test1, test2."""

from .msp_podcast import (
    DOCUMENTED_RELEASES,
    EMOTIONS,
    SPLITS,
    DocumentedRelease,
    MspPodcast,
    load_msp_podcast,
    scan_msp_podcast,
)

__all__ = [
    "DOCUMENTED_RELEASES",
    "EMOTIONS",
    "SPLITS",
    "DocumentedRelease",
    "MspPodcast",
    "load_msp_podcast",
    "scan_msp_podcast",
]
