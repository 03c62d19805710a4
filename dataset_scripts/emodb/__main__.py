"""Write EmoDB out as self-contained Parquet, or check a copy against the release.

    python -m dataset_scripts.emodb --data_dir D --out O [--skip_invalid]
    python -m dataset_scripts.emodb --data_dir D --check

One file per fold, ``O/fold1.parquet`` ... ``O/fold5.parquet``, audio embedded.
"""

from ..release import release_main
from .emodb import load_emodb, scan_emodb

if __name__ == "__main__":
    release_main(load_emodb, scan_emodb, __doc__)
