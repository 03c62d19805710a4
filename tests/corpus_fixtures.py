"""Session fixtures around one small synthetic IEMOCAP corpus (espeak-ng speech), generated once per test run.

Import these names into conftest.py to share them: `synthetic_corpus`, `synthetic_iemocap`, `tiny_corpus`.
"""

from __future__ import annotations

import datasets
import pytest

from dataset_scripts.iemocap import load_iemocap
from dataset_scripts.synthetic import CorpusSummary, generate_corpus

__all__ = ["synthetic_corpus", "synthetic_iemocap", "tiny_corpus"]

SYNTHETIC_PER_DIALOG = 8  # 20 dialogs -> 160 utterances (136 in 4class), about 2 s to speak on 2 cores
SYNTHETIC_SEED = 1234


@pytest.fixture(scope="session")
def synthetic_corpus(tmp_path_factory) -> CorpusSummary:
    """The shared corpus: `.path` is its IEMOCAP_full_release root, `.utterances` what was written. Do not modify."""
    root = tmp_path_factory.mktemp("synthetic") / "IEMOCAP_full_release"
    return generate_corpus(root, per_dialog=SYNTHETIC_PER_DIALOG, seed=SYNTHETIC_SEED)


@pytest.fixture(scope="session")
def synthetic_iemocap(synthetic_corpus, tmp_path_factory) -> datasets.DatasetDict:
    """`synthetic_corpus` built by `load_iemocap` (4class): splits session1 ... session5, 16 kHz audio."""
    return load_iemocap(synthetic_corpus.path, "4class", cache_dir=tmp_path_factory.mktemp("iemocap_cache"))


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> CorpusSummary:
    """A second, smaller corpus (2 utterances per dialog, 40 in all) for tests that need their own. Do not modify."""
    return generate_corpus(tmp_path_factory.mktemp("tiny") / "corpus", per_dialog=2, seed=7)
