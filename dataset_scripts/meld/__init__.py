"""MELD (raw release) as a `datasets` builder: `load_meld(data_dir)` returns splits train, validation and test."""

from .meld import (
    CSV_FILES,
    DOCUMENTED_DIALOGUES,
    DOCUMENTED_UTTERANCES,
    EMOTIONS,
    SENTIMENTS,
    SPLIT_FOLDERS,
    Meld,
    load_meld,
    parse_time,
    repair_text,
    scan_meld,
)

__all__ = [
    "CSV_FILES",
    "DOCUMENTED_DIALOGUES",
    "DOCUMENTED_UTTERANCES",
    "EMOTIONS",
    "SENTIMENTS",
    "SPLIT_FOLDERS",
    "Meld",
    "load_meld",
    "parse_time",
    "repair_text",
    "scan_meld",
]
