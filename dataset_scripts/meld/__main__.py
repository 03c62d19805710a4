"""Write MELD out as self-contained Parquet, or check a copy against the release.

    python -m dataset_scripts.meld --data_dir MELD.Raw --out O [--skip_invalid]
    python -m dataset_scripts.meld --data_dir MELD.Raw --check

One file per split, ``O/train.parquet``, ``O/validation.parquet`` (MELD's dev) and ``O/test.parquet``, with the
clips embedded as they are (mp4, video included). The clips are excerpts of Friends: keep the export private.
"""

from ..release import release_main
from .meld import load_meld, scan_meld

if __name__ == "__main__":
    release_main(load_meld, scan_meld, __doc__)
