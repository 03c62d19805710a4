"""IEMOCAP as a `datasets` builder: `load_iemocap(data_dir, config_name)` returns splits session1 ... session5."""

from .iemocap import CONFIG_LABELS, RAW_CODES, Iemocap, IemocapConfig, Problem, check_layout, load_iemocap, scan_corpus

__all__ = [
    "CONFIG_LABELS",
    "RAW_CODES",
    "Iemocap",
    "IemocapConfig",
    "Problem",
    "check_layout",
    "load_iemocap",
    "scan_corpus",
]
