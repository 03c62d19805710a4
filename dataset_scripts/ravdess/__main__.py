"""Write RAVDESS speech out as self-contained Parquet, or check a copy against the release.

    python -m dataset_scripts.ravdess --data_dir D --out O [--skip_invalid]
    python -m dataset_scripts.ravdess --data_dir D --check

One file per fold, ``O/fold1.parquet`` ... ``O/fold6.parquet``, audio embedded. RAVDESS is CC BY-NC-SA 4.0.
"""

from ..release import release_main
from .ravdess import load_ravdess, scan_ravdess

if __name__ == "__main__":
    release_main(load_ravdess, scan_ravdess, __doc__)
